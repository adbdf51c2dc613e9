//! The ground-truth ledger: the exact numbers (SPEC §7) the pipeline must
//! report for a generated plan, per badge class, issuer, org and overall,
//! plus what ingest's own counters must show for the traffic.
//!
//! Built from facts — one per distinct event the pipeline will store,
//! after `event_id` deduplication and with bots excluded — so resent
//! duplicates and bot hits can never be counted here. Must not: know how
//! traffic is generated or sent.

use std::collections::{BTreeMap, BTreeSet};

use badgepulse_contract::event::{
    AwardMethod, BadgeClassMeta, EventType, ShareChannel, ViewSource,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Expected numbers for one generated plan. Serialised as the `--ledger` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub seed: u64,
    pub scale: u32,
    pub days: u32,
    /// The `now` the plan was made for. Platform events lie in
    /// `[period.from, period.to]`; pixel and beacon events are stamped by
    /// ingest on receipt, which the ledger takes to be `generated_at`
    /// (their day in `daily`).
    pub generated_at: DateTime<Utc>,
    pub period: Period,
    /// Over all orgs. `unique_viewers` counts (org, viewer) pairs.
    #[serde(flatten)]
    pub totals: Counts,
    pub orgs: Vec<OrgLedger>,
    pub traffic: Traffic,
}

/// The span platform events' `occurred_at` were drawn from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgLedger {
    pub org_id: String,
    pub name: String,
    #[serde(flatten)]
    pub counts: Counts,
    /// Event counts by UTC day of `occurred_at` (`YYYY-MM-DD`).
    pub daily: BTreeMap<String, DayCounts>,
    pub issuers: Vec<IssuerLedger>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuerLedger {
    pub issuer_id: String,
    pub name: String,
    #[serde(flatten)]
    pub counts: Counts,
    /// Its badge classes (not `badge_classes`: that is the count).
    pub classes: Vec<BadgeClassLedger>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BadgeClassLedger {
    pub badge_class_id: String,
    /// The metadata of the latest `badge_class.upserted` (by `occurred_at`).
    pub metadata: BadgeClassMeta,
    /// Driver attributes (SPEC §3): `skills_aligned`, `in_pathway`,
    /// `in_catalog` and every key of `attributes`.
    pub drivers: BTreeMap<String, bool>,
    #[serde(flatten)]
    pub counts: Counts,
}

/// The SPEC §7 measures of one scope, all time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Distinct assertions with `badge.awarded`.
    pub awarded: u64,
    /// Distinct assertions with `badge.accepted`.
    pub accepted: u64,
    /// Distinct assertions with at least one `badge.shared`.
    pub shared: u64,
    /// `badge.shared` events: platform shares plus accepted share beacons.
    pub shares: u64,
    /// `badge.viewed` events: accepted pixel and beacon views plus platform views.
    pub views: u64,
    /// Distinct (org, client IP, User-Agent) among pixel and beacon views.
    pub unique_viewers: u64,
    /// Distinct assertions with `badge.revoked`.
    pub revoked: u64,
    /// Badge classes with any event.
    pub badge_classes: u64,
    pub acceptance_rate: Option<f64>,
    pub share_rate: Option<f64>,
    pub engagement_score: Option<f64>,
    pub external_impact_score: Option<f64>,
    pub reach_score: Option<f64>,
    pub performance: Option<f64>,
    /// `badge.awarded` events by `award_method` (missing counted as `other`).
    pub award_methods: BTreeMap<String, u64>,
    /// `badge.shared` events by channel (share beacons without `c` as `other`).
    pub share_channels: BTreeMap<String, u64>,
    /// `badge.viewed` events by source, as ingest classifies pixel views.
    pub view_sources: BTreeMap<String, u64>,
    /// `badge.viewed` events by country: platform views that carry one,
    /// and pixel and beacon views whose country header ingest reads
    /// (`ingest.country_header = "CF-IPCountry"`, as in the demo config).
    pub view_countries: BTreeMap<String, u64>,
    /// The part of `view_countries` from platform views: what to expect
    /// from an ingest without `country_header`.
    pub platform_view_countries: BTreeMap<String, u64>,
    /// SPEC §7.6 stage counts over every assertion (all awarded in the period).
    pub lifecycle: Lifecycle,
}

