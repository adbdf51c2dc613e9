//! Open Badges input (SPEC §12, docs/import.md): OB 2.0 Assertions,
//! BadgeClasses and Issuers, OB 3.0 `OpenBadgeCredential`s and
//! Achievements, each file one object, a JSON array, or one object per line.
//!
//! Two passes over the files. [`Catalog::read`] learns every badge class
//! (standalone or embedded, across all files) with its issuer and the
//! earliest award of it; [`emit`] then gives the events in a fixed order:
//! one `badge_class.upserted` per badge class, then each file's records in
//! order. The same files and options always give the same items, which is
//! what the checkpoint relies on. Nothing of a recipient is sent.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::ids::{assertion_event_id, content_id, map_id, tag_key, upsert_event_id};
use crate::input::{Check, Input, InputError, Item, Origin};

/// What the run is told that an Open Badges export does not say.
#[derive(Debug, Clone)]
pub struct Options {
    /// `org_id` of every event.
    pub org: String,
    /// Map `tags` (OB 2.0) / `tag` (OB 3.0) to `attributes` (`tag_key`).
    pub tags_as_attributes: bool,
    /// `occurred_at` of an upsert whose badge class has no award in the
    /// import: the run's start (kept in the checkpoint, so a resumed run
    /// gives the same events).
    pub started_at: DateTime<Utc>,
}

/// The kind of an Open Badges object, by its `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Assertion,
    BadgeClass,
    Issuer,
    Credential,
    Other,
}

fn kind(v: &Value) -> Kind {
    let types: Vec<&str> = match v.get("type").or_else(|| v.get("@type")) {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    // `obi:Assertion` and full IRIs name the same terms.
    let has = |name: &str| {
        types
            .iter()
            .any(|t| *t == name || t.rsplit([':', '#', '/']).next() == Some(name))
    };
    if has("OpenBadgeCredential") || has("AchievementCredential") {
        Kind::Credential
    } else if has("Assertion") {
        Kind::Assertion
    } else if has("BadgeClass") || has("Achievement") {
        Kind::BadgeClass
    } else if has("Issuer") || has("Profile") {
        Kind::Issuer
    } else {
        Kind::Other
    }
}

/// The id of a reference: a string, or an embedded object's `id`.
fn id_of(v: Option<&Value>) -> Option<&str> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Object(o) => o.get("id")?.as_str().filter(|s| !s.is_empty()),
        _ => None,
    }
}

/// A date as Open Badges writes it: RFC 3339; ISO 8601 without an offset
/// (taken as UTC); a date alone (00:00 UTC); or a Unix timestamp in seconds
/// (a number or a string of digits, as OB 2.0 allows).
pub fn parse_date(v: &Value) -> Result<DateTime<Utc>, String> {
    let from_secs = |secs: i64| {
        Utc.timestamp_opt(secs, 0)
            .single()
            .ok_or_else(|| format!("{secs} is not a valid Unix timestamp"))
    };
    match v {
        Value::Number(n) => from_secs(n.as_i64().ok_or("not a Unix timestamp in seconds")?),
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                return from_secs(s.parse().map_err(|_| "timestamp out of range")?);
            }
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Ok(t.with_timezone(&Utc));
            }
            if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
                return Ok(t.and_utc());
            }
            if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
            }
            Err(format!("{s:?} is not an ISO 8601 date or a Unix timestamp"))
        }
        _ => Err("must be a date string".into()),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// One record of an Open Badges file: a JSON object, or why it is not one.
pub type Record = Result<Value, String>;

