//! The SQL of every query family, as text.

use clickhouse::query::Query;
use clickhouse::Client;

use super::annotations::annotations;
use super::award_days::{Unsealed, UnsealedDay};
use super::counts::{measure_counts, trend_counts};
use super::distribution::distribution;
use super::lifecycle::lifecycle;
use super::samples::{sample_queries, SAMPLE_WINDOW};
use super::sql::table;
use super::totals::{dimension_totals, issuer_totals, lifecycle_totals};
use crate::model::measures::Dimension;
use crate::model::scope::Filter;
use crate::model::tiers::{Period, Resolution, Retention};
use crate::model::window::{Granularity, Window};

fn client() -> Client {
    Client::default().with_database("bp_test")
}

fn text(q: &Query) -> String {
    q.sql_display().to_string()
}

#[test]
fn all_time_reads_the_org_rows_of_scope_total_only() {
    let f = Filter {
        org: Some("acme".into()),
        ..Filter::default()
    };
    let sql = text(&measure_counts(&client(), &f, &Period::AllTime));
    let states = &sql[sql.find(" FROM (SELECT uniqCombinedIfMerge").unwrap()..];
    assert!(
        states.ends_with("FROM bp_test.scope_total WHERE org_id = 'acme' AND scope_issuer_id = '' AND scope_badge_class_id = ''))"),
        "{sql}"
    );
    assert!(
        !states.contains("UNION ALL") && !states.contains("bucket"),
        "{sql}"
    );
    // Unique viewers: every sealed day, and the days not sealed from events.
    let viewers = &sql[..sql.find(" FROM (SELECT uniqCombinedIfMerge").unwrap()];
    assert_eq!(viewers.matches(" UNION ALL ").count(), 1, "{sql}");
    assert!(viewers.contains("FROM bp_test.viewer_days WHERE org_id = 'acme' AND scope_issuer_id = '' AND scope_badge_class_id = '' AND (org_id, toStartOfDay(bucket)) IN ("), "{sql}");
    assert!(viewers.contains("AND (org_id, toDate(occurred_at)) IN (SELECT org_id, toDate(bucket) FROM (SELECT org_id, bucket, maxMerge(max_seq) AS hi FROM bp_test.view_days WHERE org_id = 'acme' GROUP BY org_id, bucket) AS v ANY LEFT JOIN"), "{sql}");
}

#[test]
fn windows_union_every_source() {
    let w = Window::new(SAMPLE_WINDOW.0, SAMPLE_WINDOW.1).unwrap();
    let f = Filter {
        org: Some("acme".into()),
        issuer: Some("i1".into()),
        badge_class: None,
    };
    let sql = text(&measure_counts(
        &client(),
        &f,
        &Period::window(w, Resolution::Month, Retention::KEEP_ALL),
    ));
    let at = sql.find(" FROM (SELECT uniqCombinedIfMerge").unwrap();
    let (viewers, states) = sql.split_at(at);
    // An issuer has no hour rows: its raw edges are the partial days,
    // around the whole days.
    assert_eq!(states.matches(" UNION ALL ").count(), 2, "{sql}");
    assert!(!states.contains("scope_hour"), "{sql}");
    assert!(
        states.contains("FROM bp_test.scope_day WHERE org_id = 'acme' AND scope_issuer_id = 'i1' AND scope_badge_class_id = '' AND scope_level = 1 AND scope_key = 'i1' AND bucket >= toDateTime(1710028800, 'UTC') AND bucket < toDateTime(1710201600, 'UTC')"),
        "{sql}"
    );
    assert_eq!(
        states
            .matches("FROM bp_test.events WHERE org_id = 'acme' AND issuer_id = 'i1' AND ")
            .count(),
        2,
        "{sql}"
    );
    assert!(states.contains("occurred_at >= toDateTime(1710025110, 'UTC') AND occurred_at < toDateTime(1710028800, 'UTC') AND toDate(occurred_at) >= toDate(toDateTime(1710025110, 'UTC')) AND toDate(occurred_at) <= toDate(toDateTime(1710028799, 'UTC'))"), "{sql}");
    // Viewers: the partial days raw, the whole days sealed or raw.
    assert_eq!(viewers.matches(" UNION ALL ").count(), 3, "{sql}");
    assert!(viewers.contains("FROM bp_test.viewer_days WHERE org_id = 'acme' AND scope_issuer_id = 'i1' AND scope_badge_class_id = '' AND bucket >= toDateTime(1710028800, 'UTC') AND bucket < toDateTime(1710201600, 'UTC')"), "{sql}");
    assert!(!sql.contains('?'), "{sql}");
    // The org reads its hour rows for the whole hours of the partial days.
    let org = Filter { issuer: None, ..f };
    let sql = text(&measure_counts(
        &client(),
        &org,
        &Period::window(w, Resolution::Month, Retention::KEEP_ALL),
    ));
    let states = &sql[sql.find(" FROM (SELECT uniqCombinedIfMerge").unwrap()..];
    assert_eq!(states.matches(" UNION ALL ").count(), 4, "{sql}");
    assert_eq!(
        states.matches("FROM bp_test.scope_hour WHERE").count(),
        2,
        "{sql}"
    );
}