/// Awarded ⊇ Accepted ⊇ Shared ⊇ Viewed: a stage counts an assertion with
/// that event and every earlier stage's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub awarded: u64,
    pub accepted: u64,
    pub shared: u64,
    pub viewed: u64,
}

/// Events of one UTC day in one org.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCounts {
    pub awarded: u64,
    pub accepted: u64,
    pub shares: u64,
    pub views: u64,
    pub revoked: u64,
}

/// What was sent and what ingest's counters must show for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// Distinct platform events (distinct `event_id`s).
    pub platform_events: u64,
    /// Platform events sent, resends included.
    pub platform_events_sent: u64,
    /// Platform events sent a second time with the same `event_id`.
    pub duplicates_resent: u64,
    /// Older `badge_class.upserted` versions sent after the newer ones
    /// (distinct events; the newer metadata must win).
    pub stale_upserts: u64,
    /// Rows the `events` table must hold, by type: distinct platform events
    /// plus accepted pixel and beacon events.
    pub events_by_type: BTreeMap<String, u64>,
    /// Accepted (non-bot) hits by route.
    pub view_pixels: u64,
    pub view_posts: u64,
    pub share_pixels: u64,
    pub share_posts: u64,
    /// Signed hits with a bot User-Agent, which ingest must drop.
    pub bot_hits: u64,
    /// Bot hits by the family ingest files them under.
    pub bots_by_family: BTreeMap<String, u64>,
    /// Expected `badgepulse_ingest_beacons_total` by kind (`view`, `share`)
    /// and outcome (`accepted`, `bot`); every other outcome must stay 0.
    pub ingest_beacons: BTreeMap<String, BTreeMap<String, u64>>,
    /// Distinct (client IP, User-Agent) pairs among accepted hits.
    pub client_identities: u64,
}

/// One distinct event as the pipeline will store it.
#[derive(Debug, Clone)]
pub(crate) struct Fact {
    pub kind: EventType,
    /// Index into the class list given to [`build`].
    pub class: usize,
    /// Assertion number; unused for `badge_class.upserted`.
    pub assertion: u32,
    pub at: DateTime<Utc>,
    pub award_method: Option<AwardMethod>,
    pub channel: Option<ShareChannel>,
    pub source: Option<ViewSource>,
    pub country: Option<&'static str>,
    /// Client identity (IP, User-Agent) of pixel and beacon views.
    pub viewer: Option<u32>,
}

/// Where a badge class sits, and its current metadata.
#[derive(Debug, Clone)]
pub(crate) struct ClassRef {
    pub org: usize,
    pub issuer: usize,
    pub badge_class_id: String,
    pub metadata: BadgeClassMeta,
}

/// An org's id and name and its issuers' (id, name), in ledger order.
pub(crate) struct OrgName {
    pub id: String,
    pub name: String,
    pub issuers: Vec<(String, String)>,
}

/// Accumulates facts of one scope.
#[derive(Default)]
struct Acc {
    awarded: BTreeSet<u32>,
    accepted: BTreeSet<u32>,
    shared: BTreeSet<u32>,
    viewed: BTreeSet<u32>,
    revoked: BTreeSet<u32>,
    shares: u64,
    views: u64,
    viewers: BTreeSet<(usize, u32)>,
    classes: BTreeSet<usize>,
    award_methods: BTreeMap<String, u64>,
    share_channels: BTreeMap<String, u64>,
    view_sources: BTreeMap<String, u64>,
    view_countries: BTreeMap<String, u64>,
    platform_view_countries: BTreeMap<String, u64>,
}

