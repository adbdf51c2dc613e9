//! The exactly-once protocol's decisions (ARCHITECTURE.md, "Exactly once
//! into ClickHouse"), as pure functions of the high-water marks and the
//! batch: which rows are new, where they are written, which derived tables
//! are recomputed from `events`, and what the change notice says.
//! `consume.rs` carries the plan out.
//!
//! Pure: no I/O.

use std::collections::{BTreeMap, HashMap, HashSet};

use badgepulse_contract::event::Event;

use crate::rows::EventRow;
use crate::schema::tables::ASSERTION_AWARDS;
use crate::schema::DERIVED_TABLES;

/// For one partition: the highest stream sequence folded into each table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Marks {
    pub events: u64,
    /// The highest stream sequence of a `badge.awarded` row in `events`:
    /// what `assertion_awards` must reach ([`before_lookups`]). Read with
    /// the marks; not advanced by batches (only freshly read marks are
    /// checked against it).
    pub awards: u64,
    pub derived: BTreeMap<&'static str, u64>,
}

impl Marks {
    /// Whether no table has seen anything at or after `seq`.
    pub fn all_below(&self, seq: u64) -> bool {
        self.events < seq && self.derived.values().all(|m| *m < seq)
    }

    /// Records that every table now holds everything up to `seq`.
    pub fn advance_to(&mut self, seq: u64) {
        self.events = self.events.max(seq);
        for m in self.derived.values_mut() {
            *m = (*m).max(seq);
        }
    }

    /// The mark of a derived table (0: holds nothing of the partition).
    pub fn derived(&self, table: &str) -> u64 {
        self.derived.get(table).copied().unwrap_or(0)
    }
}

/// A decoded message of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Its stream sequence.
    pub seq: u64,
    pub events: Vec<Event>,
    /// Beacons: ids minted by ingest, no lookup of stored ids needed.
    pub beacons: bool,
}

/// Recompute `table`'s share of the partition's messages with stream
/// sequence in `(after, upto]` from `events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    pub table: &'static str,
    pub after: u64,
    pub upto: u64,
}

/// Where the batch's new rows are inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsInto {
    /// `events_input`: the materialised views fan them out to `events` and
    /// every derived table in one statement (the normal path).
    Input,
    /// `events` alone; the derived tables are recovered from it (the
    /// recovery path).
    Events,
}

/// What the batch's change notice says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The orgs and `occurred_at` spans of the rows written.
    Spans,
    /// Anything may have changed: a replay over partly written tables
    /// (including a redelivered batch whose notice may never have gone
    /// out before a crash).
    Everything,
}

/// How to write one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritePlan {
    /// `None`: no new rows.
    pub rows_into: Option<RowsInto>,
    pub recover: Vec<Recovery>,
    pub notice: Notice,
}

/// The plan for a batch of stream sequences `[first, last]` with
/// `has_rows` new rows, given every table's mark.
///
/// - Normal path: no table has seen any of it; the rows go through
///   `events_input`.
/// - Recovery path: some table has (after a crash between inserts, or a
///   failed write whose outcome is unknown, or a redelivery). The rows
///   above the `events` mark go to `events`, and every derived table whose
///   mark is below `last` is recomputed from `events` over `(mark, last]`.
pub fn plan(marks: &Marks, first: u64, last: u64, has_rows: bool) -> WritePlan {
    if marks.all_below(first) {
        return WritePlan {
            rows_into: has_rows.then_some(RowsInto::Input),
            recover: Vec::new(),
            notice: Notice::Spans,
        };
    }
    let recover = DERIVED_TABLES
        .iter()
        .map(|table| (table, marks.derived(table)))
        .filter(|(_, mark)| *mark < last)
        .map(|(table, mark)| Recovery {
            table,
            after: mark,
            upto: last,
        })
        .collect();
    WritePlan {
        rows_into: has_rows.then_some(RowsInto::Events),
        recover,
        notice: Notice::Everything,
    }
}