#[test]
fn user_input_is_escaped() {
    let f = Filter {
        org: Some("x' OR 1=1 --".into()),
        ..Filter::default()
    };
    let sql = text(&measure_counts(&client(), &f, &Period::AllTime));
    assert!(sql.contains(r"org_id = 'x\' OR 1=1 --'"), "{sql}");
}

#[test]
fn admin_all_orgs_has_no_org_condition() {
    let sql = text(&measure_counts(
        &client(),
        &Filter::default(),
        &Period::AllTime,
    ));
    assert!(!sql.contains("org_id ="), "{sql}");
    assert!(
        sql.contains("WHERE scope_issuer_id = '' AND scope_badge_class_id = ''"),
        "{sql}"
    );
}

#[test]
fn database_is_quoted_when_needed() {
    let c = Client::default().with_database("my-db");
    assert_eq!(table(&c, "events"), "`my-db`.events");
    assert_eq!(table(&Client::default(), "events"), "badgepulse.events");
}

#[test]
fn issuer_totals_binds_limits() {
    let sql = text(&issuer_totals(&client(), 3, 7));
    assert_eq!(sql.matches("LIMIT 3)").count(), 2, "{sql}");
    assert!(sql.contains("LIMIT 7)"), "{sql}");
}

#[test]
fn org_totals_fold_with_the_same_top_orgs() {
    let top = "(SELECT org_id FROM bp_test.scope_total \
               WHERE scope_issuer_id = '' AND scope_badge_class_id = '' GROUP BY org_id \
               ORDER BY countMerge(events) DESC, org_id LIMIT 3)";
    for sql in [
        text(&dimension_totals(&client(), 3)),
        text(&lifecycle_totals(
            &client(),
            3,
            &Unsealed::Named(Vec::new()),
        )),
    ] {
        assert!(
            sql.starts_with(&format!(
                "SELECT if(org_id IN {top}, org_id, '__other__') AS org"
            )),
            "{sql}"
        );
    }
    // Every day sealed: the sealed rows only.
    let sql = text(&lifecycle_totals(
        &client(),
        3,
        &Unsealed::Named(Vec::new()),
    ));
    assert!(
        sql.contains("FROM (SELECT org_id, day, argMax(awarded, sealed_seq) AS awarded"),
        "{sql}"
    );
    assert!(!sql.contains("assertion_lifecycle"), "{sql}");
    // Named unsealed days are counted from their rows, the others read
    // sealed.
    let named = Unsealed::Named(vec![UnsealedDay {
        org_id: "acme".into(),
        day: 20_000,
    }]);
    let sql = text(&lifecycle_totals(&client(), 3, &named));
    let listed = "SELECT tupleElement(t, 1) AS org_id, toDate(toDateTime(tupleElement(t, 2), 'UTC')) AS day \
                  FROM (SELECT arrayJoin(arrayMap((o, d) -> (o, d), ['acme'], [1728000000])) AS t)";
    assert!(
        sql.contains(&format!(
            "FROM bp_test.lifecycle_days WHERE (org_id, day) NOT IN ({listed}) GROUP BY org_id, day UNION ALL"
        )),
        "{sql}"
    );
    assert!(
        sql.contains(&format!(
            "FROM bp_test.assertion_lifecycle WHERE (org_id, awarded_on) IN ({listed})"
        )),
        "{sql}"
    );
    // Too many to name: one read of both tables picks a day's sealed
    // row only when its seal has seen its last change.
    let sql = text(&lifecycle_totals(&client(), 3, &Unsealed::TooMany));
    assert!(
        sql.contains("if(sealed >= hi, sealed_awarded, counted_awarded) AS awarded"),
        "{sql}"
    );
    assert!(sql.contains(" WHERE sealed < hi"), "{sql}");
    // Folded issuers and orgs add up their counts; each issuer's unique
    // viewers are summed over its days.
    let sql = text(&issuer_totals(&client(), 3, 7));
    assert!(
        sql.contains(" GROUP BY org_id, issuer_id) AS t ANY LEFT JOIN (SELECT org_id, issuer_id, sum(u) AS unique_viewers FROM ("),
        "{sql}"
    );
    assert!(
        sql.ends_with(") AS v USING org_id, issuer_id) GROUP BY org, issuer ORDER BY org, issuer"),
        "{sql}"
    );
    let sql = text(&dimension_totals(&client(), 3));
    assert!(sql.contains("FROM bp_test.rollup_total WHERE dimension IN ('award_method', 'share_channel', 'view_source')"), "{sql}");
}

