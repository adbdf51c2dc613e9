//! Events (SPEC §3): the closed sets, the validated [`Event`] that ingest
//! publishes and the aggregator consumes, and validation of platform input.
//!
//! Validation is field by field over JSON so that every error names the
//! field at fault, and one bad event never rejects its neighbours.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How far in the future a platform event's `occurred_at` may lie.
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);

/// Longest id accepted for `event_id`, org, issuer, badge class, assertion.
pub const MAX_ID_LEN: usize = 64;

/// Longest badge class name, and longest entry of a metadata list.
pub const MAX_TEXT_LEN: usize = 512;

/// Most entries in one metadata list (`skills`, `pathways`, …) or `attributes`.
pub const MAX_LIST_LEN: usize = 256;

/// Declares a closed set of wire values as a `Copy` enum with `as_str`,
/// `parse` and serde in its wire spelling.
macro_rules! closed_set {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $wire)] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire,)+ }
            }

            /// Parses the wire spelling; `None` for anything else.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($wire => Some($name::$variant),)+ _ => None }
            }

            /// The accepted values, comma separated, for error messages.
            pub fn expected() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

closed_set!(
    /// The event type (`type`).
    EventType {
        Awarded = "badge.awarded",
        Accepted = "badge.accepted",
        Shared = "badge.shared",
        Viewed = "badge.viewed",
        Revoked = "badge.revoked",
        BadgeClassUpserted = "badge_class.upserted",
    }
);

closed_set!(
    /// How a badge was awarded (`award_method` of `badge.awarded`).
    AwardMethod {
        Manual = "manual",
        Lms = "lms",
        Api = "api",
        Bulk = "bulk",
        Integration = "integration",
        Other = "other",
    }
);

closed_set!(
    /// Where a badge was shared (`channel` of `badge.shared`).
    ShareChannel {
        Linkedin = "linkedin",
        Facebook = "facebook",
        X = "x",
        Email = "email",
        LinkCopy = "link_copy",
        Embed = "embed",
        Download = "download",
        Wallet = "wallet",
        Other = "other",
    }
);

closed_set!(
    /// Where a view came from (`source` of `badge.viewed`).
    ViewSource {
        Linkedin = "linkedin",
        Facebook = "facebook",
        X = "x",
        Email = "email",
        Embed = "embed",
        Search = "search",
        Platform = "platform",
        Direct = "direct",
        Other = "other",
    }
);

impl EventType {
    /// The short name used in NATS subjects and metric labels
    /// (`awarded`, …, `badge_class_upserted`).
    pub fn short(self) -> &'static str {
        match self {
            EventType::Awarded => "awarded",
            EventType::Accepted => "accepted",
            EventType::Shared => "shared",
            EventType::Viewed => "viewed",
            EventType::Revoked => "revoked",
            EventType::BadgeClassUpserted => "badge_class_upserted",
        }
    }

    /// Whether the type is one of the `badge.*` assertion events.
    pub fn is_assertion_event(self) -> bool {
        self != EventType::BadgeClassUpserted
    }
}

/// Metadata of a badge class, carried by `badge_class.upserted`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadgeClassMeta {
    pub name: String,
    #[serde(default)]
    pub skills: Vec<String>,
    #[serde(default)]
    pub pathways: Vec<String>,
    #[serde(default)]
    pub courses: Vec<String>,
    #[serde(default)]
    pub catalogs: Vec<String>,
    #[serde(default)]
    pub collections: Vec<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, bool>,
}

/// A validated event as published to NATS and consumed by the aggregator.
///
/// Invariant: every value satisfies SPEC §3 (ids, enums, per-type fields);
/// only [`validate_platform_event`] and ingest's beacon path construct it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub occurred_at: DateTime<Utc>,
    /// When ingest received the event.
    pub received_at: DateTime<Utc>,
    pub org_id: String,
    pub issuer_id: String,
    pub badge_class_id: String,
    /// Empty for `badge_class.upserted`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub assertion_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub award_method: Option<AwardMethod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ShareChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ViewSource>,
    /// ISO 3166-1 alpha-2, upper case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Keyed hash of the viewer (SPEC §4); only pixel and beacon views have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewer_key: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub badge_class: Option<BadgeClassMeta>,
}

/// Why an input was rejected, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Whether `s` is a valid id: 1–64 chars of `[A-Za-z0-9._:-]`.
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
}