/// Derived tables that hold nothing of the partition while `events` does
/// (a table added by a later migration starts empty; one that retention
/// emptied gets back only what retention keeps): each is recovered over
/// `(0, events mark]` before the next batch.
pub fn fill_empty(marks: &Marks) -> Vec<Recovery> {
    if marks.events == 0 {
        return Vec::new();
    }
    DERIVED_TABLES
        .iter()
        .filter(|table| marks.derived(table) == 0)
        .map(|table| Recovery {
            table,
            after: 0,
            upto: marks.events,
        })
        .collect()
}

/// What to recover after the marks were read from ClickHouse (start-up,
/// after an error), before the next batch's lookups: [`fill_empty`], and
/// each lookup table that lacks a row `events` holds.
///
/// The duplicate lookup (`event_ids`) and the award lookup
/// (`assertion_awards`) must know every event `events` holds. A write cut
/// between `events` and them leaves them behind: the recovery path writes
/// `events` first and then recomputes the derived tables, and a batch
/// redelivered after a crash there may reach further than the cut one, so
/// its new messages would be looked up before the recovery of the old
/// ones. `event_ids` receives every event, so its mark below `events'`
/// tells such a cut; `assertion_awards` receives every award, so its mark
/// below the highest award's in `events` ([`Marks::awards`]) tells it
/// (its mark lags whenever recent messages hold no award). Either is
/// recovered up to the `events` mark, whatever order the views of the cut
/// write filled them in.
pub fn before_lookups(marks: &Marks) -> Vec<Recovery> {
    let mut out = fill_empty(marks);
    for (table, reached) in [
        (ASSERTION_AWARDS, marks.awards),
        ("event_ids", marks.events),
    ] {
        let after = marks.derived(table);
        if after < reached && !out.iter().any(|r| r.table == table) {
            out.push(Recovery {
                table,
                after,
                upto: marks.events,
            });
        }
    }
    out.sort_by_key(|r| DERIVED_TABLES.iter().position(|t| *t == r.table));
    out
}

/// The messages above the `events` mark (the others are in `events`
/// already), and the (org_id, event_id) pairs among them whose storage
/// must be looked up: those of platform messages (beacon ids were minted
/// by ingest, and the batch id guards republishing).
pub fn to_look_up(messages: &[Message], events_mark: u64) -> Vec<(String, String)> {
    messages
        .iter()
        .filter(|m| m.seq > events_mark && !m.beacons)
        .flat_map(|m| {
            m.events
                .iter()
                .map(|e| (e.org_id.clone(), e.event_id.clone()))
        })
        .collect()
}

/// How much text the values of one lookup may take: ClickHouse parses at
/// most `max_query_size` (256 KiB by default) of a SELECT, and a batch of
/// beacons can name tens of thousands of assertions. Room is left for
/// escaping and the statement itself.
pub const LOOKUP_TEXT_BUDGET: usize = 96 << 10;

/// `pairs` in consecutive runs of one lookup each, every run's strings
/// (quoted, separated) within `budget` bytes, or a single pair.
pub fn lookup_chunks<A: AsRef<str>, B: AsRef<str>>(
    pairs: &[(A, B)],
    budget: usize,
) -> Vec<&[(A, B)]> {
    let mut out = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, (a, b)) in pairs.iter().enumerate() {
        let cost = a.as_ref().len() + b.as_ref().len() + 6;
        if i > start && used + cost > budget {
            out.push(&pairs[start..i]);
            (start, used) = (i, 0);
        }
        used += cost;
    }
    if start < pairs.len() {
        out.push(&pairs[start..]);
    }
    out
}

/// The rows of the events above the `events` mark, without those already
/// `stored` or earlier in the batch (an `event_id` counts once per org,
/// forever: SPEC §3), and how many were dropped as duplicates.
pub fn new_rows(
    messages: &[Message],
    events_mark: u64,
    partition: u16,
    stored: &HashSet<(String, String)>,
) -> (Vec<EventRow>, u64) {
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut rows = Vec::new();
    let mut duplicates = 0u64;
    for m in messages.iter().filter(|m| m.seq > events_mark) {
        for e in &m.events {
            let key = (e.org_id.as_str(), e.event_id.as_str());
            let already = stored.contains(&(e.org_id.clone(), e.event_id.clone()));
            if already || !seen.insert(key) {
                duplicates += 1;
                continue;
            }
            rows.push(EventRow::new(e, partition, m.seq));
        }
    }
    (rows, duplicates)
}