impl Acc {
    fn add(&mut self, f: &Fact, org: usize) {
        self.classes.insert(f.class);
        match f.kind {
            EventType::Awarded => {
                self.awarded.insert(f.assertion);
                let m = f.award_method.unwrap_or(AwardMethod::Other);
                *self.award_methods.entry(m.as_str().into()).or_default() += 1;
            }
            EventType::Accepted => {
                self.accepted.insert(f.assertion);
            }
            EventType::Shared => {
                self.shared.insert(f.assertion);
                self.shares += 1;
                let c = f.channel.unwrap_or(ShareChannel::Other);
                *self.share_channels.entry(c.as_str().into()).or_default() += 1;
            }
            EventType::Viewed => {
                self.viewed.insert(f.assertion);
                self.views += 1;
                let s = f.source.expect("every view has a source");
                *self.view_sources.entry(s.as_str().into()).or_default() += 1;
                if let Some(c) = f.country {
                    *self.view_countries.entry(c.into()).or_default() += 1;
                    if f.viewer.is_none() {
                        *self.platform_view_countries.entry(c.into()).or_default() += 1;
                    }
                }
                if let Some(v) = f.viewer {
                    self.viewers.insert((org, v));
                }
            }
            EventType::Revoked => {
                self.revoked.insert(f.assertion);
            }
            EventType::BadgeClassUpserted => {}
        }
    }

    fn finish(self) -> Counts {
        let lifecycle = Lifecycle {
            awarded: self.awarded.len() as u64,
            accepted: self
                .awarded
                .iter()
                .filter(|a| self.accepted.contains(a))
                .count() as u64,
            shared: self
                .awarded
                .iter()
                .filter(|a| self.accepted.contains(a) && self.shared.contains(a))
                .count() as u64,
            viewed: self
                .awarded
                .iter()
                .filter(|a| {
                    self.accepted.contains(a) && self.shared.contains(a) && self.viewed.contains(a)
                })
                .count() as u64,
        };
        let mut c = Counts {
            awarded: self.awarded.len() as u64,
            accepted: self.accepted.len() as u64,
            shared: self.shared.len() as u64,
            shares: self.shares,
            views: self.views,
            unique_viewers: self.viewers.len() as u64,
            revoked: self.revoked.len() as u64,
            badge_classes: self.classes.len() as u64,
            award_methods: self.award_methods,
            share_channels: self.share_channels,
            view_sources: self.view_sources,
            view_countries: self.view_countries,
            platform_view_countries: self.platform_view_countries,
            lifecycle,
            ..Counts::default()
        };
        c.derive_scores();
        c
    }
}

impl Counts {
    /// Fills in the SPEC §7 ratios and scores from the counts.
    fn derive_scores(&mut self) {
        let (aw, ac, sh) = (
            self.awarded as f64,
            self.accepted as f64,
            self.shared as f64,
        );
        let (shares, views) = (self.shares as f64, self.views as f64);
        self.acceptance_rate = (aw > 0.0).then(|| (ac / aw).min(1.0));
        self.share_rate = (ac > 0.0).then(|| (sh / ac).min(1.0));
        self.engagement_score = (aw > 0.0).then(|| 100.0 * (ac.min(aw) + sh.min(aw)) / (2.0 * aw));
        self.external_impact_score = (shares > 0.0).then(|| views / shares);
        self.reach_score = (aw > 0.0).then(|| {
            let v = views / aw;
            100.0 * v / (v + 1.0)
        });
        self.performance = match (self.engagement_score, self.reach_score) {
            (Some(e), Some(r)) => Some((e + r) / 2.0),
            _ => None,
        };
    }
}

/// The driver attributes of a badge class (SPEC §3).
pub fn drivers(meta: &BadgeClassMeta) -> BTreeMap<String, bool> {
    let mut d = meta.attributes.clone();
    d.insert("skills_aligned".into(), !meta.skills.is_empty());
    d.insert(
        "in_pathway".into(),
        !meta.pathways.is_empty() || !meta.courses.is_empty(),
    );
    d.insert(
        "in_catalog".into(),
        !meta.catalogs.is_empty() || !meta.collections.is_empty(),
    );
    d
}