/// Reads the records of an Open Badges file in order, calling `f` with
/// each and the line it starts on. A file whose first non-blank line is a
/// whole JSON value is read line by line (a line holding an array gives
/// each element); otherwise the file is one JSON value, an object or an
/// array of objects.
pub fn read_records(
    path: &Path,
    file: usize,
    f: &mut dyn FnMut(Origin, Record) -> Result<(), InputError>,
) -> Result<(), InputError> {
    let bytes = fs::read(path).map_err(|e| InputError::io(path, e))?;
    let origin = |line: u64| Origin { file, line };
    let split =
        |origin: Origin, v: Value, f: &mut dyn FnMut(Origin, Record) -> Result<(), InputError>| {
            match v {
                Value::Array(items) => {
                    for item in items {
                        f(origin, as_object(item))?;
                    }
                    Ok(())
                }
                other => f(origin, as_object(other)),
            }
        };
    let first_line = bytes
        .split(|b| *b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace));
    let Some(first_line) = first_line else {
        return Ok(());
    };
    if serde_json::from_slice::<serde::de::IgnoredAny>(first_line).is_ok() {
        for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let o = origin(n as u64 + 1);
            match serde_json::from_slice::<Value>(line) {
                Ok(v) => split(o, v, f)?,
                Err(e) => f(o, Err(format!("line: not valid JSON: {e}")))?,
            }
        }
        return Ok(());
    }
    let line_at =
        |offset: usize| 1 + bytes[..offset].iter().filter(|b| **b == b'\n').count() as u64;
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    if bytes[start] == b'[' {
        match serde_json::from_slice::<Vec<&RawValue>>(&bytes) {
            Ok(raws) => {
                for raw in raws {
                    let offset = raw.get().as_ptr() as usize - bytes.as_ptr() as usize;
                    let v = serde_json::from_str::<Value>(raw.get()).map_err(|e| e.to_string());
                    f(origin(line_at(offset)), v.and_then(as_object))?;
                }
                Ok(())
            }
            Err(e) => f(
                origin(e.line() as u64),
                Err(format!("file: not valid JSON: {e}")),
            ),
        }
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => split(origin(line_at(start)), v, f),
            Err(e) => f(
                origin(e.line() as u64),
                Err(format!("file: not valid JSON: {e}")),
            ),
        }
    }
}

fn as_object(v: Value) -> Record {
    if v.is_object() {
        Ok(v)
    } else {
        Err("record: not a JSON object".into())
    }
}

/// A badge class as read: the OB 2.0 BadgeClass or OB 3.0 Achievement
/// object, and where it was found.
#[derive(Debug, Clone)]
struct Class {
    /// The id as written in the export.
    id: String,
    object: Value,
    /// The issuer's id as written (OB 2.0 `issuer`; OB 3.0 the
    /// credential's `issuer`, or a standalone Achievement's `creator`).
    issuer: Option<String>,
    origin: Origin,
    /// Read as an object of its own rather than embedded in an award.
    standalone: bool,
}

/// What the first pass learns, across every Open Badges file.
#[derive(Debug, Default)]
pub struct Catalog {
    classes: Vec<Class>,
    by_id: HashMap<String, usize>,
    earliest: HashMap<String, DateTime<Utc>>,
    /// How many items the second pass will give (for the progress bar).
    pub items: u64,
    pub assertions: u64,
    pub credentials: u64,
    pub issuers: u64,
    /// Objects of other types (endorsements, keys, revocation lists…),
    /// which give no event.
    pub skipped: u64,
}

impl Catalog {
    /// The first pass over `inputs` (their index in the run is given).
    pub fn read(inputs: &[(usize, &Input)]) -> Result<Catalog, InputError> {
        let mut c = Catalog::default();
        for (index, input) in inputs {
            read_records(&input.path, *index, &mut |origin, record| {
                c.learn(origin, record);
                Ok(())
            })?;
        }
        c.items += c.classes.len() as u64;
        Ok(c)
    }

