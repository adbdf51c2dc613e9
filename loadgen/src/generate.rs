//! The seeded model of badge traffic: orgs, issuers and badge classes with
//! metadata, assertions moving through Awarded → Accepted → Shared →
//! Viewed, the platform events and beacon hits that describe them, and the
//! ledger of what the pipeline must count.
//!
//! Pure and deterministic: the same (seed, scale, now, days) always gives
//! the same [`Plan`]. Must not: do I/O, read the clock, or sign anything
//! (the pixel key is the sender's business).

use badgepulse_contract::event::{
    AwardMethod, BadgeClassMeta, EventType, ShareChannel, ViewSource,
};
use badgepulse_contract::signing::PixelIds;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::catalog::{
    self, client_country, doc_ip, expected_view_source, BOT_UAS, BROWSER_UAS, COUNTRIES, DOC_HOSTS,
    DOC_PREFIXES, ORGS, PLATFORM_HOST, REFERERS, SRC_HINTS,
};
use crate::ledger::{self, ClassRef, Fact, Ledger, OrgName, Period, Traffic};

/// Most hits (pixels and beacons) one client identity (IP, User-Agent)
/// sends in a run. Ingest rate-limits per client and minute (120 by
/// default); staying below that in total keeps every hit countable however
/// fast the run goes.
pub const MAX_HITS_PER_CLIENT: u32 = 100;

/// Largest `scale`: beyond it the documentation address ranges run out of
/// client identities under [`MAX_HITS_PER_CLIENT`].
pub const MAX_SCALE: u32 = 200;

/// Platform events end this long before `now`, so none lies in the future
/// even with some clock skew between generator and ingest.
pub const END_MARGIN_SECS: i64 = 60;

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// Everything one run sends, in the order it is sent, and the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub seed: u64,
    pub scale: u32,
    pub days: u32,
    pub now: DateTime<Utc>,
    /// Phase 1: every platform event once, `badge_class.upserted` first,
    /// then by `occurred_at`; sent with `POST /v1/events`.
    pub events: Vec<Value>,
    /// Phase 2, after phase 1 is stored: exact resends of phase-1 events
    /// (same `event_id`, to be deduplicated) and older versions of some
    /// `badge_class.upserted` (distinct events the newer metadata must beat).
    pub late_events: Vec<Value>,
    /// Phase 3: share beacons (`/s.gif` and `POST /v1/beacon`), bots included.
    pub share_beacons: Vec<Beacon>,
    /// Phase 4: view pixels and view beacons, bots included.
    pub view_beacons: Vec<Beacon>,
    pub ledger: Ledger,
}

/// What a beacon reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BeaconKind {
    View,
    Share,
}

/// How a beacon reaches ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// `GET /p.gif` (views) or `GET /s.gif` (shares).
    Pixel,
    /// `POST /v1/beacon`, as `navigator.sendBeacon` sends it.
    Post,
}

/// One pixel or beacon hit with the headers a browser (or bot) would send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beacon {
    pub kind: BeaconKind,
    pub transport: Transport,
    pub org_id: String,
    pub issuer_id: String,
    pub badge_class_id: String,
    pub assertion_id: String,
    /// Share channel (`c` / `channel`); `None` leaves it out (ingest: `other`).
    pub channel: Option<ShareChannel>,
    /// View placement hint (`src`), possibly one ingest does not know.
    pub src: Option<String>,
    pub referer: Option<String>,
    pub user_agent: String,
    /// `X-Forwarded-For`: the viewer's address, sometimes behind a trusted hop.
    pub forwarded_for: String,
    /// The [`COUNTRY_HEADER`](crate::catalog::COUNTRY_HEADER) value, if any.
    pub country: Option<String>,
    /// The bot family ingest must file this hit under; `None` for a browser.
    pub bot_family: Option<String>,
}

impl Beacon {
    /// The ids the signature covers.
    pub fn ids(&self) -> PixelIds<'_> {
        PixelIds {
            org_id: &self.org_id,
            issuer_id: &self.issuer_id,
            badge_class_id: &self.badge_class_id,
            assertion_id: &self.assertion_id,
        }
    }

    /// Path and query of the GET form (`/p.gif?…` or `/s.gif?…`). Ids,
    /// channels and hints are URL-safe by construction.
    pub fn pixel_path(&self, kid: &str, sig: &str) -> String {
        let route = match self.kind {
            BeaconKind::View => "/p.gif",
            BeaconKind::Share => "/s.gif",
        };
        let mut path = format!(
            "{route}?o={}&i={}&b={}&a={}&kid={kid}&sig={sig}",
            self.org_id, self.issuer_id, self.badge_class_id, self.assertion_id
        );
        if let Some(src) = &self.src {
            path.push_str("&src=");
            path.push_str(src);
        }
        if let Some(c) = self.channel {
            path.push_str("&c=");
            path.push_str(c.as_str());
        }
        path
    }

    /// The JSON body of the `POST /v1/beacon` form.
    pub fn post_body(&self, kid: &str, sig: &str) -> Value {
        let mut body = json!({
            "type": match self.kind { BeaconKind::View => "view", BeaconKind::Share => "share" },
            "o": self.org_id, "i": self.issuer_id, "b": self.badge_class_id, "a": self.assertion_id,
            "kid": kid, "sig": sig,
        });
        if let Some(c) = self.channel {
            body["channel"] = json!(c.as_str());
        }
        if let Some(src) = &self.src {
            body["src"] = json!(src);
        }
        body
    }
}

/// A badge class of the generated world and how well it performs.
struct Class {
    org: usize,
    issuer: usize,
    id: String,
    meta: BadgeClassMeta,
    primary_method: AwardMethod,
    /// Probability an awarded badge is accepted.
    accept_p: f64,
    /// Probability an accepted badge is shared.
    share_p: f64,
    /// Mean pixel views per share.
    view_rate: f64,
    revoke_p: f64,
    /// Assertions at scale 1.
    assertions: u32,
}

/// Makes the plan for `seed` at `scale` (assertions multiply by it), with
/// platform events spread over the `days` before `now` (ending a minute
/// before `now`).
///
/// # Panics
/// If `scale` is not in `1..=MAX_SCALE` or `days` is 0.
pub fn plan(seed: u64, scale: u32, now: DateTime<Utc>, days: u32) -> Plan {
    plan_run(seed, scale, now, days, "")
}

/// Longest run name of [`plan_run`].
pub const MAX_RUN_LEN: usize = 20;