#[test]
fn samples_are_complete_and_bound() {
    let samples = sample_queries(&client());
    assert!(samples.len() >= 30);
    let mut names = std::collections::HashSet::new();
    for (name, q) in &samples {
        assert!(names.insert(name.clone()), "duplicate sample name {name}");
        let sql = text(q);
        assert!(!sql.contains('?'), "{name}: unbound: {sql}");
    }
}

fn sample_window() -> Window {
    Window::new(SAMPLE_WINDOW.0, SAMPLE_WINDOW.1).unwrap()
}

#[test]
fn trends_never_read_coarser_buckets_than_their_granularity() {
    let f = Filter {
        org: Some("acme".into()),
        ..Filter::default()
    };
    for g in Granularity::ALL {
        let period = Period::window(
            sample_window(),
            g.coarsest_resolution(),
            Retention::KEEP_ALL,
        );
        let sql = text(&trend_counts(&client(), &f, &period, g));
        let reads = |t: &str| sql.contains(&format!("FROM bp_test.{t} "));
        match g {
            Granularity::Minute => assert!(
                !reads("scope_hour") && !reads("scope_day") && !reads("viewer_days"),
                "{sql}"
            ),
            Granularity::Hour => assert!(
                !reads("scope_day") && reads("scope_hour") && reads("viewer_hours"),
                "{sql}"
            ),
            Granularity::Month => assert!(reads("scope_month") || reads("scope_day"), "{sql}"),
            _ => assert!(
                reads("scope_day") && !reads("scope_month") && reads("viewer_days"),
                "{sql}"
            ),
        }
        assert!(sql.ends_with(") AS v USING t ORDER BY t"), "{sql}");
    }
    let period = Period::window(sample_window(), Resolution::Day, Retention::KEEP_ALL);
    let sql = text(&trend_counts(&client(), &f, &period, Granularity::Week));
    assert!(
        sql.contains("toUInt32(toUInt32(toMonday(bucket)) * 86400) AS t"),
        "{sql}"
    );
    assert!(
        sql.contains("toUInt32(toUInt32(toMonday(occurred_at)) * 86400) AS t"),
        "{sql}"
    );
    assert!(sql.contains("GROUP BY t) AS c ANY LEFT JOIN"), "{sql}");
}

