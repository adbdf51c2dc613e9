//! Every query family with representative parameters, for the test that
//! runs each statement on every ClickHouse generation and for
//! `badgepulse-exporter print-queries`.

use clickhouse::query::Query;
use clickhouse::Client;

use super::annotations::annotations;
use super::award_days::{unsealed, Unsealed, UnsealedDay};
use super::badge_classes::badge_classes;
use super::benchmark::peer_counts;
use super::cohorts::reach_counts;
use super::counts::{class_counts, measure_counts, trend_counts};
use super::distribution::distribution;
use super::impact::{annotation, cohorts, window_counts};
use super::lifecycle::lifecycle;
use super::scopes::scopes as scope_list;
use super::store::tables_present;
use super::timing::slot_counts;
use super::totals::{dimension_totals, issuer_totals, lifecycle_totals};
use crate::model::benchmark::Level;
use crate::model::cohorts::{Stage, GRANULARITIES};
use crate::model::impact::Windows;
use crate::model::measures::Dimension;
use crate::model::scope::Filter;
use crate::model::tiers::{Period, Resolution, Retention};
use crate::model::window::{Granularity, Window};

/// A window cutting through day, hour and minute boundaries:
/// 2024-03-09T22:58:30Z to 2024-03-12T01:02:15Z.
pub const SAMPLE_WINDOW: (u32, u32) = (1_710_025_110, 1_710_205_335);

/// A program update in the middle of the compatibility test's data
/// (2026-03-02T00:00:00Z), and a "now" a week later.
pub const IMPACT_AT: u32 = 1_772_409_600;
pub const SAMPLE_NOW: u32 = IMPACT_AT + 8 * 86_400;

/// A window cutting through day, hour and minute boundaries around the
/// compatibility test's data (2026-03-01 to 2026-03-03):
/// 2026-02-28T22:58:30Z to 2026-03-03T01:02:15Z.
pub const DATA_WINDOW: (u32, u32) = (1_772_319_510, 1_772_499_735);