/// Whether `run` can name a run: up to [`MAX_RUN_LEN`] ASCII letters and
/// digits.
pub fn is_valid_run(run: &str) -> bool {
    run.len() <= MAX_RUN_LEN && run.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// [`plan`] in the namespace of `run` (empty: none): every org id gets
/// `-<run>` appended and every event and assertion id carries `run`, so
/// runs with the same seed write disjoint orgs and events (JetStream
/// deduplicates by event id), and each run's ledger describes exactly what
/// that run added. The traffic is the same as without a run.
///
/// # Panics
/// As [`plan`], and if `run` is not [`is_valid_run`].
pub fn plan_run(seed: u64, scale: u32, now: DateTime<Utc>, days: u32, run: &str) -> Plan {
    assert!(
        (1..=MAX_SCALE).contains(&scale),
        "scale must be between 1 and {MAX_SCALE}, got {scale}"
    );
    assert!(days >= 1, "days must be at least 1");
    assert!(
        is_valid_run(run),
        "run must be at most {MAX_RUN_LEN} letters and digits, got {run:?}"
    );
    let mut g = Gen::new(seed, now, days);
    g.run = run.to_owned();
    g.world();
    for class in 0..g.classes.len() {
        for _ in 0..g.classes[class].assertions * scale {
            g.assertion(class);
        }
    }
    g.finish(scale, days)
}

struct Gen {
    rng: StdRng,
    seed: u64,
    /// The run's namespace of ids; empty: none.
    run: String,
    now: i64,
    from: i64,
    end: i64,
    next_event: u64,
    next_assertion: u32,
    classes: Vec<Class>,
    names: Vec<OrgName>,
    events: Vec<(bool, i64, Value)>,
    late: Vec<Value>,
    facts: Vec<Fact>,
    share_beacons: Vec<Beacon>,
    view_beacons: Vec<Beacon>,
    /// Client identities (address number, User-Agent number), shuffled.
    pool: Vec<(u16, u8)>,
    hits: Vec<u32>,
    cursor: usize,
    /// Identities that already viewed something of each org.
    seen: Vec<Vec<u32>>,
    /// Which non-preview bot comes next.
    crawler_turn: usize,
    traffic: Traffic,
}

fn ts(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0)
        .single()
        .expect("timestamps stay in range")
}