#[test]
fn distribution_reads_one_dimension() {
    let period = Period::window(sample_window(), Resolution::Day, Retention::KEEP_ALL);
    let org = Filter {
        org: Some("acme".into()),
        ..Filter::default()
    };
    let sql = text(&distribution(
        &client(),
        &org,
        &period,
        Dimension::ShareChannel,
    ));
    assert_eq!(
        sql.matches("WHERE org_id = 'acme' AND dimension = 'share_channel' AND bucket")
            .count(),
        5,
        "{sql}"
    );
    assert_eq!(
        sql.matches("WHERE org_id = 'acme' AND type = 'badge.shared'")
            .count(),
        2,
        "{sql}"
    );
    assert!(sql.contains("toString(share_channel) AS value"), "{sql}");
    assert!(
        sql.starts_with("SELECT value, countMerge(events) AS n"),
        "{sql}"
    );
    let sql = text(&distribution(
        &client(),
        &org,
        &period,
        Dimension::AwardMethod,
    ));
    assert!(
        sql.starts_with("SELECT value, uniqCombinedIfMerge(18)(assertions) AS n"),
        "{sql}"
    );
    // Rollups hold orgs only: an issuer reads its events.
    let issuer = Filter {
        issuer: Some("i1".into()),
        ..org
    };
    let sql = text(&distribution(
        &client(),
        &issuer,
        &period,
        Dimension::ViewCountry,
    ));
    assert!(
        !sql.contains("rollup_") && !sql.contains("UNION ALL"),
        "{sql}"
    );
    assert!(
        sql.contains("FROM bp_test.events WHERE org_id = 'acme' AND issuer_id = 'i1' AND type = 'badge.viewed' AND occurred_at >= "),
        "{sql}"
    );
}

#[test]
fn annotation_scopes() {
    let w = sample_window();
    let f = |issuer: Option<&str>, badge: Option<&str>| Filter {
        org: Some("acme".into()),
        issuer: issuer.map(Into::into),
        badge_class: badge.map(Into::into),
    };
    let sql = text(&annotations(&client(), &f(None, None), w, 10));
    assert!(sql.contains("WHERE org_id = 'acme' AND at >= "), "{sql}");
    assert!(sql.ends_with("ORDER BY at, id LIMIT 10"), "{sql}");
    let sql = text(&annotations(&client(), &f(Some("i1"), None), w, 10));
    assert!(
        sql.contains("AND (issuer_id = '' OR issuer_id = 'i1') AND at"),
        "{sql}"
    );
    let sql = text(&annotations(&client(), &f(None, Some("b1")), w, 10));
    assert!(sql.contains("AND (badge_class_id = '' OR badge_class_id = 'b1') AND (issuer_id = '' OR badge_class_id = 'b1') AND at"), "{sql}");
    let sql = text(&annotations(&client(), &f(Some("i1"), Some("b1")), w, 10));
    assert!(!sql.contains("(issuer_id = '' OR badge_class_id"), "{sql}");
    let sql = text(&annotations(&client(), &Filter::default(), w, 10));
    assert!(sql.contains(" WHERE at >= "), "{sql}");
}

#[test]
fn lifecycle_cohort_is_by_first_award() {
    let org = Filter {
        org: Some("acme".into()),
        ..Filter::default()
    };
    let sql = text(&lifecycle(&client(), &org, sample_window()));
    assert!(sql.contains(
        "WHERE aw_n > 0 AND aw >= toDateTime(1710025110, 'UTC') AND aw < toDateTime(1710205335, 'UTC')"
    ), "{sql}");
    // The cohort's days, day 0, and the assertions refiled into them, not
    // those refiled before them.
    assert!(sql.contains(
        "FROM bp_test.assertion_lifecycle WHERE org_id = 'acme' AND (awarded_on >= toDate(toDateTime(1710025110, 'UTC')) AND awarded_on <= toDate(toDateTime(1710205334, 'UTC')) OR awarded_on = toDate('1970-01-01') OR (awarded_on > toDate(toDateTime(1710205334, 'UTC')) AND (org_id, assertion_id) IN (SELECT org_id, assertion_id FROM bp_test.lifecycle_refiled WHERE org_id = 'acme' AND awarded_on >= "
    ), "{sql}");
    assert!(sql.contains(
        "AND (org_id, assertion_id) NOT IN (SELECT org_id, assertion_id FROM bp_test.lifecycle_refiled WHERE org_id = 'acme' AND awarded_on < toDate(toDateTime(1710025110, 'UTC'))) GROUP BY cityHash64(org_id, assertion_id))"
    ), "{sql}");
}