    fn learn(&mut self, origin: Origin, record: Record) {
        let Ok(v) = record else {
            self.items += 1;
            return;
        };
        match kind(&v) {
            Kind::Assertion => {
                self.assertions += 1;
                let badge = v.get("badge");
                let revoked = v.get("revoked") == Some(&Value::Bool(true));
                self.items += 1 + u64::from(revoked && badge.is_some());
                if let Some(Value::Object(b)) = badge {
                    if let Some(id) = id_of(badge) {
                        let issuer = id_of(b.get("issuer")).map(str::to_owned);
                        self.register(id, Value::Object(b.clone()), issuer, origin, false);
                    }
                }
                if let (Some(id), Some(Ok(t))) = (id_of(badge), v.get("issuedOn").map(parse_date)) {
                    self.award(id, t);
                }
            }
            Kind::Credential => {
                self.credentials += 1;
                self.items += 1;
                let achievement = achievement_of(&v);
                if let Some(Value::Object(a)) = achievement {
                    if let Some(id) = id_of(achievement) {
                        // The awards' issuer, so that the badge class and
                        // its awards name the same one.
                        let issuer = id_of(v.get("issuer"))
                            .or_else(|| id_of(a.get("creator")))
                            .map(str::to_owned);
                        self.register(id, Value::Object(a.clone()), issuer, origin, false);
                    }
                }
                if let (Some(id), Some(Ok(t))) = (id_of(achievement), credential_date(&v)) {
                    self.award(id, t);
                }
            }
            Kind::BadgeClass => match id_of(v.get("id")) {
                Some(id) => {
                    let id = id.to_owned();
                    let issuer = id_of(v.get("issuer"))
                        .or_else(|| id_of(v.get("creator")))
                        .map(str::to_owned);
                    self.register(&id, v, issuer, origin, true);
                }
                None => self.items += 1,
            },
            Kind::Issuer => self.issuers += 1,
            Kind::Other => self.skipped += 1,
        }
    }

    /// A standalone object replaces an embedded copy; otherwise the last
    /// one read wins. The class keeps the place of its first sighting.
    fn register(
        &mut self,
        id: &str,
        object: Value,
        issuer: Option<String>,
        origin: Origin,
        standalone: bool,
    ) {
        let class = Class {
            id: id.to_owned(),
            object,
            issuer,
            origin,
            standalone,
        };
        match self.by_id.get(id) {
            Some(&i) => {
                if standalone || !self.classes[i].standalone {
                    self.classes[i] = class;
                }
            }
            None => {
                self.by_id.insert(id.to_owned(), self.classes.len());
                self.classes.push(class);
            }
        }
    }

    fn award(&mut self, class_id: &str, t: DateTime<Utc>) {
        let e = self.earliest.entry(class_id.to_owned()).or_insert(t);
        *e = (*e).min(t);
    }

    /// The number of badge classes read.
    pub fn classes(&self) -> usize {
        self.classes.len()
    }
}

/// `credentialSubject.achievement` (the first subject that has one).
fn achievement_of(v: &Value) -> Option<&Value> {
    match v.get("credentialSubject")? {
        Value::Array(subjects) => subjects.iter().find_map(|s| s.get("achievement")),
        subject => subject.get("achievement"),
    }
}

/// `validFrom`, else `issuanceDate` (VC 1.1), of a credential.
fn credential_date(v: &Value) -> Option<Result<DateTime<Utc>, String>> {
    v.get("validFrom")
        .or_else(|| v.get("issuanceDate"))
        .map(parse_date)
}

/// A list that JSON-LD may compact to a single value.
fn one_or_many(v: Option<&Value>) -> Vec<&Value> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(one) => vec![one],
    }
}

/// The `badge_class.upserted` of a badge class, as a SPEC §3 object.
fn upsert(
    class: &Class,
    catalog: &Catalog,
    opts: &Options,
) -> Result<Value, (Option<String>, String)> {
    let issuer = class.issuer.as_deref().ok_or_else(|| {
        (
            None,
            "issuer: the badge class names no issuer (needed for issuer_id)".to_owned(),
        )
    })?;
    let mut event = Map::new();
    event.insert("org_id".into(), json!(opts.org));
    event.insert("issuer_id".into(), json!(map_id(issuer)));
    event.insert("badge_class_id".into(), json!(map_id(&class.id)));
    event.insert("type".into(), json!("badge_class.upserted"));
    if let Some(name) = class.object.get("name") {
        event.insert("name".into(), name.clone());
    }
    let mut skills: Vec<Value> = Vec::new();
    for a in one_or_many(class.object.get("alignment")) {
        if let Some(name) = a.get("targetName").filter(|n| !n.is_null()) {
            if !skills.contains(name) {
                skills.push(name.clone());
            }
        }
    }
    event.insert("skills".into(), Value::Array(skills));
    if opts.tags_as_attributes {
        let mut attributes = Map::new();
        let tags = class.object.get("tags").or_else(|| class.object.get("tag"));
        for tag in one_or_many(tags) {
            let tag = tag
                .as_str()
                .ok_or((None, "tags: must be strings".to_owned()))?;
            attributes.insert(tag_key(tag), Value::Bool(true));
        }
        event.insert("attributes".into(), Value::Object(attributes));
    }
    let event_id = upsert_event_id(&class.id, &Value::Object(event.clone()));
    let occurred_at = catalog
        .earliest
        .get(&class.id)
        .copied()
        .unwrap_or(opts.started_at);
    event.insert("event_id".into(), json!(event_id));
    event.insert("occurred_at".into(), json!(rfc3339(occurred_at)));
    Ok(Value::Object(event))
}