fn rfc3339(secs: i64) -> String {
    ts(secs).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Picks from `(value, weight)` pairs.
fn weighted<T: Copy>(rng: &mut StdRng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.gen_range(0..total);
    for (v, w) in items {
        if x < *w {
            return *v;
        }
        x -= w;
    }
    unreachable!("x < total")
}

const CHANNEL_WEIGHTS: &[(ShareChannel, u32)] = &[
    (ShareChannel::Linkedin, 35),
    (ShareChannel::Facebook, 10),
    (ShareChannel::X, 8),
    (ShareChannel::Email, 10),
    (ShareChannel::LinkCopy, 12),
    (ShareChannel::Embed, 5),
    (ShareChannel::Download, 8),
    (ShareChannel::Wallet, 7),
    (ShareChannel::Other, 5),
];

const PLATFORM_VIEW_SOURCES: &[(ViewSource, u32)] = &[
    (ViewSource::Platform, 30),
    (ViewSource::Embed, 15),
    (ViewSource::Direct, 15),
    (ViewSource::Search, 10),
    (ViewSource::Linkedin, 10),
    (ViewSource::Email, 10),
    (ViewSource::Facebook, 4),
    (ViewSource::X, 3),
    (ViewSource::Other, 3),
];

impl Gen {
    fn new(seed: u64, now: DateTime<Utc>, days: u32) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let now = now.timestamp();
        let mut pool: Vec<(u16, u8)> = (0..DOC_PREFIXES.len() as u16 * DOC_HOSTS)
            .flat_map(|ip| (0..BROWSER_UAS.len() as u8).map(move |ua| (ip, ua)))
            .collect();
        pool.shuffle(&mut rng);
        let hits = vec![0; pool.len()];
        Gen {
            rng,
            seed,
            run: String::new(),
            now,
            from: now - i64::from(days) * DAY,
            end: now - END_MARGIN_SECS,
            next_event: 0,
            next_assertion: 0,
            classes: Vec::new(),
            names: Vec::new(),
            events: Vec::new(),
            late: Vec::new(),
            facts: Vec::new(),
            share_beacons: Vec::new(),
            view_beacons: Vec::new(),
            pool,
            hits,
            cursor: 0,
            seen: vec![Vec::new(); ORGS.len()],
            crawler_turn: 0,
            traffic: Traffic::default(),
        }
    }

    /// Orgs, 2–3 issuers each, 3–6 badge classes per issuer with varied
    /// metadata, and a `badge_class.upserted` for every class.
    fn world(&mut self) {
        for (o, org) in ORGS.iter().enumerate() {
            let n_issuers = if org.issuers.len() > 2 && self.rng.gen_bool(0.5) {
                3
            } else {
                2
            };
            let mut issuer_names = Vec::new();
            for (i, spec) in org.issuers[..n_issuers].iter().enumerate() {
                issuer_names.push((spec.id.to_owned(), spec.name.to_owned()));
                let n = self.rng.gen_range(3..=6).min(spec.badges.len());
                let mut picks =
                    rand::seq::index::sample(&mut self.rng, spec.badges.len(), n).into_vec();
                picks.sort_unstable();
                for pick in picks {
                    let (suffix, name, skills) = spec.badges[pick];
                    let r = &mut self.rng;
                    let meta = BadgeClassMeta {
                        name: name.to_owned(),
                        skills: if r.gen_bool(0.65) {
                            skills.iter().map(|s| (*s).to_owned()).collect()
                        } else {
                            Vec::new()
                        },
                        pathways: if r.gen_bool(0.4) {
                            vec![format!("{} Pathway", spec.name)]
                        } else {
                            Vec::new()
                        },
                        courses: if r.gen_bool(0.45) {
                            vec![format!(
                                "{}-{}",
                                suffix.to_uppercase(),
                                r.gen_range(100..500)
                            )]
                        } else {
                            Vec::new()
                        },
                        catalogs: if r.gen_bool(0.5) {
                            vec![format!("{} Public Catalog", org.name)]
                        } else {
                            Vec::new()
                        },
                        collections: if r.gen_bool(0.3) {
                            vec!["Spring Cohort".to_owned()]
                        } else {
                            Vec::new()
                        },
                        attributes: [
                            ("has_criteria", r.gen_bool(0.7)),
                            ("has_expiry", r.gen_bool(0.35)),
                            ("has_evidence", r.gen_bool(0.4)),
                        ]
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                    };
                    // Drivers move the needle, so the drivers report has something to find.
                    let d = ledger::drivers(&meta);
                    let f = |k: &str| -> f64 {
                        if d[k] {
                            1.0
                        } else {
                            0.0
                        }
                    };
                    let accept_p: f64 = (0.5
                        + 0.15 * f("has_criteria")
                        + 0.08 * f("skills_aligned")
                        + r.gen_range(-0.1..0.12))
                    .clamp(0.3, 0.95);
                    let share_p: f64 = (0.18
                        + 0.15 * f("skills_aligned")
                        + 0.12 * f("in_pathway")
                        + 0.06 * f("has_evidence")
                        + r.gen_range(-0.08..0.1))
                    .clamp(0.05, 0.85);
                    let view_rate = 0.6 + 1.4 * f("in_catalog") + r.gen_range(0.0..1.6);
                    let revoke_p = 0.01 + 0.03 * f("has_expiry");
                    let assertions = r.gen_range(4..=40);
                    self.classes.push(Class {
                        org: o,
                        issuer: i,
                        id: format!("{}.{}", spec.id, suffix),
                        meta,
                        primary_method: spec.primary_method,
                        accept_p,
                        share_p,
                        view_rate,
                        revoke_p,
                        assertions,
                    });
                    self.upserts(self.classes.len() - 1);
                }
            }
            self.names.push(OrgName {
                id: self.org_id(o),
                name: org.name.to_owned(),
                issuers: issuer_names,
            });
        }
    }

    /// The class's `badge_class.upserted`; for some classes also an older
    /// version (other name and metadata) that is sent late.
    fn upserts(&mut self, class: usize) {
        let span = self.end - self.from;
        let current_at = if self.rng.gen_bool(0.3) {
            let stale_at = self.from + self.rng.gen_range(0..HOUR);
            let mut stale = self.classes[class].meta.clone();
            stale.name = format!("{} (draft)", stale.name);
            stale.skills.clear();
            if let Some(v) = stale.attributes.get_mut("has_criteria") {
                *v = !*v;
            }
            let e = self.upsert_event(class, &stale, stale_at);
            self.late.push(e);
            self.traffic.stale_upserts += 1;
            self.fact(EventType::BadgeClassUpserted, class, 0, stale_at);
            self.from + self.rng.gen_range(HOUR..=(span / 3).max(HOUR + 1))
        } else {
            self.from + self.rng.gen_range(0..HOUR)
        };
        let meta = self.classes[class].meta.clone();
        let e = self.upsert_event(class, &meta, current_at);
        self.events.push((true, current_at, e));
        self.fact(EventType::BadgeClassUpserted, class, 0, current_at);
    }

    fn upsert_event(&mut self, class: usize, meta: &BadgeClassMeta, at: i64) -> Value {
        let mut e = self.event(EventType::BadgeClassUpserted, class, None, at);
        e.insert("name".into(), json!(meta.name));
        e.insert("skills".into(), json!(meta.skills));
        e.insert("pathways".into(), json!(meta.pathways));
        e.insert("courses".into(), json!(meta.courses));
        e.insert("catalogs".into(), json!(meta.catalogs));
        e.insert("collections".into(), json!(meta.collections));
        e.insert("attributes".into(), json!(meta.attributes));
        Value::Object(e)
    }

    fn assertion_id(&self, a: u32) -> String {
        format!("as-{}{}-{a:06}", self.seed, self.run_tag())
    }

    /// `-<run>`, or nothing without a run.
    fn run_tag(&self) -> String {
        if self.run.is_empty() {
            String::new()
        } else {
            format!("-{}", self.run)
        }
    }

    /// The id of org `o` (of `ORGS`) in this run.
    fn org_id(&self, o: usize) -> String {
        format!("{}{}", ORGS[o].id, self.run_tag())
    }

    /// The common fields of a platform event, with a fresh `event_id`.
    fn event(
        &mut self,
        kind: EventType,
        class: usize,
        assertion: Option<u32>,
        at: i64,
    ) -> Map<String, Value> {
        let c = &self.classes[class];
        let (org, issuer) = (self.org_id(c.org), ORGS[c.org].issuers[c.issuer].id);
        let mut e = Map::new();
        e.insert(
            "event_id".into(),
            json!(format!(
                "lg-{}{}-{:07}",
                self.seed,
                self.run_tag(),
                self.next_event
            )),
        );
        self.next_event += 1;
        e.insert("type".into(), json!(kind.as_str()));
        e.insert("occurred_at".into(), json!(rfc3339(at)));
        e.insert("org_id".into(), json!(org));
        e.insert("issuer_id".into(), json!(issuer));
        e.insert("badge_class_id".into(), json!(c.id));
        if let Some(a) = assertion {
            e.insert("assertion_id".into(), json!(self.assertion_id(a)));
        }
        e
    }

    /// Records a distinct event for the ledger and returns it to be refined.
    fn fact(&mut self, kind: EventType, class: usize, assertion: u32, at: i64) -> &mut Fact {
        self.facts.push(Fact {
            kind,
            class,
            assertion,
            at: ts(at),
            award_method: None,
            channel: None,
            source: None,
            country: None,
            viewer: None,
        });
        self.facts.last_mut().expect("just pushed")
    }

    /// A platform `badge.*` event with extra fields, and its fact.
    fn platform(
        &mut self,
        kind: EventType,
        class: usize,
        a: u32,
        at: i64,
        extra: &[(&str, &str)],
    ) -> &mut Fact {
        let mut e = self.event(kind, class, Some(a), at);
        for (k, v) in extra {
            e.insert((*k).into(), json!(v));
        }
        self.events.push((false, at, Value::Object(e)));
        self.fact(kind, class, a, at)
    }

    /// A time after `t`: typically `typical` seconds later, at least a
    /// minute when there is room, and at most half the time left.
    fn step(&mut self, t: i64, typical: i64) -> i64 {
        let room = (self.end - t) / 2;
        let u: f64 = self.rng.gen_range(f64::EPSILON..1.0);
        let d = (-u.ln() * typical as f64) as i64;
        t + d.clamp(60.min(room), room).max(1)
    }

    /// A time in `(t, end]`.
    fn after(&mut self, t: i64) -> i64 {
        if self.end > t {
            self.rng.gen_range(t + 1..=self.end)
        } else {
            t
        }
    }

    /// One assertion's life: awarded, maybe accepted, maybe shared (on the
    /// platform or by share beacons), viewed, crawled by bots, revoked.
    fn assertion(&mut self, class: usize) {
        let a = self.next_assertion;
        self.next_assertion += 1;
        let (accept_p, share_p, view_rate, revoke_p, primary) = {
            let c = &self.classes[class];
            (
                c.accept_p,
                c.share_p,
                c.view_rate,
                c.revoke_p,
                c.primary_method,
            )
        };
        let span = self.end - self.from;
        let award_at = self.from + self.rng.gen_range(0..=span - HOUR.max(span * 8 / 100));

        let roll: f64 = self.rng.gen();
        let sent_method = if roll < 0.08 {
            None
        } else if roll < 0.55 {
            Some(primary)
        } else {
            Some(*AwardMethod::ALL.choose(&mut self.rng).expect("non-empty"))
        };
        let extra: Vec<(&str, &str)> = sent_method
            .iter()
            .map(|m| ("award_method", m.as_str()))
            .collect();
        self.platform(EventType::Awarded, class, a, award_at, &extra)
            .award_method = Some(sent_method.unwrap_or(AwardMethod::Other));
        let mut last = award_at;

        if self.rng.gen_bool(accept_p) {
            let accept_at = self.step(award_at, 2 * DAY);
            self.platform(EventType::Accepted, class, a, accept_at, &[]);
            last = accept_at;
            if self.rng.gen_bool(share_p) {
                last = self.shared_life(class, a, accept_at, view_rate);
            } else if self.rng.gen_bool(0.25) {
                // Unshared badges still get looked at on the platform.
                for _ in 0..self.rng.gen_range(1..=2) {
                    let origin = if self.rng.gen_bool(0.5) {
                        (
                            None,
                            Some(format!("https://{PLATFORM_HOST}/public/assertions")),
                        )
                    } else {
                        (Some("platform".to_owned()), None)
                    };
                    self.view_hit(class, a, origin);
                }
            }
        }
        if self.rng.gen_bool(revoke_p) && last < self.end {
            let at = self.after(last);
            self.platform(EventType::Revoked, class, a, at, &[]);
        }
    }

    /// Shares, views and crawler hits of a shared assertion; returns the
    /// time of its last platform event.
    fn shared_life(&mut self, class: usize, a: u32, accept_at: i64, view_rate: f64) -> i64 {
        // A quarter of the sharers use share buttons (beacons, received now).
        let by_beacon = self.rng.gen_bool(0.25);
        let n_shares =
            1 + usize::from(self.rng.gen_bool(0.35)) + usize::from(self.rng.gen_bool(0.12));
        let channels: Vec<ShareChannel> = (0..n_shares)
            .map(|_| weighted(&mut self.rng, CHANNEL_WEIGHTS))
            .collect();
        let first_share = self.step(accept_at, DAY);
        let mut last = accept_at;
        for (k, &channel) in channels.iter().enumerate() {
            if by_beacon || (k > 0 && self.rng.gen_bool(0.5)) {
                self.share_hit(class, a, channel);
            } else {
                let at = if k == 0 {
                    first_share
                } else {
                    self.after(first_share)
                };
                self.platform(
                    EventType::Shared,
                    class,
                    a,
                    at,
                    &[("channel", channel.as_str())],
                )
                .channel = Some(channel);
                last = last.max(at);
            }
            // The network's link-preview crawler fetches the shared page.
            if self.rng.gen_bool(0.5) {
                let bot = match channel {
                    ShareChannel::Linkedin => 0,
                    ShareChannel::Facebook => 1,
                    ShareChannel::X => 2,
                    _ => self.rng.gen_range(0..3),
                };
                self.bot_hit(class, a, BeaconKind::View, bot);
            }
        }
        if !by_beacon {
            for _ in 0..self.rng.gen_range(0..=2) {
                let at = self.after(first_share);
                let source = weighted(&mut self.rng, PLATFORM_VIEW_SOURCES);
                let country = self
                    .rng
                    .gen_bool(0.6)
                    .then(|| *COUNTRIES.choose(&mut self.rng).expect("non-empty"));
                let mut extra = vec![("source", source.as_str())];
                extra.extend(country.map(|c| ("country", c)));
                let fact = self.platform(EventType::Viewed, class, a, at, &extra);
                fact.source = Some(source);
                fact.country = country;
                last = last.max(at);
            }
        }
        let n_views = (view_rate * n_shares as f64 * self.rng.gen_range(0.3..1.7)).round() as u32;
        for _ in 0..n_views {
            let origin = self.view_origin(channels[0]);
            self.view_hit(class, a, origin);
        }
        // Search crawlers, scripts and headless browsers, taking turns.
        if self.rng.gen_bool(0.08) {
            let bot = 3 + self.crawler_turn % (BOT_UAS.len() - 3);
            self.crawler_turn += 1;
            self.bot_hit(class, a, BeaconKind::View, bot);
        }
        if self.rng.gen_bool(0.03) {
            self.bot_hit(class, a, BeaconKind::Share, 4);
        }
        last
    }

    /// `(src, Referer)` of a view of a badge shared on `channel`: mostly
    /// from where it was shared, else anywhere.
    fn view_origin(&mut self, channel: ShareChannel) -> (Option<String>, Option<String>) {
        let from_source = |source: ViewSource| -> Vec<Option<&'static str>> {
            REFERERS
                .iter()
                .copied()
                .filter(|r| expected_view_source(None, *r) == source)
                .collect()
        };
        let pick = |rng: &mut StdRng, v: Vec<Option<&'static str>>| {
            v.choose(rng).copied().flatten().map(str::to_owned)
        };
        if self.rng.gen_bool(0.55) {
            match channel {
                ShareChannel::Linkedin => {
                    return (None, pick(&mut self.rng, from_source(ViewSource::Linkedin)))
                }
                ShareChannel::Facebook => {
                    return (None, pick(&mut self.rng, from_source(ViewSource::Facebook)))
                }
                ShareChannel::X => return (None, pick(&mut self.rng, from_source(ViewSource::X))),
                ShareChannel::Email if self.rng.gen_bool(0.5) => {
                    return (Some("email".into()), None)
                }
                ShareChannel::Email => {
                    return (None, pick(&mut self.rng, from_source(ViewSource::Email)))
                }
                ShareChannel::Embed => {
                    return (
                        Some("embed".into()),
                        pick(&mut self.rng, from_source(ViewSource::Other)),
                    )
                }
                _ => {}
            }
        }
        let referer = REFERERS
            .choose(&mut self.rng)
            .copied()
            .flatten()
            .map(str::to_owned);
        let src = self
            .rng
            .gen_bool(0.1)
            .then(|| (*SRC_HINTS.choose(&mut self.rng).expect("non-empty")).to_owned());
        (src, referer)
    }

    /// A client identity for a hit in `org`: sometimes one that already
    /// viewed this org's badges, else the next fresh one; never one that
    /// used up its [`MAX_HITS_PER_CLIENT`].
    fn client(&mut self, org: usize) -> u32 {
        if !self.seen[org].is_empty() && self.rng.gen_bool(0.3) {
            for _ in 0..4 {
                let v = *self.seen[org].choose(&mut self.rng).expect("non-empty");
                if self.hits[v as usize] < MAX_HITS_PER_CLIENT {
                    self.hits[v as usize] += 1;
                    return v;
                }
            }
        }
        let start = self.cursor;
        loop {
            let v = self.cursor;
            self.cursor = (self.cursor + 1) % self.pool.len();
            if self.hits[v] < MAX_HITS_PER_CLIENT {
                self.hits[v] += 1;
                self.seen[org].push(v as u32);
                return v as u32;
            }
            assert!(
                self.cursor != start,
                "every client identity has sent {MAX_HITS_PER_CLIENT} hits; lower the scale"
            );
        }
    }

    fn beacon(&self, class: usize, a: u32, kind: BeaconKind, transport: Transport) -> Beacon {
        let c = &self.classes[class];
        Beacon {
            kind,
            transport,
            org_id: self.org_id(c.org),
            issuer_id: ORGS[c.org].issuers[c.issuer].id.to_owned(),
            badge_class_id: c.id.clone(),
            assertion_id: self.assertion_id(a),
            channel: None,
            src: None,
            referer: None,
            user_agent: String::new(),
            forwarded_for: String::new(),
            country: None,
            bot_family: None,
        }
    }

    /// Fills in a browser client's User-Agent, `X-Forwarded-For` and
    /// country header.
    fn as_client(&mut self, b: &mut Beacon, client: u32) {
        let (ip, ua) = self.pool[client as usize];
        b.user_agent = BROWSER_UAS[usize::from(ua)].to_owned();
        b.country = client_country(ip).map(str::to_owned);
        let ip = doc_ip(ip);
        // Some arrive through a further trusted hop, which ingest skips.
        b.forwarded_for = if self.rng.gen_bool(0.1) {
            format!("{ip}, 127.0.0.1")
        } else {
            ip
        };
    }

    fn count_beacon(&mut self, kind: BeaconKind, outcome: &str) {
        let kind = match kind {
            BeaconKind::View => "view",
            BeaconKind::Share => "share",
        };
        *self
            .traffic
            .ingest_beacons
            .entry(kind.into())
            .or_default()
            .entry(outcome.into())
            .or_default() += 1;
    }

    /// A browser view by pixel (mostly) or beacon, received now.
    fn view_hit(&mut self, class: usize, a: u32, (src, referer): (Option<String>, Option<String>)) {
        let transport = if self.rng.gen_bool(0.2) {
            self.traffic.view_posts += 1;
            Transport::Post
        } else {
            self.traffic.view_pixels += 1;
            Transport::Pixel
        };
        let client = self.client(self.classes[class].org);
        let mut b = self.beacon(class, a, BeaconKind::View, transport);
        self.as_client(&mut b, client);
        let source = expected_view_source(src.as_deref(), referer.as_deref());
        let country = b
            .country
            .as_deref()
            .and_then(|c| COUNTRIES.iter().copied().find(|k| *k == c));
        b.src = src;
        b.referer = referer;
        self.view_beacons.push(b);
        self.count_beacon(BeaconKind::View, "accepted");
        let now = self.now;
        let fact = self.fact(EventType::Viewed, class, a, now);
        fact.source = Some(source);
        fact.country = country;
        fact.viewer = Some(client);
    }

    /// A share button press (`/s.gif` or `sendBeacon`) by the learner, received now.
    fn share_hit(&mut self, class: usize, a: u32, channel: ShareChannel) {
        let transport = if self.rng.gen_bool(0.6) {
            self.traffic.share_pixels += 1;
            Transport::Pixel
        } else {
            self.traffic.share_posts += 1;
            Transport::Post
        };
        let client = self.client(self.classes[class].org);
        let mut b = self.beacon(class, a, BeaconKind::Share, transport);
        self.as_client(&mut b, client);
        // Old share buttons do not say where; ingest files those as `other`.
        b.channel = (!self.rng.gen_bool(0.1)).then_some(channel);
        b.referer = Some(format!(
            "https://{PLATFORM_HOST}/public/assertions/{}",
            b.assertion_id
        ));
        let recorded = b.channel.unwrap_or(ShareChannel::Other);
        self.share_beacons.push(b);
        self.count_beacon(BeaconKind::Share, "accepted");
        let now = self.now;
        self.fact(EventType::Shared, class, a, now).channel = Some(recorded);
    }

    /// A correctly signed hit from bot `BOT_UAS[bot]`, which ingest must drop.
    fn bot_hit(&mut self, class: usize, a: u32, kind: BeaconKind, bot: usize) {
        let (ua, family) = BOT_UAS[bot];
        let transport = match kind {
            BeaconKind::View => Transport::Pixel,
            BeaconKind::Share => Transport::Post,
        };
        let mut b = self.beacon(class, a, kind, transport);
        b.user_agent = ua.to_owned();
        b.forwarded_for = doc_ip(self.rng.gen_range(0..DOC_PREFIXES.len() as u16 * DOC_HOSTS));
        b.bot_family = Some(family.to_owned());
        if kind == BeaconKind::Share {
            b.channel = Some(ShareChannel::LinkCopy);
            self.share_beacons.push(b);
        } else {
            self.view_beacons.push(b);
        }
        self.traffic.bot_hits += 1;
        *self
            .traffic
            .bots_by_family
            .entry(family.into())
            .or_default() += 1;
        self.count_beacon(kind, "bot");
    }

    fn finish(mut self, scale: u32, days: u32) -> Plan {
        // Upserts first, then as a platform backfills: by occurred_at.
        self.events.sort_by_key(|(upsert, at, _)| (!*upsert, *at));
        let events: Vec<Value> = self.events.into_iter().map(|(_, _, e)| e).collect();
        let mut resends: Vec<Value> = events
            .iter()
            .filter(|e| e["type"] != "badge_class.upserted")
            .filter(|_| self.rng.gen_bool(0.02))
            .cloned()
            .collect();
        if resends.is_empty() {
            resends.extend(events.last().cloned());
        }
        self.traffic.duplicates_resent = resends.len() as u64;
        self.late.extend(resends);
        self.late.shuffle(&mut self.rng);
        self.share_beacons.shuffle(&mut self.rng);
        self.view_beacons.shuffle(&mut self.rng);
        self.traffic.platform_events = events.len() as u64 + self.traffic.stale_upserts;
        self.traffic.platform_events_sent = (events.len() + self.late.len()) as u64;
        self.traffic.client_identities = self.hits.iter().filter(|h| **h > 0).count() as u64;

        let classes: Vec<ClassRef> = self
            .classes
            .iter()
            .map(|c| ClassRef {
                org: c.org,
                issuer: c.issuer,
                badge_class_id: c.id.clone(),
                metadata: c.meta.clone(),
            })
            .collect();
        let period = Period {
            from: ts(self.from),
            to: ts(self.end),
        };
        let ledger = ledger::build(
            (self.seed, scale, days, ts(self.now), period),
            &self.names,
            &classes,
            &self.facts,
            self.traffic,
        );
        Plan {
            seed: self.seed,
            scale,
            days,
            now: ts(self.now),
            events,
            late_events: self.late,
            share_beacons: self.share_beacons,
            view_beacons: self.view_beacons,
            ledger,
        }
    }
}