/// The `(org_id, assertion_id)` pairs of `rows` whose first award day
/// must be looked up: every assertion of the batch.
pub fn assertions_to_look_up(rows: &[EventRow]) -> Vec<(&str, &str)> {
    let mut seen = HashSet::new();
    rows.iter()
        .filter(|r| r.has_assertion())
        .map(|r| (r.org_id.as_str(), r.assertion_id.as_str()))
        .filter(|pair| seen.insert(*pair))
        .collect()
}

/// Files the batch's rows for the lifecycle (`assertion_lifecycle` is
/// sorted by the day an assertion was first awarded, so that a cohort
/// reads its own days): `award_known_on` is the assertion's first award
/// day known before the batch (`known`, from the awards with a lower
/// stream sequence), `awarded_on` the earliest of that and the batch's
/// own awards of it; 0 when there is none yet. A cohort reads its days,
/// day 0, and the assertions an award moved to an earlier day
/// (`lifecycle_refiled`, when an award's day is before `award_known_on`);
/// every row of an assertion is filed at or after its first award day.
pub fn file_by_award(rows: &mut [EventRow], known: &HashMap<(String, String), u16>) {
    let mut first_in_batch: HashMap<(String, String), u16> = HashMap::new();
    for r in rows.iter().filter(|r| r.is_award()) {
        let day = first_in_batch
            .entry((r.org_id.clone(), r.assertion_id.clone()))
            .or_insert(u16::MAX);
        *day = (*day).min(r.day());
    }
    for r in rows.iter_mut().filter(|r| r.has_assertion()) {
        let key = (r.org_id.clone(), r.assertion_id.clone());
        let before = known.get(&key).copied().unwrap_or(0);
        let batch = first_in_batch.get(&key).copied().unwrap_or(0);
        r.award_known_on = before;
        r.awarded_on = match (before, batch) {
            (0, day) | (day, 0) => day,
            (a, b) => a.min(b),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badgepulse_contract::event::validate_platform_event;
    use serde_json::json;

    fn marks(events: u64, derived: u64) -> Marks {
        Marks {
            events,
            awards: derived,
            derived: DERIVED_TABLES.iter().map(|t| (*t, derived)).collect(),
        }
    }

    fn event(org: &str, id: &str) -> Event {
        validate_platform_event(
            &json!({"event_id": id, "type": "badge.awarded", "occurred_at": "2026-03-01T10:00:00Z",
                "org_id": org, "issuer_id": "i", "badge_class_id": "b", "assertion_id": id}),
            "2026-03-01T12:00:00Z".parse().unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn normal_path_when_no_table_has_seen_the_batch() {
        let p = plan(&marks(10, 10), 11, 20, true);
        assert_eq!(p.rows_into, Some(RowsInto::Input));
        assert!(p.recover.is_empty());
        assert_eq!(p.notice, Notice::Spans);
        // Every event a duplicate: nothing to insert, nothing to announce
        // beyond the (empty) spans.
        assert_eq!(plan(&marks(10, 10), 11, 20, false).rows_into, None);
    }

    #[test]
    fn recovery_path_after_a_crash_between_inserts() {
        // `events` and the minute rollup hold the batch, the others not.
        let mut m = marks(20, 10);
        m.derived.insert("rollup_minute", 20);
        let p = plan(&m, 11, 20, false);
        assert_eq!(p.rows_into, None, "events holds every row already");
        assert_eq!(p.notice, Notice::Everything);
        let recovered: Vec<_> = p.recover.iter().map(|r| r.table).collect();
        assert_eq!(recovered.len(), DERIVED_TABLES.len() - 1);
        assert!(!recovered.contains(&"rollup_minute"));
        assert!(p.recover.iter().all(|r| r.after == 10 && r.upto == 20));

        // Half of a batch beyond the `events` mark: its rows go to
        // `events` directly, and each table recovers from its own mark.
        let mut m = marks(15, 12);
        m.derived.insert("scope_total", 15);
        let p = plan(&m, 11, 20, true);
        assert_eq!(p.rows_into, Some(RowsInto::Events));
        for r in &p.recover {
            let expected = if r.table == "scope_total" { 15 } else { 12 };
            assert_eq!((r.after, r.upto), (expected, 20), "{}", r.table);
        }
    }

    #[test]
    fn a_redelivered_batch_writes_nothing_and_announces_everything() {
        let p = plan(&marks(30, 30), 11, 20, false);
        assert_eq!(
            p,
            WritePlan {
                rows_into: None,
                recover: Vec::new(),
                notice: Notice::Everything,
            }
        );
    }

    #[test]
    fn empty_derived_tables_are_filled_up_to_the_events_mark() {
        assert!(fill_empty(&marks(0, 0)).is_empty(), "nothing written yet");
        assert!(fill_empty(&marks(50, 50)).is_empty());
        let mut m = marks(50, 50);
        m.derived.insert("scope_day", 0);
        m.derived.remove("scope_total");
        assert_eq!(
            fill_empty(&m),
            vec![
                Recovery {
                    table: "scope_day",
                    after: 0,
                    upto: 50
                },
                Recovery {
                    table: "scope_total",
                    after: 0,
                    upto: 50
                },
            ]
        );
    }

    #[test]
    fn lookup_tables_behind_events_are_recovered_before_the_lookups() {
        // Up to date, or assertion_awards merely without recent awards.
        assert!(before_lookups(&marks(50, 50)).is_empty());
        let mut m = marks(50, 50);
        m.derived.insert(ASSERTION_AWARDS, 30);
        m.awards = 30;
        assert!(before_lookups(&m).is_empty());
        let r = |table, after| Recovery {
            table,
            after,
            upto: 50,
        };
        // An award `events` holds and assertion_awards lacks, with
        // event_ids up to date (views filled in another order): the
        // awards alone, to the `events` mark.
        m.awards = 45;
        assert_eq!(before_lookups(&m), vec![r(ASSERTION_AWARDS, 30)]);
        // A write cut after `events`: both lookups, awards first, to 50;
        // the other tables wait for the batch's own plan.
        m.derived.insert("event_ids", 40);
        m.derived.insert("scope_day", 20);
        assert_eq!(
            before_lookups(&m),
            vec![r(ASSERTION_AWARDS, 30), r("event_ids", 40)]
        );
        // An empty table is filled in the same pass, in table order.
        m.derived.insert("rollup_day", 0);
        assert_eq!(
            before_lookups(&m),
            vec![
                r(ASSERTION_AWARDS, 30),
                r("event_ids", 40),
                r("rollup_day", 0)
            ]
        );
    }

    #[test]
    fn lookups_are_cut_into_runs_within_the_text_budget() {
        let pairs: Vec<(String, String)> = (0..1_000)
            .map(|n| ("org".to_owned(), format!("event-{n:05}")))
            .collect();
        // 3 + 11 + 6 = 20 bytes a pair.
        let runs = lookup_chunks(&pairs, 1_000);
        assert_eq!(runs.len(), 20);
        assert!(runs.iter().all(|r| r.len() == 50));
        assert_eq!(runs.concat(), pairs);
        assert_eq!(lookup_chunks(&pairs, 1 << 20), vec![&pairs[..]]);
        // A pair larger than the budget goes alone.
        let big = [("o", "x".repeat(100)), ("o", "y".to_owned())];
        assert_eq!(lookup_chunks(&big, 10).len(), 2);
        assert!(lookup_chunks::<&str, &str>(&[], 10).is_empty());
    }

    #[test]
    fn rows_skip_stored_and_repeated_ids_and_messages_below_the_mark() {
        let messages = vec![
            Message {
                seq: 5,
                events: vec![event("acme", "old")],
                beacons: false,
            },
            Message {
                seq: 6,
                events: vec![
                    event("acme", "e1"),
                    event("acme", "e1"),
                    event("globex", "e1"),
                ],
                beacons: false,
            },
            Message {
                seq: 7,
                events: vec![event("acme", "stored"), event("acme", "b1")],
                beacons: false,
            },
            Message {
                seq: 8,
                events: vec![event("acme", "beacon")],
                beacons: true,
            },
        ];
        let lookup = to_look_up(&messages, 5);
        assert_eq!(lookup.len(), 5, "not the message at the mark, not beacons");
        assert!(!lookup.iter().any(|(_, id)| id == "beacon" || id == "old"));
        let stored: HashSet<_> = [("acme".to_owned(), "stored".to_owned())].into();
        let (rows, duplicates) = new_rows(&messages, 5, 3, &stored);
        let ids: Vec<_> = rows
            .iter()
            .map(|r| (r.org_id.as_str(), r.event_id.as_str(), r.seq))
            .collect();
        assert_eq!(
            ids,
            [
                ("acme", "e1", 6),
                ("globex", "e1", 6),
                ("acme", "b1", 7),
                ("acme", "beacon", 8)
            ]
        );
        assert_eq!(duplicates, 2);
        assert!(rows.iter().all(|r| r.partition == 3));
    }

    #[test]
    fn rows_are_filed_under_the_first_award_day_known() {
        let ev = |kind: &str, id: &str, assertion: &str, day: &str| {
            let e = validate_platform_event(
                &json!({"event_id": id, "type": kind, "occurred_at": format!("{day}T10:00:00Z"),
                    "org_id": "acme", "issuer_id": "i", "badge_class_id": "b", "assertion_id": assertion}),
                "2026-03-30T12:00:00Z".parse().unwrap(),
            )
            .unwrap();
            EventRow::new(&e, 0, 9)
        };
        let day = |d: &str| ev("badge.awarded", "x", "x", d).day();
        let mut rows = vec![
            // Known before: awarded on 03-10; this batch brings an earlier award.
            ev("badge.accepted", "1", "known", "2026-03-12"),
            ev("badge.awarded", "2", "known", "2026-03-05"),
            // Never awarded before; accepted before its award in this batch.
            ev("badge.accepted", "3", "new", "2026-03-20"),
            ev("badge.awarded", "4", "new", "2026-03-21"),
            // No award known anywhere.
            ev("badge.viewed", "5", "orphan", "2026-03-22"),
        ];
        let mut upsert = ev("badge.awarded", "6", "u", "2026-03-01");
        upsert.kind = 6;
        upsert.assertion_id.clear();
        rows.push(upsert);
        let known: HashMap<(String, String), u16> =
            [(("acme".to_owned(), "known".to_owned()), day("2026-03-10"))].into();
        assert_eq!(assertions_to_look_up(&rows).len(), 3);
        file_by_award(&mut rows, &known);
        let filed: Vec<(u16, u16)> = rows
            .iter()
            .map(|r| (r.award_known_on, r.awarded_on))
            .collect();
        assert_eq!(
            filed,
            [
                (day("2026-03-10"), day("2026-03-05")),
                (day("2026-03-10"), day("2026-03-05")),
                (0, day("2026-03-21")),
                (0, day("2026-03-21")),
                (0, 0),
                (0, 0),
            ]
        );
    }

    #[test]
    fn marks_order() {
        let mut m = Marks {
            events: 5,
            awards: 0,
            derived: [("rollup_minute", 3), ("rollup_hour", 5)]
                .into_iter()
                .collect(),
        };
        assert!(m.all_below(6));
        assert!(!m.all_below(5));
        m.advance_to(9);
        assert_eq!(m.events, 9);
        assert!(m.derived.values().all(|v| *v == 9));
        assert!(!m.all_below(9));
    }
}