fn acme() -> Filter {
    Filter {
        org: Some("acme".into()),
        ..Filter::default()
    }
}

#[test]
fn insight_cohorts_read_each_assertion_once() {
    use super::cohorts::reach_counts;
    use super::impact::cohorts;
    use super::timing::slot_counts;
    use crate::model::cohorts::Stage;
    use crate::model::impact::Windows;
    let w = sample_window();
    // The cohort's award days only (what else push_cohort_rows adds is
    // checked in lifecycle_cohort_is_by_first_award).
    let per_assertion = |from: u32, last: u32| {
        format!(
            "FROM bp_test.assertion_lifecycle WHERE org_id = 'acme' AND (awarded_on >= toDate(toDateTime({from}, 'UTC')) \
             AND awarded_on <= toDate(toDateTime({last}, 'UTC')) OR awarded_on = toDate('1970-01-01')"
        )
    };
    let sql = text(&slot_counts(&client(), &acme(), w, 1_800, None));
    assert!(
        sql.starts_with(
            "SELECT toUInt32(intDiv(toUInt32(aw), 1800)) AS slot, count() AS n_awarded"
        ),
        "{sql}"
    );
    assert!(
        sql.contains("toInt64(ac) - toInt64(aw) <= 7776000) AS within_90d"),
        "{sql}"
    );
    assert!(sql.contains(&per_assertion(w.from(), w.to() - 1)), "{sql}");
    assert!(
        sql.ends_with(
            "WHERE aw_n > 0 AND aw >= toDateTime(1710025110, 'UTC') AND aw < toDateTime(1710205335, 'UTC') GROUP BY slot ORDER BY slot"
        ),
        "{sql}"
    );
    let sql = text(&reach_counts(
        &client(),
        &acme(),
        w,
        Granularity::Week,
        Stage::Viewed,
        None,
    ));
    assert!(
        sql.contains("toUInt32(toUInt32(toMonday(aw)) * 86400) AS cohort"),
        "{sql}"
    );
    assert!(
        sql.contains("toUInt8(ac_n > 0 AND sh_n > 0 AND vw_n > 0) AS reached, greatest(greatest(toUInt32(ac), toUInt32(sh)), toUInt32(vw)) AS reached_at"),
        "{sql}"
    );
    assert!(sql.contains(&per_assertion(w.from(), w.to() - 1)), "{sql}");
    let sql = text(&reach_counts(
        &client(),
        &acme(),
        w,
        Granularity::Month,
        Stage::Accepted,
        None,
    ));
    assert!(
        sql.contains("toStartOfMonth(toDateTime(reached_at, 'UTC'))"),
        "{sql}"
    );
    // Before [at − 2 d, at), after [at, now), cohorts up to now − 1 d.
    let at = 1_710_000_000;
    let windows = Windows::new(at, 2, 1, at + 86_400 * 3 / 2);
    let sql = text(&cohorts(&client(), &acme(), &windows, 1, None).expect("awards"));
    assert!(
        sql.contains("toInt64(ac) - toInt64(aw) <= 86400 AS acc"),
        "{sql}"
    );
    let (from, to) = (at - 2 * 86_400, at + 86_400 / 2 + 1);
    assert!(sql.contains(&per_assertion(from, to - 1)), "{sql}");
    assert!(
        sql.ends_with(&format!(
            "WHERE aw_n > 0 AND aw >= toDateTime({from}, 'UTC') AND aw < toDateTime({to}, 'UTC'))"
        )),
        "{sql}"
    );
    // Nothing awarded has had its horizon: no query.
    let windows = Windows::new(at, 2, 7, at + 86_400);
    assert!(cohorts(&client(), &acme(), &windows, 7, None).is_none());
}