/// Every query the exporter can issue, built with representative
/// parameters (each scope kind, all-time and windows through every source,
/// every granularity and dimension, rollups kept and expired), named for
/// test output. Used by the compatibility tests that run each statement
/// on ClickHouse 18.16 and on current ClickHouse (chDB).
pub fn sample_queries(client: &Client) -> Vec<(String, Query)> {
    let id = |s: &str| Some(s.to_owned());
    let scopes = [
        ("all_orgs", Filter::default()),
        (
            "org",
            Filter {
                org: id("acme"),
                ..Filter::default()
            },
        ),
        (
            "issuer",
            Filter {
                org: id("acme"),
                issuer: id("i1"),
                badge_class: None,
            },
        ),
        (
            "badge",
            Filter {
                org: id("acme"),
                issuer: None,
                badge_class: id("rust"),
            },
        ),
        (
            "issuer_badge",
            Filter {
                org: id("acme"),
                issuer: id("i1"),
                badge_class: id("rust"),
            },
        ),
        (
            "quoting",
            Filter {
                org: id("o'rg\\x"),
                ..Filter::default()
            },
        ),
    ];
    let kept = Retention::KEEP_ALL;
    // Every minute and hour bucket expired: those pieces come from `events`.
    let expired = Retention {
        minute_from: u32::MAX,
        hour_from: u32::MAX,
    };
    let cross = Window::new(SAMPLE_WINDOW.0, SAMPLE_WINDOW.1).expect("valid sample window");
    let data = Window::new(DATA_WINDOW.0, DATA_WINDOW.1).expect("valid data window");
    let day = Resolution::Day;
    let periods = [
        ("all_time", Period::AllTime),
        ("window", Period::window(cross, day, kept)),
        (
            "previous_window",
            Period::window(cross.previous().expect("after the epoch"), day, kept),
        ),
        // Inside one minute: raw events only.
        (
            "seconds",
            Period::window(
                Window::new(1_710_025_110, 1_710_025_140).expect("valid"),
                day,
                kept,
            ),
        ),
        // Whole days only.
        (
            "days",
            Period::window(
                Window::new(1_709_251_200, 1_711_929_600).expect("valid"),
                day,
                kept,
            ),
        ),
        ("data", Period::window(data, day, kept)),
        ("data_expired", Period::window(data, day, expired)),
    ];
    let mut out = Vec::new();
    for (scope_name, filter) in &scopes {
        for (period_name, period) in &periods {
            out.push((
                format!("measure_counts.{scope_name}.{period_name}"),
                measure_counts(client, filter, period),
            ));
        }
        for (period_name, period) in [
            ("data", Period::window(data, day, kept)),
            ("data_expired", Period::window(data, day, expired)),
        ] {
            out.push((
                format!("class_counts.{scope_name}.{period_name}"),
                class_counts(client, filter, &period),
            ));
        }
        out.push((
            format!("badge_classes.{scope_name}"),
            badge_classes(client, filter),
        ));
        out.push((format!("scopes.{scope_name}"), scope_list(client, filter)));
        for dimension in Dimension::ALL {
            out.push((
                format!("distribution.{}.{scope_name}", dimension.as_str()),
                distribution(client, filter, &Period::window(data, day, kept), dimension),
            ));
        }
        for granularity in Granularity::ALL {
            for (retention_name, retention) in [("kept", kept), ("expired", expired)] {
                out.push((
                    format!(
                        "trend_counts.{}.{scope_name}.{retention_name}",
                        granularity.as_str()
                    ),
                    trend_counts(
                        client,
                        filter,
                        &Period::window(data, granularity.coarsest_resolution(), retention),
                        granularity,
                    ),
                ));
            }
        }
        out.push((
            format!("lifecycle.{scope_name}"),
            lifecycle(client, filter, data),
        ));
        out.push((
            format!("annotations.{scope_name}"),
            annotations(client, filter, data, 1000),
        ));
        out.push((
            format!("impact_annotation.{scope_name}"),
            annotation(client, filter, "0190a0b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b"),
        ));
        let (before, after) = (
            Period::window(data, day, kept),
            Period::window(data, Resolution::Hour, kept),
        );
        for (name, periods) in [
            ("both", (Some(&before), Some(&after))),
            ("before", (Some(&before), None)),
        ] {
            out.push((
                format!("impact_window_counts.{scope_name}.{name}"),
                window_counts(client, filter, periods.0, periods.1).expect("a window"),
            ));
        }
        // The org-wide cohorts read the award days, whose unsealed days
        // are counted from rows the query lists itself, from days it names,
        // or not at all (every day sealed); without a list, from the rows.
        let named = Unsealed::Named(vec![UnsealedDay {
            org_id: "acme".into(),
            day: IMPACT_AT / 86_400,
        }]);
        let none_named = Unsealed::Named(Vec::new());
        let unsealed = [
            ("counted", None),
            ("named", Some(&named)),
            ("sealed", Some(&none_named)),
            ("listed", Some(&Unsealed::TooMany)),
        ];
        for (days, unsealed) in unsealed {
            for (name, windows, horizon) in [
                ("data", Windows::new(IMPACT_AT, 2, 1, SAMPLE_NOW), 1),
                ("cut", Windows::new(IMPACT_AT, 28, 7, IMPACT_AT + 86_400), 7),
            ] {
                out.push((
                    format!("impact_cohorts.{scope_name}.{name}.{days}"),
                    cohorts(client, filter, &windows, horizon, unsealed).expect("awards"),
                ));
            }
            for slot in [3_600, 1_800] {
                out.push((
                    format!("timing_slots.{scope_name}.{slot}.{days}"),
                    slot_counts(client, filter, data, slot, unsealed),
                ));
            }
            for granularity in GRANULARITIES {
                for stage in Stage::ALL {
                    out.push((
                        format!(
                            "cohort_reach.{}.{}.{scope_name}.{days}",
                            granularity.as_str(),
                            stage.as_str()
                        ),
                        reach_counts(client, filter, data, granularity, stage, unsealed),
                    ));
                }
            }
        }
    }
    out.push((
        "peer_counts.org.all_time".into(),
        peer_counts(client, Level::Org, &Period::AllTime),
    ));
    for level in [Level::Org, Level::Issuer] {
        for (retention_name, retention) in [("kept", kept), ("expired", expired)] {
            out.push((
                format!("peer_counts.{}.{retention_name}", level.as_str()),
                peer_counts(client, level, &Period::window(data, day, retention)),
            ));
        }
    }
    out.push(("issuer_totals".into(), issuer_totals(client, 100, 500)));
    out.push((
        "issuer_totals.tight_limits".into(),
        issuer_totals(client, 1, 1),
    ));
    out.push(("dimension_totals".into(), dimension_totals(client, 100)));
    out.push((
        "dimension_totals.tight_limits".into(),
        dimension_totals(client, 1),
    ));
    out.push(("unsealed_days".into(), unsealed(client, None)));
    out.push(("unsealed_days.org".into(), unsealed(client, Some("acme"))));
    for (days, unsealed) in [
        (
            "named",
            Unsealed::Named(vec![UnsealedDay {
                org_id: "acme".into(),
                day: IMPACT_AT / 86_400,
            }]),
        ),
        ("sealed", Unsealed::Named(Vec::new())),
        ("listed", Unsealed::TooMany),
    ] {
        out.push((
            format!("lifecycle_totals.{days}"),
            lifecycle_totals(client, 100, &unsealed),
        ));
        out.push((
            format!("lifecycle_totals.tight_limits.{days}"),
            lifecycle_totals(client, 1, &unsealed),
        ));
    }
    out.push(("tables_present".into(), tables_present(client)));
    out
}