/// Checks an id, naming `field` on failure.
pub fn check_id(field: &str, s: &str) -> Result<(), FieldError> {
    if s.is_empty() {
        Err(FieldError::new(field, "must not be empty"))
    } else if s.len() > MAX_ID_LEN {
        Err(FieldError::new(
            field,
            format!("longer than {MAX_ID_LEN} characters"),
        ))
    } else if !is_valid_id(s) {
        Err(FieldError::new(
            field,
            "may contain only A-Z, a-z, 0-9 and . _ : -",
        ))
    } else {
        Ok(())
    }
}

/// Normalises and checks a country code (two ASCII letters, returned upper case).
pub fn parse_country(s: &str) -> Option<String> {
    (s.len() == 2 && s.bytes().all(|c| c.is_ascii_alphabetic())).then(|| s.to_ascii_uppercase())
}

/// Fields every platform event may carry.
const COMMON_FIELDS: &[&str] = &[
    "event_id",
    "type",
    "occurred_at",
    "org_id",
    "issuer_id",
    "badge_class_id",
    "assertion_id",
];

/// Fields only some event types may carry.
const TYPE_SPECIFIC_FIELDS: &[&str] = &[
    "award_method",
    "channel",
    "source",
    "country",
    "name",
    "skills",
    "pathways",
    "courses",
    "catalogs",
    "collections",
    "attributes",
];

/// Reads the `event_id` of a raw event for error reports, if it has a usable one.
pub fn raw_event_id(raw: &Value) -> Option<String> {
    raw.get("event_id")
        .and_then(Value::as_str)
        .filter(|s| s.len() <= MAX_ID_LEN)
        .map(str::to_owned)
}

/// Validates one platform event (one element of `{"events":[…]}`) received
/// at `now`.
pub fn validate_platform_event(raw: &Value, now: DateTime<Utc>) -> Result<Event, FieldError> {
    let obj = raw
        .as_object()
        .ok_or_else(|| FieldError::new("event", "must be a JSON object"))?;
    let known = |k: &str| COMMON_FIELDS.contains(&k) || TYPE_SPECIFIC_FIELDS.contains(&k);
    if let Some(unknown) = obj.keys().find(|k| !known(k)) {
        return Err(FieldError::new(unknown.as_str(), "unknown field"));
    }
    let event_id = required_id(obj, "event_id")?;
    let type_str = required_str(obj, "type")?;
    let kind = EventType::parse(type_str).ok_or_else(|| {
        FieldError::new(
            "type",
            format!(
                "unknown type {type_str:?} (expected one of {})",
                EventType::expected()
            ),
        )
    })?;
    let occurred_str = required_str(obj, "occurred_at")?;
    let occurred_at = DateTime::parse_from_rfc3339(occurred_str)
        .map_err(|e| FieldError::new("occurred_at", format!("not an RFC 3339 timestamp: {e}")))?
        .with_timezone(&Utc);
    if occurred_at > now + MAX_FUTURE_SKEW {
        return Err(FieldError::new(
            "occurred_at",
            "more than 5 minutes in the future",
        ));
    }
    let org_id = required_id(obj, "org_id")?;
    let issuer_id = required_id(obj, "issuer_id")?;
    let badge_class_id = required_id(obj, "badge_class_id")?;

    let mut event = Event {
        event_id,
        kind,
        occurred_at,
        received_at: now,
        org_id,
        issuer_id,
        badge_class_id,
        assertion_id: String::new(),
        award_method: None,
        channel: None,
        source: None,
        country: None,
        viewer_key: None,
        badge_class: None,
    };

    if kind.is_assertion_event() {
        event.assertion_id = required_id(obj, "assertion_id")?;
    } else if obj.contains_key("assertion_id") {
        return Err(FieldError::new(
            "assertion_id",
            "must be absent for badge_class.upserted",
        ));
    }

    let allowed: &[&str] = match kind {
        EventType::Awarded => &["award_method"],
        EventType::Shared => &["channel"],
        EventType::Viewed => &["source", "country"],
        EventType::BadgeClassUpserted => &[
            "name",
            "skills",
            "pathways",
            "courses",
            "catalogs",
            "collections",
            "attributes",
        ],
        EventType::Accepted | EventType::Revoked => &[],
    };
    if let Some(f) = TYPE_SPECIFIC_FIELDS
        .iter()
        .find(|f| obj.contains_key(**f) && !allowed.contains(f))
    {
        return Err(FieldError::new(*f, format!("not allowed for {kind}")));
    }

    match kind {
        EventType::Awarded => {
            event.award_method = Some(match optional_str(obj, "award_method")? {
                None => AwardMethod::Other,
                Some(s) => AwardMethod::parse(s)
                    .ok_or_else(|| unknown_value("award_method", s, AwardMethod::expected()))?,
            });
        }
        // A value that was never tracked (a missing field) is `other`
        // (SPEC §3: a history must never be refused for it); a value
        // outside the closed set is still an error naming the field.
        EventType::Shared => {
            event.channel = Some(match optional_str(obj, "channel")? {
                None => ShareChannel::Other,
                Some(s) => ShareChannel::parse(s)
                    .ok_or_else(|| unknown_value("channel", s, ShareChannel::expected()))?,
            });
        }
        EventType::Viewed => {
            event.source = Some(match optional_str(obj, "source")? {
                None => ViewSource::Other,
                Some(s) => ViewSource::parse(s)
                    .ok_or_else(|| unknown_value("source", s, ViewSource::expected()))?,
            });
            if let Some(c) = optional_str(obj, "country")? {
                event.country = Some(parse_country(c).ok_or_else(|| {
                    FieldError::new(
                        "country",
                        "must be an ISO 3166-1 alpha-2 code such as \"DE\"",
                    )
                })?);
            }
        }
        EventType::BadgeClassUpserted => {
            event.badge_class = Some(badge_class_meta(obj)?);
        }
        EventType::Accepted | EventType::Revoked => {}
    }
    Ok(event)
}

