//! The CSV table of every analytics answer (SPEC §8 `format=csv`): which
//! columns, one row per what.

use super::csv::{Cell, Table, Tabular};
use crate::analytics::annotations::Annotations;
use crate::analytics::benchmark::Benchmark;
use crate::analytics::cohorts::Cohorts;
use crate::analytics::distribution::Distribution;
use crate::analytics::impact::Impact;
use crate::analytics::lifecycle::Lifecycle;
use crate::analytics::overview::Overview;
use crate::analytics::performance_drivers::Drivers;
use crate::analytics::scopes::Scopes;
use crate::analytics::timing::Timing;
use crate::analytics::top_badges::TopBadges;
use crate::analytics::trends::Trends;
use crate::analytics::Body;
use crate::model::measures::NAMES;
use crate::model::performance_drivers as drivers;
use crate::model::window::rfc3339_i64;

impl Tabular for Body {
    fn csv_name(&self) -> &'static str {
        self.tabular().csv_name()
    }

    fn table(&self) -> Table {
        self.tabular().table()
    }
}

impl Tabular for Overview {
    fn csv_name(&self) -> &'static str {
        "overview"
    }

    fn table(&self) -> Table {
        let mut t = Table::new([
            "metric",
            "kpi",
            "period_value",
            "current",
            "previous",
            "change",
        ]);
        for (name, trend) in &self.trends.0 {
            t.push(vec![
                Cell::text(*name),
                self.kpis.get(name).into(),
                self.period_values.get(name).into(),
                trend.current.into(),
                trend.previous.into(),
                Cell::opt(trend.change),
            ]);
        }
        t
    }
}

impl Tabular for Distribution {
    fn csv_name(&self) -> &'static str {
        "distribution"
    }

    fn table(&self) -> Table {
        let mut t = Table::new(["value", "count", "share"]);
        for r in &self.rows {
            t.push(vec![
                Cell::text(&r.value),
                Cell::Count(r.count),
                Cell::opt(r.share),
            ]);
        }
        t
    }
}

impl Tabular for TopBadges {
    fn csv_name(&self) -> &'static str {
        "top-badges"
    }

    fn table(&self) -> Table {
        let mut header = vec!["org_id", "badge_class_id", "name"];
        header.extend(NAMES);
        header.push("low_sample");
        let mut t = Table::new(header);
        for r in &self.rows {
            let mut row = vec![
                Cell::text(&r.org_id),
                Cell::text(&r.badge_class_id),
                Cell::text(&r.name),
            ];
            row.extend(NAMES.iter().map(|n| Cell::from(r.measures.get(n))));
            row.push(Cell::Bool(r.low_sample));
            t.push(row);
        }
        t
    }
}

impl Tabular for Trends {
    fn csv_name(&self) -> &'static str {
        "trends"
    }

    fn table(&self) -> Table {
        let mut header = vec!["t"];
        header.extend(self.metrics.iter().copied());
        let mut t = Table::new(header);
        for (b, v) in self.buckets.iter().zip(&self.values) {
            let mut row = vec![Cell::text(rfc3339_i64(*b))];
            row.extend(self.metrics.iter().map(|m| Cell::from(v.get(m))));
            t.push(row);
        }
        t
    }
}

impl Tabular for Drivers {
    fn csv_name(&self) -> &'static str {
        "drivers"
    }

    /// One row per attribute: each group's fields, then lift and p-value
    /// of each measure.
    fn table(&self) -> Table {
        const GROUP: [&str; 7] = [
            "badge_classes",
            "awarded",
            "engagement_score",
            "reach_score",
            "acceptance_rate",
            "share_rate",
            "external_impact_score",
        ];
        let mut header = vec!["attribute".to_owned()];
        for side in ["with", "without"] {
            header.extend(GROUP.iter().map(|f| format!("{side}_{f}")));
        }
        for kind in ["lift", "p_value"] {
            header.extend(drivers::MEASURES.iter().map(|(m, _)| format!("{kind}_{m}")));
        }
        let mut t = Table::new(header);
        for d in &self.analysis.drivers {
            let mut row = vec![Cell::text(&d.attribute)];
            for g in [&d.with, &d.without] {
                row.extend([
                    Cell::Count(g.badge_classes),
                    Cell::Count(g.awarded),
                    Cell::opt(g.engagement_score),
                    Cell::opt(g.reach_score),
                    Cell::opt(g.acceptance_rate),
                    Cell::opt(g.share_rate),
                    Cell::opt(g.external_impact_score),
                ]);
            }
            for per in [&d.lift, &d.p_value] {
                row.extend(drivers::MEASURES.iter().map(|(m, _)| Cell::opt(per.get(m))));
            }
            t.push(row);
        }
        t
    }
}