/// The distinct client identities a run can use.
pub fn client_identity_capacity() -> usize {
    DOC_PREFIXES.len() * usize::from(DOC_HOSTS) * catalog::BROWSER_UAS.len()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap, HashSet};

    use badgepulse_contract::event::validate_platform_event;

    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-03-01T12:00:00.250Z".parse().unwrap()
    }

    fn sample() -> Plan {
        plan(42, 1, now(), 14)
    }

    /// The client address ingest will believe: the rightmost untrusted hop.
    fn client_ip(xff: &str) -> &str {
        xff.rsplit(',')
            .map(str::trim)
            .find(|h| !h.starts_with("127."))
            .unwrap()
    }

    #[test]
    fn a_run_namespaces_orgs_and_ids_but_not_the_traffic() {
        let plain = sample();
        let run = plan_run(42, 1, now(), 14, "r20260301");
        assert_eq!(run.ledger.totals, plain.ledger.totals);
        assert_eq!(run.ledger.traffic, plain.ledger.traffic);
        assert_eq!(run.events.len(), plain.events.len());
        for (o, p) in run.ledger.orgs.iter().zip(&plain.ledger.orgs) {
            assert_eq!(o.org_id, format!("{}-r20260301", p.org_id));
            assert_eq!(o.counts, p.counts);
        }
        let orgs: Vec<&str> = run.ledger.orgs.iter().map(|o| o.org_id.as_str()).collect();
        for e in run.events.iter().chain(&run.late_events) {
            assert!(orgs.contains(&e["org_id"].as_str().unwrap()), "{e}");
            assert!(
                e["event_id"].as_str().unwrap().contains("-r20260301-"),
                "{e}"
            );
            assert!(badgepulse_contract::event::is_valid_id(
                e["event_id"].as_str().unwrap()
            ));
        }
        for b in run.view_beacons.iter().chain(&run.share_beacons) {
            assert!(orgs.contains(&b.org_id.as_str()));
            assert!(b.assertion_id.contains("-r20260301-"));
        }
        assert!(is_valid_run("") && is_valid_run("20260301T101010"));
        assert!(!is_valid_run("a-b") && !is_valid_run(&"1".repeat(MAX_RUN_LEN + 1)));
    }

    #[test]
    fn same_seed_same_plan() {
        let a = sample();
        assert_eq!(a, sample());
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&sample()).unwrap()
        );
        let b = plan(43, 1, now(), 14);
        assert_ne!(a.events, b.events);
        assert_ne!(a.ledger.totals, b.ledger.totals);
    }

    #[test]
    fn size_is_a_few_thousand_events_and_scales() {
        let p = sample();
        let total =
            p.events.len() + p.late_events.len() + p.share_beacons.len() + p.view_beacons.len();
        assert!((2_000..10_000).contains(&total), "{total} events");
        let p3 = plan(42, 3, now(), 14);
        assert!(p3.ledger.totals.awarded > 2 * p.ledger.totals.awarded);
        assert_eq!(
            p3.ledger.totals.badge_classes,
            p.ledger.totals.badge_classes
        );
    }

    #[test]
    fn every_platform_event_is_valid_and_in_the_period() {
        for days in [1, 14] {
            let p = plan(7, 1, now(), days);
            let from = ts(now().timestamp()) - chrono::Duration::days(days.into());
            let to = now() - chrono::Duration::seconds(END_MARGIN_SECS);
            assert_eq!(
                (p.ledger.period.from, p.ledger.period.to.timestamp()),
                (from, to.timestamp())
            );
            for e in p.events.iter().chain(&p.late_events) {
                let v =
                    validate_platform_event(e, now()).unwrap_or_else(|err| panic!("{err}: {e}"));
                assert!(v.occurred_at >= from && v.occurred_at <= to, "{e}");
            }
        }
    }

    /// Recomputes the ledger's numbers straight from what is sent, the way
    /// the pipeline would: dedupe by event_id, drop bots.
    #[test]
    fn ledger_matches_the_traffic() {
        let p = sample();
        let mut distinct: BTreeMap<String, &Value> = BTreeMap::new();
        let mut sent = 0;
        for e in p.events.iter().chain(&p.late_events) {
            sent += 1;
            distinct.insert(e["event_id"].as_str().unwrap().to_owned(), e);
        }
        let t = &p.ledger.traffic;
        assert_eq!(sent, t.platform_events_sent);
        assert_eq!(distinct.len() as u64, t.platform_events);
        assert_eq!(sent - distinct.len() as u64, t.duplicates_resent);
        assert!(t.duplicates_resent > 0 && t.stale_upserts > 0);
        let phase1: HashSet<&str> = p
            .events
            .iter()
            .map(|e| e["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(phase1.len(), p.events.len(), "phase 1 has no duplicates");

        for org in &p.ledger.orgs {
            let id = org.org_id.as_str();
            let evs: Vec<&Value> = distinct
                .values()
                .copied()
                .filter(|e| e["org_id"] == id)
                .collect();
            let assertions = |ty: &str| -> HashSet<&str> {
                evs.iter()
                    .filter(|e| e["type"] == ty)
                    .map(|e| e["assertion_id"].as_str().unwrap())
                    .collect()
            };
            let count = |ty: &str| evs.iter().filter(|e| e["type"] == ty).count() as u64;
            let human = |b: &&Beacon| b.org_id == id && b.bot_family.is_none();
            let share_beacons = p.share_beacons.iter().filter(human);
            let view_beacons: Vec<&Beacon> = p.view_beacons.iter().filter(human).collect();
            let c = &org.counts;
            assert_eq!(c.awarded, assertions("badge.awarded").len() as u64);
            assert_eq!(c.awarded, count("badge.awarded"), "one award per assertion");
            assert_eq!(c.accepted, assertions("badge.accepted").len() as u64);
            assert_eq!(c.revoked, assertions("badge.revoked").len() as u64);
            let mut shared = assertions("badge.shared");
            shared.extend(share_beacons.clone().map(|b| b.assertion_id.as_str()));
            assert_eq!(c.shared, shared.len() as u64);
            assert_eq!(
                c.shares,
                count("badge.shared") + share_beacons.count() as u64
            );
            assert_eq!(c.views, count("badge.viewed") + view_beacons.len() as u64);
            let viewers: HashSet<(&str, &str)> = view_beacons
                .iter()
                .map(|b| (client_ip(&b.forwarded_for), b.user_agent.as_str()))
                .collect();
            assert_eq!(c.unique_viewers, viewers.len() as u64);
            assert!(
                c.unique_viewers < c.views - count("badge.viewed"),
                "some repeat viewers"
            );
            let classes: HashSet<&str> = evs
                .iter()
                .map(|e| e["badge_class_id"].as_str().unwrap())
                .collect();
            assert_eq!(c.badge_classes, classes.len() as u64);
            assert_eq!(c.award_methods.values().sum::<u64>(), c.awarded);
            assert_eq!(c.share_channels.values().sum::<u64>(), c.shares);
            assert_eq!(c.view_sources.values().sum::<u64>(), c.views);
            let sources = |b: &&&Beacon| {
                expected_view_source(b.src.as_deref(), b.referer.as_deref()) == ViewSource::Linkedin
            };
            let platform_linkedin = evs
                .iter()
                .filter(|e| e["type"] == "badge.viewed" && e["source"] == "linkedin")
                .count() as u64;
            assert_eq!(
                c.view_sources.get("linkedin").copied().unwrap_or(0),
                view_beacons.iter().filter(sources).count() as u64 + platform_linkedin
            );
            let mut countries: BTreeMap<String, u64> = BTreeMap::new();
            let mut platform_countries: BTreeMap<String, u64> = BTreeMap::new();
            for e in evs.iter().filter(|e| e["type"] == "badge.viewed") {
                if let Some(c) = e["country"].as_str() {
                    *countries.entry(c.into()).or_default() += 1;
                    *platform_countries.entry(c.into()).or_default() += 1;
                }
            }
            for b in &view_beacons {
                if let Some(c) = b.country.as_deref().filter(|c| *c != "XX") {
                    *countries.entry(c.into()).or_default() += 1;
                }
            }
            assert_eq!(c.view_countries, countries);
            assert_eq!(c.platform_view_countries, platform_countries);
            // Per-issuer and per-class numbers add up to the org's.
            let sum = |f: fn(&ledger::Counts) -> u64| -> u64 {
                org.issuers
                    .iter()
                    .flat_map(|i| &i.classes)
                    .map(|b| f(&b.counts))
                    .sum()
            };
            assert_eq!(sum(|c| c.awarded), c.awarded);
            assert_eq!(sum(|c| c.shares), c.shares);
            assert_eq!(sum(|c| c.views), c.views);
            assert_eq!(sum(|c| c.badge_classes), c.badge_classes);
            assert_eq!(
                org.issuers.iter().map(|i| i.counts.accepted).sum::<u64>(),
                c.accepted
            );
            let daily_awarded: u64 = org.daily.values().map(|d| d.awarded).sum();
            assert_eq!(daily_awarded, c.awarded);
            let l = &c.lifecycle;
            assert!(
                l.awarded >= l.accepted
                    && l.accepted >= l.shared
                    && l.shared >= l.viewed
                    && l.viewed > 0
            );
            assert_eq!(l.awarded, c.awarded);
        }
        let total = &p.ledger.totals;
        assert_eq!(
            total.awarded,
            p.ledger.orgs.iter().map(|o| o.counts.awarded).sum::<u64>()
        );
        assert_eq!(
            total.unique_viewers,
            p.ledger
                .orgs
                .iter()
                .map(|o| o.counts.unique_viewers)
                .sum::<u64>()
        );

        let bots = p
            .share_beacons
            .iter()
            .chain(&p.view_beacons)
            .filter(|b| b.bot_family.is_some())
            .count();
        assert_eq!(t.bot_hits, bots as u64);
        assert_eq!(t.bots_by_family.values().sum::<u64>(), t.bot_hits);
        let humans = p.share_beacons.len() + p.view_beacons.len() - bots;
        assert_eq!(
            t.view_pixels + t.view_posts + t.share_pixels + t.share_posts,
            humans as u64
        );
        let by_type: u64 = t.events_by_type.values().sum();
        assert_eq!(by_type, t.platform_events + humans as u64);
        assert_eq!(
            t.ingest_beacons["view"]["accepted"],
            t.view_pixels + t.view_posts
        );
        assert_eq!(
            t.ingest_beacons["share"]["accepted"],
            t.share_pixels + t.share_posts
        );
        assert_eq!(
            t.ingest_beacons["view"]["bot"] + t.ingest_beacons["share"]["bot"],
            t.bot_hits
        );
    }

    #[test]
    fn ledger_json_round_trips() {
        let p = sample();
        let text = serde_json::to_string(&p.ledger).unwrap();
        let back: Ledger = serde_json::from_str(&text).unwrap();
        assert_eq!(back.totals.awarded, p.ledger.totals.awarded);
        assert_eq!(back.traffic, p.ledger.traffic);
        for (a, b) in back.badge_classes().zip(p.ledger.badge_classes()) {
            assert_eq!(
                (a.0, a.1, &a.2.badge_class_id),
                (b.0, b.1, &b.2.badge_class_id)
            );
            assert_eq!(a.2.counts.lifecycle, b.2.counts.lifecycle);
            assert_eq!(a.2.counts.view_sources, b.2.counts.view_sources);
        }
        assert_eq!(
            back.badge_classes().count() as u64,
            p.ledger.totals.badge_classes
        );
        // No key appears twice in an object (flattened counts vs. lists).
        let v: Value = serde_json::from_str(&text).unwrap();
        let issuer = &v["orgs"][0]["issuers"][0];
        assert!(issuer["badge_classes"].is_u64() && issuer["classes"].is_array());
    }

    #[test]
    fn lifecycle_order_per_assertion() {
        let p = sample();
        let mut times: HashMap<&str, BTreeMap<&str, Vec<DateTime<Utc>>>> = HashMap::new();
        for e in &p.events {
            if let Some(a) = e["assertion_id"].as_str() {
                let at: DateTime<Utc> = e["occurred_at"].as_str().unwrap().parse().unwrap();
                times
                    .entry(a)
                    .or_default()
                    .entry(e["type"].as_str().unwrap())
                    .or_default()
                    .push(at);
            }
        }
        for (a, t) in &times {
            let first = |ty: &str| t.get(ty).map(|v| *v.iter().min().unwrap());
            let awarded = first("badge.awarded").unwrap();
            if let Some(acc) = first("badge.accepted") {
                assert!(awarded < acc, "{a}");
                if let Some(sh) = first("badge.shared") {
                    assert!(acc < sh, "{a}");
                    if let Some(v) = first("badge.viewed") {
                        assert!(sh < v, "{a}");
                    }
                }
            } else {
                assert!(first("badge.shared").is_none(), "{a}");
            }
            if let Some(r) = first("badge.revoked") {
                for (ty, ts) in t {
                    assert!(ty == &"badge.revoked" || ts.iter().all(|x| *x < r), "{a}");
                }
            }
        }
    }

    #[test]
    fn traffic_is_varied() {
        let p = sample();
        let totals = &p.ledger.totals;
        for m in AwardMethod::ALL {
            assert!(totals.award_methods.contains_key(m.as_str()), "{m}");
        }
        assert!(p
            .events
            .iter()
            .any(|e| e["type"] == "badge.awarded" && e.get("award_method").is_none()));
        for c in ShareChannel::ALL {
            assert!(totals.share_channels.contains_key(c.as_str()), "{c}");
        }
        for s in ViewSource::ALL {
            assert!(totals.view_sources.contains_key(s.as_str()), "{s}");
        }
        assert!(
            totals.view_countries.values().sum::<u64>()
                > 2 * totals.platform_view_countries.values().sum::<u64>()
        );
        assert!(p
            .view_beacons
            .iter()
            .any(|b| b.country.as_deref() == Some("XX")));
        assert!(p
            .view_beacons
            .iter()
            .any(|b| b.bot_family.is_none() && b.country.is_none()));
        let families: HashSet<&str> = p
            .ledger
            .traffic
            .bots_by_family
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            families,
            HashSet::from(["link_preview", "search", "http_library", "headless"])
        );
        let t = &p.ledger.traffic;
        assert!(t.view_pixels > 0 && t.view_posts > 0 && t.share_pixels > 0 && t.share_posts > 0);
        assert!(p
            .view_beacons
            .iter()
            .any(|b| b.src.as_deref() == Some("qr-code")));
        assert!(p.view_beacons.iter().any(|b| b.forwarded_for.contains(',')));
        assert!(p
            .share_beacons
            .iter()
            .any(|b| b.bot_family.is_none() && b.channel.is_none()));
        // Badge classes differ in performance and drivers.
        let classes: Vec<_> = p.ledger.badge_classes().map(|(_, _, b)| b).collect();
        assert!(classes.len() >= 3 * 2 * 3);
        let rates: Vec<f64> = classes
            .iter()
            .filter_map(|b| b.counts.acceptance_rate)
            .collect();
        let (lo, hi) = rates
            .iter()
            .fold((1.0f64, 0.0f64), |(l, h), r| (l.min(*r), h.max(*r)));
        assert!(hi - lo > 0.25, "acceptance rates {lo}..{hi}");
        for driver in [
            "skills_aligned",
            "in_pathway",
            "in_catalog",
            "has_criteria",
            "has_expiry",
            "has_evidence",
        ] {
            let with = classes.iter().filter(|b| b.drivers[driver]).count();
            assert!(with > 0 && with < classes.len(), "{driver}");
        }
        assert!(
            classes.iter().any(|b| b.counts.awarded < 10),
            "some low-sample classes"
        );
        assert!(
            classes.iter().all(|b| !b.metadata.name.contains("draft")),
            "ledger keeps the latest metadata"
        );
    }

    #[test]
    fn clients_stay_under_the_rate_limit_and_in_documentation_ranges() {
        let p = plan(42, 5, now(), 14);
        let mut per_client: HashMap<(&str, &str), u32> = HashMap::new();
        for b in p.share_beacons.iter().chain(&p.view_beacons) {
            for hop in b.forwarded_for.split(',').map(str::trim) {
                assert!(
                    hop == "127.0.0.1"
                        || DOC_PREFIXES
                            .iter()
                            .any(|d| hop.starts_with(&format!("{d}."))),
                    "{hop}"
                );
            }
            if b.bot_family.is_none() {
                *per_client
                    .entry((client_ip(&b.forwarded_for), &b.user_agent))
                    .or_default() += 1;
                assert!(!b.user_agent.is_empty());
            }
        }
        assert!(per_client.values().all(|n| *n <= MAX_HITS_PER_CLIENT));
        assert_eq!(per_client.len() as u64, p.ledger.traffic.client_identities);
        assert!(per_client.len() <= client_identity_capacity());
    }

    #[test]
    fn beacon_forms() {
        let p = sample();
        let share = p
            .share_beacons
            .iter()
            .find(|b| b.channel.is_some() && b.bot_family.is_none())
            .unwrap();
        let path = share.pixel_path("k1", "00ff");
        assert!(path.starts_with("/s.gif?o="), "{path}");
        assert!(path.contains("&kid=k1&sig=00ff&c="), "{path}");
        let body = share.post_body("k1", "00ff");
        assert_eq!(body["type"], "share");
        assert_eq!(body["channel"], share.channel.unwrap().as_str());
        let view = p.view_beacons.iter().find(|b| b.src.is_some()).unwrap();
        assert!(view.pixel_path("k1", "ab").starts_with("/p.gif?"));
        assert_eq!(
            view.post_body("k1", "ab")["src"],
            view.src.as_deref().unwrap()
        );
        assert!(view.post_body("k1", "ab").get("channel").is_none());
    }
}