fn unknown_value(field: &str, value: &str, expected: String) -> FieldError {
    FieldError::new(
        field,
        format!("unknown value {value:?} (expected one of {expected})"),
    )
}

fn required_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, FieldError> {
    optional_str(obj, field)?.ok_or_else(|| FieldError::new(field, "is required"))
}

fn optional_str<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(FieldError::new(field, "must be a string")),
    }
}

fn required_id(obj: &Map<String, Value>, field: &str) -> Result<String, FieldError> {
    let s = required_str(obj, field)?;
    check_id(field, s)?;
    Ok(s.to_owned())
}

fn checked_text(field: &str, s: &str) -> Result<String, FieldError> {
    if s.chars().count() > MAX_TEXT_LEN {
        return Err(FieldError::new(
            field,
            format!("longer than {MAX_TEXT_LEN} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(FieldError::new(field, "contains control characters"));
    }
    Ok(s.to_owned())
}

fn string_list(obj: &Map<String, Value>, field: &str) -> Result<Vec<String>, FieldError> {
    let items = match obj.get(field) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(FieldError::new(field, "must be an array of strings")),
    };
    if items.len() > MAX_LIST_LEN {
        return Err(FieldError::new(
            field,
            format!("more than {MAX_LIST_LEN} entries"),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let name = format!("{field}[{i}]");
            v.as_str()
                .ok_or_else(|| FieldError::new(name.as_str(), "must be a string"))
                .and_then(|s| checked_text(&name, s))
        })
        .collect()
}

fn badge_class_meta(obj: &Map<String, Value>) -> Result<BadgeClassMeta, FieldError> {
    let name = checked_text("name", required_str(obj, "name")?)?;
    let mut attributes = BTreeMap::new();
    match obj.get("attributes") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            if map.len() > MAX_LIST_LEN {
                return Err(FieldError::new(
                    "attributes",
                    format!("more than {MAX_LIST_LEN} entries"),
                ));
            }
            for (k, v) in map {
                let field = format!("attributes.{k}");
                check_id(&field, k)?;
                let b = v
                    .as_bool()
                    .ok_or_else(|| FieldError::new(field.as_str(), "must be true or false"))?;
                attributes.insert(k.clone(), b);
            }
        }
        Some(_) => {
            return Err(FieldError::new(
                "attributes",
                "must be an object of string → bool",
            ))
        }
    }
    Ok(BadgeClassMeta {
        name,
        skills: string_list(obj, "skills")?,
        pathways: string_list(obj, "pathways")?,
        courses: string_list(obj, "courses")?,
        catalogs: string_list(obj, "catalogs")?,
        collections: string_list(obj, "collections")?,
        attributes,
    })
}

impl Event {
    /// The value of this event's distribution dimension (award method,
    /// share channel or view source), `""` for types without one.
    pub fn dimension_value(&self) -> &'static str {
        match self.kind {
            EventType::Awarded => self.award_method.map_or("", AwardMethod::as_str),
            EventType::Shared => self.channel.map_or("", ShareChannel::as_str),
            EventType::Viewed => self.source.map_or("", ViewSource::as_str),
            _ => "",
        }
    }

    /// `occurred_at` as RFC 3339 with seconds, for logs and reports.
    pub fn occurred_at_rfc3339(&self) -> String {
        self.occurred_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

/// Encodes events as one NATS message payload: newline-delimited JSON.
pub fn encode_payload(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 320);
    for e in events {
        serde_json::to_writer(&mut out, e).expect("an Event always serialises");
        out.push(b'\n');
    }
    out
}

/// One event's line of a payload: what [`encode_payload`] writes for it,
/// so that lines concatenated are the payload of those events.
pub fn encode_line(event: &Event) -> Vec<u8> {
    encode_payload(std::slice::from_ref(event))
}

/// Decodes a NATS message payload produced by [`encode_payload`].
///
/// Fails as a whole when any line is not a valid event: the message then
/// goes to the dead-letter stream as it is.
pub fn decode_payload(payload: &[u8]) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    for (n, line) in payload.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let event: Event =
            serde_json::from_slice(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        check_decoded(&event).map_err(|e| format!("line {}: {e}", n + 1))?;
        events.push(event);
    }
    if events.is_empty() {
        return Err("empty payload".into());
    }
    Ok(events)
}