impl Tabular for Lifecycle {
    fn csv_name(&self) -> &'static str {
        "lifecycle"
    }

    /// The stages, each with the median hours from the previous stage.
    fn table(&self) -> Table {
        let mut t = Table::new([
            "stage",
            "count",
            "conversion",
            "drop_off",
            "median_hours_from_previous",
        ]);
        let m = self.median_hours;
        let medians = [None, m.award_to_accept, m.accept_to_share, m.share_to_view];
        for (s, median) in self.stages.iter().zip(medians) {
            t.push(vec![
                Cell::text(s.stage),
                Cell::Count(s.count),
                Cell::opt(s.conversion),
                Cell::opt(s.drop_off),
                Cell::opt(median),
            ]);
        }
        t
    }
}

impl Tabular for Annotations {
    fn csv_name(&self) -> &'static str {
        "annotations"
    }

    fn table(&self) -> Table {
        let mut t = Table::new([
            "id",
            "at",
            "title",
            "text",
            "org",
            "issuer",
            "badge_class",
            "created_at",
        ]);
        for a in &self.annotations {
            t.push(vec![
                Cell::text(&a.id),
                Cell::text(&a.at),
                Cell::text(&a.title),
                Cell::text(&a.text),
                Cell::text(&a.org),
                Cell::opt_text(a.issuer.as_deref()),
                Cell::opt_text(a.badge_class.as_deref()),
                Cell::text(&a.created_at),
            ]);
        }
        t
    }
}

impl Tabular for Impact {
    fn csv_name(&self) -> &'static str {
        "impact"
    }

    /// One row per measure.
    fn table(&self) -> Table {
        let mut t = Table::new([
            "measure",
            "before",
            "after",
            "change",
            "p_value",
            "significant",
        ]);
        for m in &self.measures {
            t.push(vec![
                Cell::text(m.measure),
                Cell::opt(m.before),
                Cell::opt(m.after),
                Cell::opt(m.change),
                Cell::opt(m.p_value),
                Cell::Bool(m.significant),
            ]);
        }
        t
    }
}

impl Tabular for Timing {
    fn csv_name(&self) -> &'static str {
        "timing"
    }

    /// The 7 weekdays (`group` = `weekday`, no hour), the 24 hours
    /// (`hour`, no weekday), then the non-empty cells (`cell`).
    fn table(&self) -> Table {
        let mut t = Table::new(["group", "weekday", "hour", "awarded", "acceptance_rate"]);
        let a = &self.analysis;
        for r in &a.by_weekday {
            t.push(vec![
                Cell::text("weekday"),
                Cell::Count(u64::from(r.weekday)),
                Cell::Null,
                Cell::Count(r.awarded),
                Cell::opt(r.acceptance_rate),
            ]);
        }
        for r in &a.by_hour {
            t.push(vec![
                Cell::text("hour"),
                Cell::Null,
                Cell::Count(u64::from(r.hour)),
                Cell::Count(r.awarded),
                Cell::opt(r.acceptance_rate),
            ]);
        }
        for c in &a.cells {
            t.push(vec![
                Cell::text("cell"),
                Cell::Count(u64::from(c.weekday)),
                Cell::Count(u64::from(c.hour)),
                Cell::Count(c.awarded),
                Cell::opt(c.acceptance_rate),
            ]);
        }
        t
    }
}

impl Tabular for Cohorts {
    fn csv_name(&self) -> &'static str {
        "cohorts"
    }

    /// One row per cohort: `cohort`, `size`, then `age_0` … up to the
    /// longest triangle row (empty where a cohort has no such age, or it
    /// is still running).
    fn table(&self) -> Table {
        let ages = self
            .cohorts
            .iter()
            .map(|c| c.values.len())
            .max()
            .unwrap_or(0);
        let mut header = vec!["cohort".to_owned(), "size".to_owned()];
        header.extend((0..ages).map(|k| format!("age_{k}")));
        let mut t = Table::new(header);
        for c in &self.cohorts {
            let mut row = vec![Cell::text(&c.cohort), Cell::Count(c.size)];
            row.extend((0..ages).map(|k| Cell::opt(c.values.get(k).copied().flatten())));
            t.push(row);
        }
        t
    }
}