/// An assertion's event of `kind` as a SPEC §3 object.
fn assertion_event(
    kind: &str,
    assertion_id: &str,
    issuer: &str,
    class_id: &str,
    at: DateTime<Utc>,
    opts: &Options,
) -> Value {
    json!({
        "event_id": assertion_event_id(kind, assertion_id),
        "type": kind,
        "occurred_at": rfc3339(at),
        "org_id": opts.org,
        "issuer_id": map_id(issuer),
        "badge_class_id": map_id(class_id),
        "assertion_id": map_id(assertion_id),
    })
}

/// The events of one OB 2.0 Assertion: `badge.awarded` at `issuedOn`, and
/// `badge.revoked` at the same time when `revoked` is true.
fn assertion(v: &Value, catalog: &Catalog, opts: &Options) -> Result<Vec<Value>, String> {
    let id = id_of(v.get("id")).ok_or("id: required (the assertion's id)")?;
    let class_id = id_of(v.get("badge")).ok_or(
        "badge: required (a revoked assertion exported with only id and revoked cannot be placed)",
    )?;
    let issued = v
        .get("issuedOn")
        .ok_or_else(|| "issuedOn: required".to_owned())
        .and_then(|d| parse_date(d).map_err(|e| format!("issuedOn: {e}")))?;
    let issuer = issuer_of(catalog, class_id)?;
    let mut events = vec![assertion_event(
        "badge.awarded",
        id,
        issuer,
        class_id,
        issued,
        opts,
    )];
    match v.get("revoked") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => events.push(assertion_event(
            "badge.revoked",
            id,
            issuer,
            class_id,
            issued,
            opts,
        )),
        Some(_) => return Err("revoked: must be true or false".into()),
    }
    Ok(events)
}

fn issuer_of<'a>(catalog: &'a Catalog, class_id: &str) -> Result<&'a str, String> {
    let class = catalog
        .by_id
        .get(class_id)
        .map(|&i| &catalog.classes[i])
        .ok_or_else(|| {
            format!(
                "badge: badge class {class_id:?} is not in the import (its issuer gives issuer_id)"
            )
        })?;
    class
        .issuer
        .as_deref()
        .ok_or_else(|| format!("badge: badge class {class_id:?} names no issuer"))
}

/// The event of one OB 3.0 credential: `badge.awarded` at `validFrom`
/// (else `issuanceDate`). `credentialStatus` is not read.
fn credential(v: &Value, opts: &Options) -> Result<Value, (String, String)> {
    let id = match id_of(v.get("id")) {
        Some(id) => id.to_owned(),
        None => content_id(v),
    };
    let fail = |e: &str| (id.clone(), e.to_owned());
    let class_id = id_of(achievement_of(v))
        .ok_or_else(|| fail("credentialSubject.achievement: required, with an id"))?;
    let issuer = id_of(v.get("issuer")).ok_or_else(|| fail("issuer: required"))?;
    let at = credential_date(v)
        .ok_or_else(|| fail("validFrom: required (or issuanceDate)"))?
        .map_err(|e| fail(&format!("validFrom: {e}")))?;
    Ok(assertion_event(
        "badge.awarded",
        &id,
        issuer,
        class_id,
        at,
        opts,
    ))
}