/// Re-checks the invariants of an event read back from the wire, so the
/// aggregator never writes a row that validation would have refused.
fn check_decoded(e: &Event) -> Result<(), FieldError> {
    check_id("event_id", &e.event_id)?;
    check_id("org_id", &e.org_id)?;
    check_id("issuer_id", &e.issuer_id)?;
    check_id("badge_class_id", &e.badge_class_id)?;
    if e.kind.is_assertion_event() {
        check_id("assertion_id", &e.assertion_id)?;
    }
    if e.kind == EventType::BadgeClassUpserted && e.badge_class.is_none() {
        return Err(FieldError::new("name", "is required"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    fn awarded() -> Value {
        json!({"event_id":"e-1","type":"badge.awarded","occurred_at":"2026-03-01T11:00:00Z",
               "org_id":"acme","issuer_id":"iss","badge_class_id":"bc","assertion_id":"as-1"})
    }

    fn err_field(v: Value) -> String {
        validate_platform_event(&v, now()).unwrap_err().field
    }

    #[test]
    fn award_method_defaults_to_other_and_rejects_unknown() {
        let e = validate_platform_event(&awarded(), now()).unwrap();
        assert_eq!(e.award_method, Some(AwardMethod::Other));
        assert_eq!(e.received_at, now());
        let mut v = awarded();
        v["award_method"] = json!("lms");
        assert_eq!(
            validate_platform_event(&v, now()).unwrap().award_method,
            Some(AwardMethod::Lms)
        );
        v["award_method"] = json!("carrier-pigeon");
        let err = validate_platform_event(&v, now()).unwrap_err();
        assert_eq!(err.field, "award_method");
        assert!(err.message.contains("carrier-pigeon"), "{err}");
    }

    #[test]
    fn ids_are_checked_by_name() {
        let mut v = awarded();
        v["org_id"] = json!("bad org");
        assert_eq!(err_field(v), "org_id");
        let mut v = awarded();
        v["event_id"] = json!("x".repeat(65));
        assert_eq!(err_field(v), "event_id");
        let mut v = awarded();
        v.as_object_mut().unwrap().remove("assertion_id");
        assert_eq!(err_field(v), "assertion_id");
        let mut v = awarded();
        v["issuer_id"] = json!(5);
        assert_eq!(err_field(v), "issuer_id");
    }

    #[test]
    fn future_and_malformed_timestamps_are_rejected() {
        let mut v = awarded();
        v["occurred_at"] = json!("2026-03-01T12:04:59Z");
        assert!(validate_platform_event(&v, now()).is_ok());
        v["occurred_at"] = json!("2026-03-01T12:05:01Z");
        assert_eq!(err_field(v.clone()), "occurred_at");
        v["occurred_at"] = json!("yesterday");
        assert_eq!(err_field(v), "occurred_at");
    }

    #[test]
    fn type_specific_fields() {
        let mut v = awarded();
        v["channel"] = json!("linkedin");
        assert_eq!(err_field(v), "channel");
        let shared = json!({"event_id":"e","type":"badge.shared","occurred_at":"2026-03-01T11:00:00Z",
            "org_id":"o","issuer_id":"i","badge_class_id":"b","assertion_id":"a","channel":"wallet"});
        let e = validate_platform_event(&shared, now()).unwrap();
        assert_eq!(e.channel, Some(ShareChannel::Wallet));
        assert_eq!(e.dimension_value(), "wallet");
        let viewed = json!({"event_id":"e","type":"badge.viewed","occurred_at":"2026-03-01T11:00:00Z",
            "org_id":"o","issuer_id":"i","badge_class_id":"b","assertion_id":"a","source":"search","country":"de"});
        let e = validate_platform_event(&viewed, now()).unwrap();
        assert_eq!(e.country.as_deref(), Some("DE"));
        let mut bad = viewed.clone();
        bad["country"] = json!("Germany");
        assert_eq!(err_field(bad), "country");
        let mut unknown = viewed;
        unknown["colour"] = json!("red");
        assert_eq!(err_field(unknown), "colour");
    }

    #[test]
    fn untracked_channel_and_source_are_other() {
        let shared = json!({"event_id":"e","type":"badge.shared","occurred_at":"2026-03-01T11:00:00Z",
            "org_id":"o","issuer_id":"i","badge_class_id":"b","assertion_id":"a"});
        let e = validate_platform_event(&shared, now()).unwrap();
        assert_eq!(e.channel, Some(ShareChannel::Other));
        assert_eq!(e.dimension_value(), "other");
        let mut null_channel = shared.clone();
        null_channel["channel"] = Value::Null;
        assert_eq!(
            validate_platform_event(&null_channel, now())
                .unwrap()
                .channel,
            Some(ShareChannel::Other)
        );
        let mut unknown = shared;
        unknown["channel"] = json!("myspace");
        let err = validate_platform_event(&unknown, now()).unwrap_err();
        assert_eq!(err.field, "channel");
        assert!(err.message.contains("myspace"), "{err}");

        let viewed = json!({"event_id":"e","type":"badge.viewed","occurred_at":"2026-03-01T11:00:00Z",
            "org_id":"o","issuer_id":"i","badge_class_id":"b","assertion_id":"a"});
        let e = validate_platform_event(&viewed, now()).unwrap();
        assert_eq!(e.source, Some(ViewSource::Other));
        assert_eq!(e.dimension_value(), "other");
        let mut unknown = viewed;
        unknown["source"] = json!("carrier-pigeon");
        let err = validate_platform_event(&unknown, now()).unwrap_err();
        assert_eq!(err.field, "source");
        assert!(err.message.contains("carrier-pigeon"), "{err}");
        let mut wrong_type = unknown;
        wrong_type["source"] = json!(3);
        assert_eq!(err_field(wrong_type), "source");
    }

    #[test]
    fn badge_class_upserted() {
        let v = json!({"event_id":"u1","type":"badge_class.upserted","occurred_at":"2026-03-01T11:00:00Z",
            "org_id":"o","issuer_id":"i","badge_class_id":"b","name":"Rust 101",
            "skills":["rust"],"attributes":{"has_criteria":true}});
        let e = validate_platform_event(&v, now()).unwrap();
        let meta = e.badge_class.unwrap();
        assert_eq!(meta.skills, vec!["rust"]);
        assert_eq!(meta.attributes.get("has_criteria"), Some(&true));
        let mut bad = v.clone();
        bad["assertion_id"] = json!("a");
        assert_eq!(err_field(bad), "assertion_id");
        let mut bad = v.clone();
        bad["skills"] = json!(["ok", 3]);
        assert_eq!(err_field(bad), "skills[1]");
        let mut bad = v;
        bad["attributes"] = json!({"x": "yes"});
        assert_eq!(err_field(bad), "attributes.x");
    }

    #[test]
    fn payload_round_trip_and_garbage() {
        let a = validate_platform_event(&awarded(), now()).unwrap();
        let mut b = a.clone();
        b.event_id = "e-2".into();
        let payload = encode_payload(&[a.clone(), b.clone()]);
        assert_eq!(decode_payload(&payload).unwrap(), vec![a, b]);
        assert!(decode_payload(b"{not json}\n").is_err());
        assert!(decode_payload(b"").is_err());
        let tampered = String::from_utf8(payload).unwrap().replace("acme", "ac me");
        assert!(decode_payload(tampered.as_bytes()).is_err());
    }
}