#[test]
fn org_wide_insights_read_whole_days_sealed_and_the_day_pieces_from_rows() {
    use super::cohorts::reach_counts;
    use super::impact::cohorts;
    use super::timing::slot_counts;
    use crate::model::cohorts::Stage;
    use crate::model::impact::Windows;
    // 2024-03-09T22:58:30Z to 2024-03-12T01:02:15Z: whole days 10 and 11
    // March, a piece of the 9th and of the 12th.
    let w = sample_window();
    let (d10, d12) = (1_710_028_800, 1_710_201_600);
    let sealed = Unsealed::Named(Vec::new());
    let pieces = |sql: &str| {
        for (from, to) in [(w.from(), d10), (d12, w.to())] {
            assert!(
                sql.contains(&format!(
                    "WHERE aw_n > 0 AND aw >= toDateTime({from}, 'UTC') AND aw < toDateTime({to}, 'UTC')"
                )),
                "{sql}"
            );
        }
        let whole = format!(
            "FROM bp_test.lifecycle_days WHERE org_id = 'acme' AND day >= toDate(toDateTime({d10}, 'UTC')) \
             AND day < toDate(toDateTime({d12}, 'UTC')) GROUP BY org_id, day"
        );
        assert!(sql.contains(&whole), "{sql}");
    };
    let sql = text(&slot_counts(&client(), &acme(), w, 1_800, Some(&sealed)));
    pieces(&sql);
    assert!(
        sql.contains("ARRAY JOIN slot_keys AS k, slot_counts AS n"),
        "{sql}"
    );
    let sql = text(&reach_counts(
        &client(),
        &acme(),
        w,
        Granularity::Week,
        Stage::Shared,
        Some(&sealed),
    ));
    pieces(&sql);
    assert!(
        sql.contains("arrayFilter(p -> tupleElement(p, 1) % 4 = 2"),
        "{sql}"
    );
    // A slot finer than the sealed quarter hours reads every assertion.
    let sql = text(&slot_counts(&client(), &acme(), w, 60, Some(&sealed)));
    assert!(!sql.contains("lifecycle_days"), "{sql}");
    // An issuer's cohorts are counted from their assertions.
    let issuer = Filter {
        org: Some("acme".into()),
        issuer: Some("i1".into()),
        badge_class: None,
    };
    let sql = text(&slot_counts(&client(), &issuer, w, 1_800, Some(&sealed)));
    assert!(!sql.contains("lifecycle_days"), "{sql}");

    // Impact at noon, 3-day windows, horizon 1 day, now well after: the
    // before days are 2 whole days and a half day on each side, the after
    // days likewise.
    let at = d12 + 43_200;
    let windows = Windows::new(at, 3, 1, at + 30 * 86_400);
    let sql = text(&cohorts(&client(), &acme(), &windows, 1, Some(&sealed)).expect("awards"));
    let day = 86_400;
    assert!(
        sql.contains(&format!(
            "toUInt32(day) >= {} AND toUInt32(day) < {} AS b, toUInt32(day) >= {} AND toUInt32(day) < {} AS a",
            (d12 - 2 * day) / day,
            d12 / day,
            (d12 + day) / day,
            (d12 + 3 * day) / day
        )),
        "{sql}"
    );
    assert!(sql.contains("intDiv(k, 2) <= 1, c, 0)"), "{sql}");
    // The annotation's day is one piece.
    assert!(
        !sql.contains(&format!("WHERE aw_n > 0 AND aw >= toDateTime({at}, 'UTC')")),
        "{sql}"
    );
    for (from, to) in [
        (at - 3 * day, d12 - 2 * day),
        (d12, d12 + day),
        (d12 + 3 * day, at + 3 * day),
    ] {
        assert!(
            sql.contains(&format!(
                "WHERE aw_n > 0 AND aw >= toDateTime({from}, 'UTC') AND aw < toDateTime({to}, 'UTC')"
            )),
            "{sql}"
        );
    }
}