/// The second pass: every item, in order.
pub fn emit(
    inputs: &[(usize, &Input)],
    catalog: &Catalog,
    opts: &Options,
    check: Check,
    out: &mut dyn FnMut(Item) -> Result<(), InputError>,
) -> Result<(), InputError> {
    for class in &catalog.classes {
        let item = match upsert(class, catalog, opts) {
            Ok(event) => check.object(class.origin, &event),
            Err((event_id, error)) => Item::reject(class.origin, event_id, error),
        };
        out(item)?;
    }
    for (index, input) in inputs {
        read_records(&input.path, *index, &mut |origin, record| {
            let v = match record {
                Ok(v) => v,
                Err(e) => return out(Item::reject(origin, None, e)),
            };
            match kind(&v) {
                Kind::Assertion => match assertion(&v, catalog, opts) {
                    Ok(events) => {
                        for e in events {
                            out(check.object(origin, &e))?;
                        }
                        Ok(())
                    }
                    Err(e) => {
                        let event_id =
                            id_of(v.get("id")).map(|id| assertion_event_id("badge.awarded", id));
                        out(Item::reject(origin, event_id, e))
                    }
                },
                Kind::Credential => match credential(&v, opts) {
                    Ok(e) => out(check.object(origin, &e)),
                    Err((id, e)) => out(Item::reject(
                        origin,
                        Some(assertion_event_id("badge.awarded", &id)),
                        e,
                    )),
                },
                Kind::BadgeClass if id_of(v.get("id")).is_none() => {
                    out(Item::reject(origin, None, "id: a badge class needs an id"))
                }
                Kind::BadgeClass | Kind::Issuer | Kind::Other => Ok(()),
            }
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let t = |s: Value| parse_date(&s).map(rfc3339);
        assert_eq!(
            t(json!("2016-12-31T23:59:59Z")).unwrap(),
            "2016-12-31T23:59:59Z"
        );
        assert_eq!(
            t(json!("2016-12-31T23:59:59+02:00")).unwrap(),
            "2016-12-31T21:59:59Z"
        );
        assert_eq!(
            t(json!("2016-12-31T23:59:59")).unwrap(),
            "2016-12-31T23:59:59Z"
        );
        assert_eq!(t(json!("2016-12-31")).unwrap(), "2016-12-31T00:00:00Z");
        assert_eq!(t(json!(1483228799)).unwrap(), "2016-12-31T23:59:59Z");
        assert_eq!(t(json!("1483228799")).unwrap(), "2016-12-31T23:59:59Z");
        assert!(t(json!("last tuesday")).is_err());
        assert!(t(json!(true)).is_err());
    }

    fn testdata(rel: &str) -> Input {
        Input {
            path: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata")
                .join(rel),
            format: crate::input::Format::Openbadges,
        }
    }

    /// Every Open Badges fixture, mapped (docs/import.md's examples).
    fn fixture_items(tags_as_attributes: bool) -> (Catalog, Vec<Item>) {
        let inputs: Vec<Input> = [
            "ob2/badgeclasses.json",
            "ob2/issuer.json",
            "ob2/assertions.ndjson",
            "ob2/broken.ndjson",
            "ob3/intro-sql.json",
            "ob3/no-id.json",
        ]
        .iter()
        .map(|p| testdata(p))
        .collect();
        let indexed: Vec<(usize, &Input)> = inputs.iter().enumerate().collect();
        let catalog = Catalog::read(&indexed).unwrap();
        let opts = Options {
            org: "eit".into(),
            tags_as_attributes,
            started_at: "2026-12-01T00:00:00Z".parse().unwrap(),
        };
        let mut items = Vec::new();
        emit(&indexed, &catalog, &opts, Check::Contract, &mut |i| {
            items.push(i);
            Ok(())
        })
        .unwrap();
        (catalog, items)
    }

    fn h(id: &str) -> String {
        format!("h:{}", crate::ids::hash16(&[id]))
    }

    #[test]
    fn open_badges_fixtures_map_as_documented() {
        let (catalog, items) = fixture_items(true);
        assert_eq!(
            (catalog.classes(), catalog.assertions, catalog.credentials),
            (4, 6, 2)
        );
        assert_eq!((catalog.issuers, catalog.skipped), (1, 1));
        assert_eq!(catalog.items, items.len() as u64);
        let issuer = h("https://badges.example.edu/issuer.json");
        let robotics = h("https://badges.example.edu/classes/robotics-foundations.json");
        let lab = "urn:uuid:6b3e2c1a-9d4f-4e5b-8a7c-1f2e3d4c5b6a";
        let ethics = h("https://badges.example.edu/classes/data-ethics.json");
        let sql_issuer = h("https://learn.example.com/issuers/42");
        let sql = h("https://learn.example.com/achievements/intro-sql");
        let no_id: Value =
            serde_json::from_slice(&fs::read(testdata("ob3/no-id.json").path).unwrap()).unwrap();
        let no_id = content_id(&no_id);

        let mut events = Vec::new();
        let mut rejects = Vec::new();
        for item in &items {
            match item {
                Item::Event {
                    origin,
                    json,
                    event_id,
                } => {
                    let v: Value = serde_json::from_slice(json).unwrap();
                    assert_eq!(v["event_id"], *event_id.as_ref().unwrap());
                    assert_eq!(v["org_id"], "eit");
                    events.push((*origin, v));
                }
                Item::Reject(r) => rejects.push(r.clone()),
            }
        }
        let upserts: Vec<(&Value, Origin)> = events
            .iter()
            .filter(|(_, v)| v["type"] == "badge_class.upserted")
            .map(|(o, v)| (v, *o))
            .collect();
        let upsert = |i: usize| {
            let (v, o) = upserts[i];
            (
                o.file,
                v["badge_class_id"].as_str().unwrap().to_owned(),
                v["issuer_id"].as_str().unwrap().to_owned(),
                v["name"].as_str().unwrap().to_owned(),
                v["skills"].clone(),
                v["attributes"].clone(),
                v["occurred_at"].as_str().unwrap().to_owned(),
            )
        };
        assert_eq!(upserts.len(), 4);
        assert_eq!(
            upsert(0),
            (
                0,
                robotics.clone(),
                issuer.clone(),
                "Robotics Foundations".into(),
                json!(["Mechanical assembly", "Control loops"]),
                json!({"robots": true, "stem_outreach": true}),
                "2024-02-28T15:00:00Z".into()
            )
        );
        assert_eq!(
            upsert(1),
            (
                0,
                lab.into(),
                issuer.clone(),
                "Lab Safety".into(),
                json!(["Hazard identification"]),
                json!({}),
                "2024-05-10T00:00:00Z".into()
            )
        );
        assert_eq!(
            upsert(2),
            (
                2,
                ethics.clone(),
                issuer.clone(),
                "Data Ethics".into(),
                json!(["Responsible data use"]),
                json!({"ethics": true}),
                "2024-06-01T00:00:00Z".into()
            )
        );
        assert_eq!(
            upsert(3),
            (
                5,
                sql.clone(),
                sql_issuer.clone(),
                "Introduction to SQL".into(),
                json!(["Relational databases", "Query writing"]),
                json!({"databases": true, "sql": true}),
                "2025-01-15T10:00:00Z".into()
            )
        );
        assert_eq!(upserts[0].1.line, 2, "the array element's line");

        let awards: Vec<(u64, String, String, String, String, String)> = events
            .iter()
            .filter(|(_, v)| v["type"] != "badge_class.upserted")
            .map(|(o, v)| {
                (
                    o.file as u64 * 100 + o.line,
                    v["type"].as_str().unwrap().to_owned(),
                    v["assertion_id"].as_str().unwrap().to_owned(),
                    v["badge_class_id"].as_str().unwrap().to_owned(),
                    v["issuer_id"].as_str().unwrap().to_owned(),
                    v["occurred_at"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let a = |place: u64, t: &str, id: &str, class: &str, iss: &str, at: &str| {
            (
                place,
                t.to_owned(),
                id.to_owned(),
                class.to_owned(),
                iss.to_owned(),
                at.to_owned(),
            )
        };
        let revoked_id = "urn:uuid:0f0b2f6e-3c1d-4b7a-9e8f-5a6b7c8d9e0f";
        assert_eq!(
            awards,
            vec![
                a(
                    201,
                    "badge.awarded",
                    &h("https://badges.example.edu/assertions/1001"),
                    &robotics,
                    &issuer,
                    "2024-03-04T09:15:00Z"
                ),
                a(
                    202,
                    "badge.awarded",
                    revoked_id,
                    &robotics,
                    &issuer,
                    "2024-02-28T15:00:00Z"
                ),
                a(
                    202,
                    "badge.revoked",
                    revoked_id,
                    &robotics,
                    &issuer,
                    "2024-02-28T15:00:00Z"
                ),
                a(
                    203,
                    "badge.awarded",
                    &h("https://badges.example.edu/assertions/1003"),
                    lab,
                    &issuer,
                    "2024-05-10T00:00:00Z"
                ),
                a(
                    204,
                    "badge.awarded",
                    &h("https://badges.example.edu/assertions/1004"),
                    &ethics,
                    &issuer,
                    "2024-06-01T00:00:00Z"
                ),
                a(
                    401,
                    "badge.awarded",
                    "urn:uuid:91537dba-56cb-11ec-bf63-0242ac130002",
                    &sql,
                    &sql_issuer,
                    "2025-01-15T10:00:00Z"
                ),
                a(
                    501,
                    "badge.awarded",
                    &no_id,
                    &sql,
                    &sql_issuer,
                    "2025-02-01T08:30:00Z"
                ),
            ]
        );
        let ids: Vec<&str> = events
            .iter()
            .map(|(_, v)| v["event_id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&assertion_event_id("badge.revoked", revoked_id).as_str()));
        assert!(ids.contains(&assertion_event_id("badge.awarded", &no_id).as_str()));

        let rejects: Vec<(usize, u64, &str)> = rejects
            .iter()
            .map(|r| {
                (
                    r.origin.file,
                    r.origin.line,
                    r.error.split(':').next().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            rejects,
            vec![(3, 1, "badge"), (3, 2, "badge"), (3, 3, "line")]
        );
    }

    #[test]
    fn tags_are_attributes_only_if_configured() {
        let (_, items) = fixture_items(false);
        for item in items {
            if let Item::Event { json, .. } = item {
                let v: Value = serde_json::from_slice(&json).unwrap();
                assert!(v.get("attributes").is_none(), "{v}");
            }
        }
    }

    #[test]
    fn a_reexport_with_changed_metadata_is_a_new_upsert() {
        let class = |name: &str| Class {
            id: "https://x.example/c".into(),
            object: json!({"name": name}),
            issuer: Some("https://x.example/i".into()),
            origin: Origin { file: 0, line: 1 },
            standalone: true,
        };
        let opts = Options {
            org: "o".into(),
            tags_as_attributes: false,
            started_at: "2026-12-01T00:00:00Z".parse().unwrap(),
        };
        let c = Catalog::default();
        let a = upsert(&class("A"), &c, &opts).unwrap();
        let again = upsert(&class("A"), &c, &opts).unwrap();
        let b = upsert(&class("B"), &c, &opts).unwrap();
        assert_eq!(a["event_id"], again["event_id"]);
        assert_ne!(a["event_id"], b["event_id"]);
        assert_eq!(
            a["occurred_at"], "2026-12-01T00:00:00Z",
            "no award: the run's start"
        );
    }

    #[test]
    fn kinds() {
        assert_eq!(kind(&json!({"type": "Assertion"})), Kind::Assertion);
        assert_eq!(kind(&json!({"type": "obi:Assertion"})), Kind::Assertion);
        assert_eq!(
            kind(&json!({"type": ["VerifiableCredential", "OpenBadgeCredential"]})),
            Kind::Credential
        );
        assert_eq!(kind(&json!({"type": ["Achievement"]})), Kind::BadgeClass);
        assert_eq!(kind(&json!({"type": "Issuer"})), Kind::Issuer);
        assert_eq!(kind(&json!({"type": "Endorsement"})), Kind::Other);
    }
}