impl Tabular for Benchmark {
    fn csv_name(&self) -> &'static str {
        "benchmark"
    }

    /// One row per measure.
    fn table(&self) -> Table {
        let mut t = Table::new([
            "measure",
            "value",
            "peers",
            "percentile",
            "p25",
            "median",
            "p75",
            "reason",
        ]);
        for m in &self.measures {
            t.push(vec![
                Cell::text(m.measure),
                Cell::opt(m.value),
                Cell::Count(m.peers),
                Cell::opt(m.percentile),
                Cell::opt(m.p25),
                Cell::opt(m.median),
                Cell::opt(m.p75),
                Cell::opt_text(m.reason.as_deref()),
            ]);
        }
        t
    }
}

impl Body {
    fn tabular(&self) -> &dyn Tabular {
        match self {
            Body::Overview(b) => b,
            Body::Trends(b) => b,
            Body::Distribution(b) => b,
            Body::TopBadges(b) => b,
            Body::Drivers(b) => b,
            Body::Lifecycle(b) => b,
            Body::Impact(b) => b,
            Body::Timing(b) => b,
            Body::Cohorts(b) => b,
            Body::Benchmark(b) => b,
        }
    }
}

impl Tabular for Scopes {
    fn csv_name(&self) -> &'static str {
        "scopes"
    }

    /// One row per org, issuer and badge class; `level` says which, the
    /// ids of the levels above it are filled in.
    fn table(&self) -> Table {
        let mut t = Table::new([
            "level",
            "org_id",
            "issuer_id",
            "badge_class_id",
            "name",
            "awarded",
        ]);
        for o in &self.orgs {
            t.push(vec![
                Cell::text("org"),
                Cell::text(&o.org_id),
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Count(o.awarded),
            ]);
        }
        for i in &self.issuers {
            t.push(vec![
                Cell::text("issuer"),
                Cell::text(&i.org_id),
                Cell::text(&i.issuer_id),
                Cell::Null,
                Cell::Null,
                Cell::Count(i.awarded),
            ]);
        }
        for b in &self.badge_classes {
            t.push(vec![
                Cell::text("badge_class"),
                Cell::text(&b.org_id),
                Cell::text(&b.issuer_id),
                Cell::text(&b.badge_class_id),
                Cell::opt_text(b.name.as_deref()),
                Cell::Count(b.awarded),
            ]);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::trends::{fill, TrendRequest};
    use crate::db::counts::TrendRow;
    use crate::model::scope::Filter;
    use crate::model::window::{parse_time, Granularity, Window};

    fn t(s: &str) -> u32 {
        parse_time("t", s).unwrap()
    }

    #[test]
    fn a_trend_is_one_row_per_bucket_and_a_column_per_metric() {
        let w = Window::new(t("2024-03-01T10:30:00Z"), t("2024-03-01T13:00:01Z")).unwrap();
        let req =
            TrendRequest::new(w, Granularity::Hour, vec!["awarded", "acceptance_rate"]).unwrap();
        let row = |at: &str, awarded, accepted| TrendRow {
            t: t(at),
            awarded,
            accepted,
            shared: 0,
            shares: 0,
            views: 0,
            unique_viewers: 0,
            revoked: 0,
            badge_classes: 1,
        };
        let values = fill(
            &req.buckets,
            &[
                row("2024-03-01T10:00:00Z", 4, 2),
                row("2024-03-01T12:00:00Z", 1, 1),
            ],
        );
        let trends = Trends {
            scope: Filter::default(),
            period: w.into(),
            granularity: req.granularity,
            metrics: req.metrics.clone(),
            buckets: req.buckets.clone(),
            values,
            annotations: Vec::new(),
        };
        assert_eq!(
            trends.table().to_csv(),
            "t,awarded,acceptance_rate\r\n2024-03-01T10:00:00Z,4,0.5\r\n2024-03-01T11:00:00Z,0,\r\n\
             2024-03-01T12:00:00Z,1,1\r\n2024-03-01T13:00:00Z,0,\r\n"
        );
    }
}