#[test]
fn an_annotation_is_looked_up_in_scope() {
    use super::impact::annotation;
    let f = Filter {
        org: Some("acme".into()),
        issuer: None,
        badge_class: Some("b1".into()),
    };
    let sql = text(&annotation(&client(), &f, "x' OR 1=1"));
    assert!(
        sql.contains(
            "WHERE id = 'x\\' OR 1=1' AND org_id = 'acme' AND (badge_class_id = '' OR badge_class_id = 'b1') AND (issuer_id = '' OR badge_class_id = 'b1')"
        ),
        "{sql}"
    );
    assert!(sql.ends_with("LIMIT 1"), "{sql}");
}

#[test]
fn peers_are_every_org_or_every_issuer() {
    use super::benchmark::peer_counts;
    use crate::model::benchmark::Level;
    let period = Period::window(sample_window(), Resolution::Day, Retention::KEEP_ALL);
    let sql = text(&peer_counts(&client(), Level::Org, &period));
    assert!(!sql.contains("org_id ="), "every org: {sql}");
    assert_eq!(
        sql.matches("WHERE scope_issuer_id = '' AND scope_badge_class_id = ''")
            .count(),
        3,
        "{sql}"
    );
    assert!(sql.ends_with("GROUP BY org_id, peer_issuer ORDER BY org_id, peer_issuer"));
    // Only the counts the rates need.
    assert!(
        sql.starts_with(
            "SELECT org_id, peer_issuer, uniqCombinedIfMerge(18)(awarded) AS awarded, \
             uniqCombinedIfMerge(18)(accepted) AS accepted, uniqCombinedIfMerge(18)(shared) AS shared, \
             countIfMerge(shares) AS shares, countIfMerge(views) AS views FROM ("
        ),
        "{sql}"
    );
    // ... and no branch reads or computes another measure.
    assert!(
        !sql.contains("revoked") && !sql.contains("classes"),
        "{sql}"
    );
    // Issuers: their badge classes' day rows, the hour edges from events.
    let sql = text(&peer_counts(&client(), Level::Issuer, &period));
    assert!(
        sql.contains("SELECT org_id, scope_issuer_id AS peer_issuer, awarded, accepted, shared, shares, views")
            && sql.contains("FROM bp_test.scope_day WHERE scope_issuer_id != '' AND scope_badge_class_id != '' AND scope_level = 2 AND scope_key = '' AND bucket"),
        "{sql}"
    );
    assert_eq!(
        sql.matches("SELECT org_id, issuer_id AS peer_issuer, ")
            .count(),
        2,
        "{sql}"
    );
    assert!(
        !sql.contains("revoked") && !sql.contains("classes"),
        "{sql}"
    );
}

#[test]
fn impact_window_counts_read_awards_shares_and_views_only() {
    use super::impact::window_counts;
    let (before, after) = (
        Period::window(sample_window(), Resolution::Day, Retention::KEEP_ALL),
        Period::window(sample_window(), Resolution::Hour, Retention::KEEP_ALL),
    );
    let sql = text(&window_counts(&client(), &acme(), Some(&before), Some(&after)).unwrap());
    for other in [" accepted", " shared", " revoked", " classes"] {
        assert!(!sql.contains(other), "{other}: {sql}");
    }
    // Both windows' rows and raw pieces name the same three states.
    let rows = sql
        .matches(" AS side, awarded, shares, views FROM ")
        .count();
    let raw = sql
        .matches(
            " AS side, uniqCombinedIfState(18)(assertion_id, type = 'badge.awarded') AS awarded, \
             countIfState(type = 'badge.shared') AS shares, countIfState(type = 'badge.viewed') AS views FROM bp_test.events",
        )
        .count();
    assert!(
        rows >= 2 && raw >= 2,
        "{rows} row and {raw} raw branches: {sql}"
    );
    assert!(window_counts(&client(), &acme(), None, None).is_none());
}