/// Builds the ledger's scopes from the facts. `traffic` is completed with
/// `events_by_type`.
pub(crate) fn build(
    header: (u64, u32, u32, DateTime<Utc>, Period),
    names: &[OrgName],
    classes: &[ClassRef],
    facts: &[Fact],
    mut traffic: Traffic,
) -> Ledger {
    let (seed, scale, days, generated_at, period) = header;
    let mut class_acc: Vec<Acc> = classes.iter().map(|_| Acc::default()).collect();
    let mut issuer_acc: BTreeMap<(usize, usize), Acc> = BTreeMap::new();
    let mut org_acc: BTreeMap<usize, Acc> = BTreeMap::new();
    let mut daily: BTreeMap<usize, BTreeMap<String, DayCounts>> = BTreeMap::new();
    let mut total = Acc::default();
    for f in facts {
        let c = &classes[f.class];
        class_acc[f.class].add(f, c.org);
        issuer_acc
            .entry((c.org, c.issuer))
            .or_default()
            .add(f, c.org);
        org_acc.entry(c.org).or_default().add(f, c.org);
        total.add(f, c.org);
        *traffic
            .events_by_type
            .entry(f.kind.as_str().into())
            .or_default() += 1;
        let day = daily
            .entry(c.org)
            .or_default()
            .entry(f.at.format("%Y-%m-%d").to_string())
            .or_default();
        match f.kind {
            EventType::Awarded => day.awarded += 1,
            EventType::Accepted => day.accepted += 1,
            EventType::Shared => day.shares += 1,
            EventType::Viewed => day.views += 1,
            EventType::Revoked => day.revoked += 1,
            EventType::BadgeClassUpserted => {}
        }
    }

    let mut class_counts: Vec<Option<Counts>> =
        class_acc.into_iter().map(|a| Some(a.finish())).collect();
    let orgs = names
        .iter()
        .enumerate()
        .map(|(o, org)| OrgLedger {
            org_id: org.id.clone(),
            name: org.name.clone(),
            counts: org_acc.remove(&o).unwrap_or_default().finish(),
            daily: daily.remove(&o).unwrap_or_default(),
            issuers: org
                .issuers
                .iter()
                .enumerate()
                .map(|(i, (issuer_id, issuer_name))| IssuerLedger {
                    issuer_id: issuer_id.clone(),
                    name: issuer_name.clone(),
                    counts: issuer_acc.remove(&(o, i)).unwrap_or_default().finish(),
                    classes: classes
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| c.org == o && c.issuer == i)
                        .map(|(n, c)| BadgeClassLedger {
                            badge_class_id: c.badge_class_id.clone(),
                            metadata: c.metadata.clone(),
                            drivers: drivers(&c.metadata),
                            counts: class_counts[n].take().expect("each class once"),
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    Ledger {
        seed,
        scale,
        days,
        generated_at,
        period,
        totals: total.finish(),
        orgs,
        traffic,
    }
}

impl Ledger {
    /// The org entry for `org_id`.
    pub fn org(&self, org_id: &str) -> Option<&OrgLedger> {
        self.orgs.iter().find(|o| o.org_id == org_id)
    }

    /// Every badge class with its org and issuer ids.
    pub fn badge_classes(&self) -> impl Iterator<Item = (&str, &str, &BadgeClassLedger)> {
        self.orgs.iter().flat_map(|o| {
            o.issuers.iter().flat_map(move |i| {
                i.classes
                    .iter()
                    .map(move |b| (o.org_id.as_str(), i.issuer_id.as_str(), b))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_follow_the_spec_formulas() {
        let mut c = Counts {
            awarded: 10,
            accepted: 8,
            shared: 4,
            shares: 5,
            views: 20,
            ..Counts::default()
        };
        c.derive_scores();
        assert_eq!(c.acceptance_rate, Some(0.8));
        assert_eq!(c.share_rate, Some(0.5));
        assert_eq!(c.engagement_score, Some(60.0));
        assert_eq!(c.external_impact_score, Some(4.0));
        let reach = 100.0 * 2.0 / 3.0;
        assert_eq!(c.reach_score, Some(reach));
        assert_eq!(c.performance, Some((60.0 + reach) / 2.0));
        let mut empty = Counts::default();
        empty.derive_scores();
        assert_eq!(empty.acceptance_rate, None);
        assert_eq!(empty.performance, None);
    }
}
