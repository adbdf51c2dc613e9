//! The analytics of SPEC §7 as data: one async function per endpoint of
//! SPEC §8 returning a typed body that serialises to the endpoint's JSON
//! and converts to a CSV [`Table`]. HTTP handlers (`http.rs`) and any
//! other renderer (charts, reports) call these with an already authorised
//! [`Filter`] and validated parameters.
//!
//! Pure shaping (shares, ranking, bucket filling, lifecycle math) lives in
//! small functions here with unit tests; the drivers analysis in
//! `drivers.rs`; no SQL and no HTTP types here.

use std::collections::HashMap;
use std::sync::Arc;

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use crate::cache::Deps;
use crate::csv::{Cell, Table, Tabular};
use crate::drivers;
use crate::measures::{self, Counts, Dimension, Measures, Trend, Value, NAMES};
use crate::queries::{AnnotationRow, DistributionRow, Filter, LifecycleRow, Period, TrendRow};
use crate::store::{Store, StoreError};
use crate::views::Views;
use crate::window::{
    buckets, rfc3339, rfc3339_i64, Granularity, Retention, Source, Window, WindowSpec,
};

/// Most buckets of one trend series.
pub const MAX_BUCKETS: usize = 5_000;

/// Most annotations listed (and shown with a trend) by default, and at
/// most.
pub const DEFAULT_ANNOTATIONS: u64 = 1_000;
pub const MAX_ANNOTATIONS: u64 = 10_000;

/// The value shown for views without a known country.
pub const UNKNOWN_COUNTRY: &str = "unknown";

/// What the analytics need from `[exporter]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Top badges: fewer awards in the window → `low_sample`.
    pub min_awarded: u64,
    /// Retention of `rollup_minute`, days (as the aggregator's).
    pub rollup_minute_days: u32,
    /// Retention of `rollup_hour`, days (as the aggregator's).
    pub rollup_hour_days: u32,
}

impl Settings {
    pub fn from_config(e: &crate::config::ExporterConfig) -> Settings {
        Settings {
            min_awarded: e.min_awarded,
            rollup_minute_days: e.rollup_minute_days,
            rollup_hour_days: e.rollup_hour_days,
        }
    }
}

/// The analytics over one ClickHouse store.
#[derive(Clone)]
pub struct Analytics {
    store: Store,
    settings: Settings,
    /// Whole answers kept up to date; `None`: computed for each request.
    views: Option<Arc<Views>>,
    /// False for a request that asked for fresh data (`Cache-Control:
    /// no-cache`).
    read_cache: bool,
}

/// What one analytics endpoint is asked, besides scope and window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    Overview,
    Distribution(Dimension),
    TopBadges(Ranking),
    Trends {
        granularity: Granularity,
        metrics: Vec<&'static str>,
    },
    Drivers,
    Lifecycle,
}

/// The body of any analytics endpoint.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum Body {
    Overview(Overview),
    Trends(Trends),
    Distribution(Distribution),
    TopBadges(TopBadges),
    Drivers(Drivers),
    Lifecycle(Lifecycle),
}

impl Tabular for Body {
    fn csv_name(&self) -> &'static str {
        self.tabular().csv_name()
    }

    fn table(&self) -> Table {
        self.tabular().table()
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
        }
    }
}

/// An answer and when it was computed (Unix milliseconds): the same
/// answer may be served for a while (`views.rs`).
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub body: Body,
    pub computed_at_ms: i64,
}

/// `{"from", "to"}` of the window answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeriodJson {
    pub from: String,
    pub to: String,
}

impl From<Window> for PeriodJson {
    fn from(w: Window) -> Self {
        PeriodJson {
            from: w.from_rfc3339(),
            to: w.to_rfc3339(),
        }
    }
}

fn now() -> u32 {
    u32::try_from(chrono::Utc::now().timestamp().max(0)).unwrap_or(u32::MAX)
}

/// The measure called `name` (one of [`NAMES`]), as a `'static` name.
pub fn metric(name: &str) -> Option<&'static str> {
    NAMES.iter().find(|n| **n == name).copied()
}

impl Analytics {
    pub fn new(store: Store, settings: Settings) -> Self {
        Analytics {
            store,
            settings,
            views: None,
            read_cache: true,
        }
    }

    /// These analytics keeping whole answers up to date in `views`.
    pub fn with_views(mut self, views: Arc<Views>) -> Self {
        self.views = Some(views);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// These analytics reading ClickHouse even where the result cache holds
    /// an answer (which they refresh).
    pub fn bypassing_cache(&self) -> Analytics {
        Analytics {
            store: self.store.bypassing_cache(),
            read_cache: false,
            ..self.clone()
        }
    }

    /// The answer to `question` for `filter` and `window`: kept up to date
    /// in the views if there are any (see `views.rs` for how fresh it is),
    /// else computed now.
    pub async fn answer(
        &self,
        filter: &Filter,
        window: WindowSpec,
        question: Question,
    ) -> Result<Answer, StoreError> {
        let Some(views) = &self.views else {
            return self.compute(filter, window, &question).await;
        };
        let key = format!("answer\n{question:?}\n{filter:?}\n{window:?}");
        // Distributions and trends read the window only; any commit of the
        // org may touch the others (all-time tiles, badge-class metadata,
        // a cohort's later stages). The answer's own queries are cached
        // with their exact spans, so a refresh re-reads only those touched.
        let org = filter.org.as_deref();
        let deps = match question {
            Question::Distribution(_) | Question::Trends { .. } => {
                let (from, to) = window.reach();
                Deps::span(org, from, to)
            }
            _ => Deps::all_time(org),
        };
        // Without the views: computing needs none, and the views keep this
        // closure (no reference cycle).
        let analytics = Analytics {
            views: None,
            ..self.clone()
        };
        let filter = filter.clone();
        views
            .answer(
                key,
                deps,
                window.up_to_now(),
                self.read_cache,
                move |read| {
                    let analytics = if read {
                        analytics.reading_cache()
                    } else {
                        analytics.bypassing_cache()
                    };
                    let (filter, question) = (filter.clone(), question.clone());
                    Box::pin(async move { analytics.compute(&filter, window, &question).await })
                },
            )
            .await
    }

    /// These analytics reading the result cache (undoes
    /// [`Analytics::bypassing_cache`]).
    fn reading_cache(&self) -> Analytics {
        Analytics {
            store: self.store.reading_cache(),
            read_cache: true,
            ..self.clone()
        }
    }

    /// Computes the answer to `question` with `window` resolved now.
    async fn compute(
        &self,
        filter: &Filter,
        window: WindowSpec,
        question: &Question,
    ) -> Result<Answer, StoreError> {
        let computed_at_ms = chrono::Utc::now().timestamp_millis();
        let window = window.at(now()).map_err(StoreError::Request)?;
        let body = match question {
            Question::Overview => Body::Overview(self.overview(filter, window).await?),
            Question::Distribution(dimension) => {
                Body::Distribution(self.distribution(filter, window, *dimension).await?)
            }
            Question::TopBadges(ranking) => {
                Body::TopBadges(self.top_badges(filter, window, *ranking).await?)
            }
            Question::Trends {
                granularity,
                metrics,
            } => {
                let request = TrendRequest::new(window, *granularity, metrics.clone())
                    .map_err(StoreError::Request)?;
                Body::Trends(self.trends(filter, window, request).await?)
            }
            Question::Drivers => Body::Drivers(self.drivers(filter, window).await?),
            Question::Lifecycle => Body::Lifecycle(self.lifecycle(filter, window).await?),
        };
        Ok(Answer {
            body,
            computed_at_ms,
        })
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// `window` decomposed from `coarsest` down, with the rollup retention
    /// as of now.
    fn period(&self, window: Window, coarsest: Source) -> Period {
        let s = self.settings;
        Period::window(
            window,
            coarsest,
            Retention::at(now(), s.rollup_minute_days, s.rollup_hour_days),
        )
    }

    /// SPEC §7.1.
    pub async fn overview(&self, filter: &Filter, window: Window) -> Result<Overview, StoreError> {
        let current_period = self.period(window, Source::Day);
        let previous_period = window.previous().map(|p| self.period(p, Source::Day));
        let previous = async {
            match &previous_period {
                Some(p) => self.store.measure_counts(filter, p).await,
                None => Ok(Counts::default()),
            }
        };
        let (all_time, current, previous) = tokio::try_join!(
            self.store.measure_counts(filter, &Period::AllTime),
            self.store.measure_counts(filter, &current_period),
            previous,
        )?;
        let current = Measures::derive(current);
        let previous = Measures::derive(previous);
        Ok(Overview {
            scope: filter.clone(),
            period: window.into(),
            kpis: Measures::derive(all_time),
            trends: Indicators(measures::trends(&current, &previous)),
            period_values: current,
        })
    }

    /// SPEC §7.2.
    pub async fn distribution(
        &self,
        filter: &Filter,
        window: Window,
        dimension: Dimension,
    ) -> Result<Distribution, StoreError> {
        let rows = self
            .store
            .distribution(filter, &self.period(window, Source::Day), dimension)
            .await?;
        Ok(Distribution {
            scope: filter.clone(),
            period: window.into(),
            dimension: dimension.as_str(),
            rows: distribution_rows(rows, dimension),
        })
    }

    /// SPEC §7.3.
    pub async fn top_badges(
        &self,
        filter: &Filter,
        window: Window,
        ranking: Ranking,
    ) -> Result<TopBadges, StoreError> {
        let period = self.period(window, Source::Day);
        let (counts, meta) = tokio::try_join!(
            self.store.class_counts(filter, &period),
            self.store.badge_classes(filter),
        )?;
        let names: HashMap<(String, String), String> = meta
            .into_iter()
            .map(|m| ((m.org_id, m.badge_class_id), m.name))
            .collect();
        let min_awarded = self.settings.min_awarded;
        let rows = counts
            .into_iter()
            .map(|c| {
                let measures = Measures::derive(c.counts());
                let name = names
                    .get(&(c.org_id.clone(), c.badge_class_id.clone()))
                    .cloned()
                    .unwrap_or_default();
                BadgeRow {
                    org_id: c.org_id,
                    badge_class_id: c.badge_class_id,
                    name,
                    low_sample: measures.counts.awarded < min_awarded,
                    measures,
                }
            })
            .collect();
        Ok(TopBadges {
            scope: filter.clone(),
            period: window.into(),
            sort: ranking.sort,
            order: ranking.order,
            min_awarded,
            rows: rank(rows, ranking),
        })
    }

    /// SPEC §7.4.
    pub async fn trends(
        &self,
        filter: &Filter,
        window: Window,
        request: TrendRequest,
    ) -> Result<Trends, StoreError> {
        let period = self.period(window, request.granularity.source());
        let (rows, annotations) = tokio::try_join!(
            self.store
                .trend_counts(filter, &period, request.granularity),
            self.store.annotations(filter, window, DEFAULT_ANNOTATIONS),
        )?;
        let values = fill(&request.buckets, &rows);
        Ok(Trends {
            scope: filter.clone(),
            period: window.into(),
            granularity: request.granularity,
            metrics: request.metrics,
            buckets: request.buckets,
            values,
            annotations: annotations.into_iter().map(Annotation::from).collect(),
        })
    }

    /// SPEC §7.5.
    pub async fn drivers(&self, filter: &Filter, window: Window) -> Result<Drivers, StoreError> {
        let period = self.period(window, Source::Day);
        let (counts, meta) = tokio::try_join!(
            self.store.class_counts(filter, &period),
            self.store.badge_classes(filter),
        )?;
        let counts: HashMap<(String, String), Counts> = counts
            .into_iter()
            .map(|c| {
                let n = c.counts();
                ((c.org_id, c.badge_class_id), n)
            })
            .collect();
        let (attributes, classes) = drivers::inputs(&meta, &counts);
        Ok(Drivers {
            scope: filter.clone(),
            period: window.into(),
            analysis: drivers::analyse(&attributes, &classes),
        })
    }

    /// SPEC §7.6.
    pub async fn lifecycle(
        &self,
        filter: &Filter,
        window: Window,
    ) -> Result<Lifecycle, StoreError> {
        let row = self.store.lifecycle(filter, window).await?;
        let (stages, median_hours) = lifecycle_of(&row);
        Ok(Lifecycle {
            scope: filter.clone(),
            period: window.into(),
            stages,
            median_hours,
        })
    }

    /// The annotations in scope with `at` in the window.
    pub async fn annotations(
        &self,
        filter: &Filter,
        window: Window,
        limit: u64,
    ) -> Result<Annotations, StoreError> {
        let rows = self.store.annotations(filter, window, limit).await?;
        Ok(Annotations {
            scope: filter.clone(),
            period: window.into(),
            annotations: rows.into_iter().map(Annotation::from).collect(),
        })
    }

    /// Stores a new annotation for `target` (an authorised scope with an
    /// org) and returns it.
    pub async fn create_annotation(
        &self,
        target: &Filter,
        new: NewAnnotation,
    ) -> Result<Annotation, StoreError> {
        let row = AnnotationRow {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: target.org.clone().unwrap_or_default(),
            issuer_id: target.issuer.clone().unwrap_or_default(),
            badge_class_id: target.badge_class.clone().unwrap_or_default(),
            at: new.at,
            title: new.title,
            text: new.text,
            created_at: now(),
        };
        self.store.insert_annotation(&row).await?;
        Ok(Annotation::from(row))
    }
}

// ---------------------------------------------------------------- overview

/// `{metric: {"current", "previous", "change"}}` in measure order.
#[derive(Debug, Clone)]
pub struct Indicators(pub Vec<(&'static str, Trend)>);

impl Serialize for Indicators {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, trend) in &self.0 {
            map.serialize_entry(name, trend)?;
        }
        map.end()
    }
}

/// The body of `GET /api/v1/overview`.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub scope: Filter,
    pub period: PeriodJson,
    /// All-time values; `from`/`to` do not apply.
    pub kpis: Measures,
    /// Values for `[from, to)`.
    pub period_values: Measures,
    /// The window against the equally long window before it.
    pub trends: Indicators,
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

// ------------------------------------------------------------ distribution

/// One row of a distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DistributionEntry {
    pub value: String,
    pub count: u64,
    /// `count` ÷ the dimension's total; null when the total is 0.
    pub share: Option<f64>,
}

/// The body of `GET /api/v1/distribution`.
#[derive(Debug, Clone, Serialize)]
pub struct Distribution {
    pub scope: Filter,
    pub period: PeriodJson,
    pub dimension: &'static str,
    pub rows: Vec<DistributionEntry>,
}

/// Shares of the total, unknown countries named, by count descending then
/// value; values with a zero count are left out.
pub fn distribution_rows(
    rows: Vec<DistributionRow>,
    dimension: Dimension,
) -> Vec<DistributionEntry> {
    let total: u64 = rows.iter().map(|r| r.count).sum();
    let mut out: Vec<DistributionEntry> = rows
        .into_iter()
        .filter(|r| r.count > 0)
        .map(|r| DistributionEntry {
            value: if dimension == Dimension::ViewCountry && r.value.is_empty() {
                UNKNOWN_COUNTRY.to_owned()
            } else {
                r.value
            },
            count: r.count,
            share: (total > 0).then(|| r.count as f64 / total as f64),
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    out
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

// -------------------------------------------------------------- top badges

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Asc,
    Desc,
}

impl Order {
    pub fn parse(s: &str) -> Option<Order> {
        match s {
            "asc" => Some(Order::Asc),
            "desc" => Some(Order::Desc),
            _ => None,
        }
    }
}

/// How top badges are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranking {
    /// A measure name of [`NAMES`].
    pub sort: &'static str,
    pub order: Order,
    /// 1 to 1000.
    pub limit: usize,
}

impl Default for Ranking {
    fn default() -> Self {
        Ranking {
            sort: "performance",
            order: Order::Desc,
            limit: 20,
        }
    }
}

/// One badge class in the ranking.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BadgeRow {
    pub org_id: String,
    pub badge_class_id: String,
    /// Latest name; empty when the class was never upserted.
    pub name: String,
    #[serde(flatten)]
    pub measures: Measures,
    /// Fewer than `min_awarded` awards in the window.
    pub low_sample: bool,
}

/// The body of `GET /api/v1/top-badges`.
#[derive(Debug, Clone, Serialize)]
pub struct TopBadges {
    pub scope: Filter,
    pub period: PeriodJson,
    pub sort: &'static str,
    pub order: Order,
    pub min_awarded: u64,
    pub rows: Vec<BadgeRow>,
}

/// Ranks `rows`: classes meeting `min_awarded` first, then by the sort
/// measure in `order` with nulls last, ties by badge class id and org;
/// the first `limit`.
pub fn rank(mut rows: Vec<BadgeRow>, ranking: Ranking) -> Vec<BadgeRow> {
    rows.sort_by(|a, b| {
        let va = a.measures.get(ranking.sort).map(Value::as_f64);
        let vb = b.measures.get(ranking.sort).map(Value::as_f64);
        let by_value = match (va, vb) {
            (Some(x), Some(y)) => match ranking.order {
                Order::Desc => y.total_cmp(&x),
                Order::Asc => x.total_cmp(&y),
            },
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        a.low_sample
            .cmp(&b.low_sample)
            .then(by_value)
            .then_with(|| a.badge_class_id.cmp(&b.badge_class_id))
            .then_with(|| a.org_id.cmp(&b.org_id))
    });
    rows.truncate(ranking.limit);
    rows
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

// ------------------------------------------------------------------ trends

/// A validated trends request: the granularity, the measures and every
/// bucket of the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrendRequest {
    pub granularity: Granularity,
    pub metrics: Vec<&'static str>,
    pub buckets: Vec<i64>,
}

impl TrendRequest {
    /// Errors name the parameter: `granularity` when the window has more
    /// than [`MAX_BUCKETS`] buckets, `metrics` for an empty list.
    pub fn new(
        window: Window,
        granularity: Granularity,
        metrics: Vec<&'static str>,
    ) -> Result<TrendRequest, String> {
        if metrics.is_empty() {
            return Err("metrics: name at least one metric".into());
        }
        let buckets = buckets(window, granularity, MAX_BUCKETS).map_err(|_| {
            format!(
                "granularity: the window has more than {MAX_BUCKETS} {} buckets; choose a coarser granularity or a shorter window",
                granularity.as_str()
            )
        })?;
        Ok(TrendRequest {
            granularity,
            metrics,
            buckets,
        })
    }
}

/// The measures of every bucket: each row goes to the bucket holding its
/// time; buckets without a row are zeros.
pub fn fill(buckets: &[i64], rows: &[TrendRow]) -> Vec<Measures> {
    let mut counts = vec![Counts::default(); buckets.len()];
    for row in rows {
        let t = i64::from(row.t);
        // The last bucket starting at or before t (a bucket before 1970
        // comes back from ClickHouse clamped to 1970-01-01).
        let i = buckets.partition_point(|&b| b <= t).saturating_sub(1);
        if let Some(c) = counts.get_mut(i) {
            let r = row.counts();
            c.awarded += r.awarded;
            c.accepted += r.accepted;
            c.shared += r.shared;
            c.shares += r.shares;
            c.views += r.views;
            c.unique_viewers += r.unique_viewers;
            c.revoked += r.revoked;
            c.badge_classes += r.badge_classes;
        }
    }
    counts.into_iter().map(Measures::derive).collect()
}

/// The body of `GET /api/v1/trends`.
#[derive(Debug, Clone)]
pub struct Trends {
    pub scope: Filter,
    pub period: PeriodJson,
    pub granularity: Granularity,
    pub metrics: Vec<&'static str>,
    /// Bucket starts, epoch seconds.
    pub buckets: Vec<i64>,
    /// The measures of each bucket.
    pub values: Vec<Measures>,
    pub annotations: Vec<Annotation>,
}

/// `{metric: [{"t", "value"}]}`.
struct Series<'a>(&'a Trends);

#[derive(Serialize)]
struct Point {
    t: String,
    value: Option<Value>,
}

impl Serialize for Series<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let tr = self.0;
        let times: Vec<String> = tr.buckets.iter().map(|&b| rfc3339_i64(b)).collect();
        let mut map = serializer.serialize_map(Some(tr.metrics.len()))?;
        for m in &tr.metrics {
            let points: Vec<Point> = times
                .iter()
                .zip(&tr.values)
                .map(|(t, v)| Point {
                    t: t.clone(),
                    value: v.get(m),
                })
                .collect();
            map.serialize_entry(m, &points)?;
        }
        map.end()
    }
}

impl Serialize for Trends {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Trends", 5)?;
        s.serialize_field("scope", &self.scope)?;
        s.serialize_field("period", &self.period)?;
        s.serialize_field("granularity", self.granularity.as_str())?;
        s.serialize_field("series", &Series(self))?;
        s.serialize_field("annotations", &self.annotations)?;
        s.end()
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

// ----------------------------------------------------------------- drivers

/// The body of `GET /api/v1/drivers`.
#[derive(Debug, Clone, Serialize)]
pub struct Drivers {
    pub scope: Filter,
    pub period: PeriodJson,
    #[serde(flatten)]
    pub analysis: drivers::Analysis,
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

// --------------------------------------------------------------- lifecycle

/// One stage of the lifecycle funnel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// `awarded`, `accepted`, `shared` or `viewed`.
    pub stage: &'static str,
    pub count: u64,
    /// `count ÷ previous stage's count`; 1 for `awarded`; null when the
    /// previous count is 0.
    pub conversion: Option<f64>,
    /// `1 − conversion`.
    pub drop_off: Option<f64>,
}

/// Median times between the stages, hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MedianHours {
    pub award_to_accept: Option<f64>,
    pub accept_to_share: Option<f64>,
    pub share_to_view: Option<f64>,
}

/// The body of `GET /api/v1/lifecycle`.
#[derive(Debug, Clone, Serialize)]
pub struct Lifecycle {
    pub scope: Filter,
    pub period: PeriodJson,
    pub stages: Vec<Stage>,
    pub median_hours: MedianHours,
}

/// The stages and medians of a cohort.
pub fn lifecycle_of(row: &LifecycleRow) -> (Vec<Stage>, MedianHours) {
    let counts = [
        ("awarded", row.awarded),
        ("accepted", row.accepted),
        ("shared", row.shared),
        ("viewed", row.viewed),
    ];
    let mut stages = Vec::with_capacity(4);
    let mut previous: Option<u64> = None;
    for (stage, count) in counts {
        let conversion = match previous {
            None => Some(1.0),
            Some(0) => None,
            Some(p) => Some(count as f64 / p as f64),
        };
        stages.push(Stage {
            stage,
            count,
            conversion,
            drop_off: conversion.map(|c| 1.0 - c),
        });
        previous = Some(count);
    }
    let hours = |n: u64, secs: f64| (n > 0).then(|| secs / 3_600.0);
    let median_hours = MedianHours {
        award_to_accept: hours(row.award_to_accept_n, row.award_to_accept_secs),
        accept_to_share: hours(row.accept_to_share_n, row.accept_to_share_secs),
        share_to_view: hours(row.share_to_view_n, row.share_to_view_secs),
    };
    (stages, median_hours)
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

// ------------------------------------------------------------- annotations

/// An annotation as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Annotation {
    pub id: String,
    pub at: String,
    pub title: String,
    pub text: String,
    pub org: String,
    /// Null: the whole org.
    pub issuer: Option<String>,
    /// Null: every badge class.
    pub badge_class: Option<String>,
    pub created_at: String,
}

impl From<AnnotationRow> for Annotation {
    fn from(r: AnnotationRow) -> Self {
        let opt = |s: String| (!s.is_empty()).then_some(s);
        Annotation {
            id: r.id,
            at: rfc3339(r.at),
            title: r.title,
            text: r.text,
            org: r.org_id,
            issuer: opt(r.issuer_id),
            badge_class: opt(r.badge_class_id),
            created_at: rfc3339(r.created_at),
        }
    }
}

/// The body of `GET /api/v1/annotations`.
#[derive(Debug, Clone, Serialize)]
pub struct Annotations {
    pub scope: Filter,
    pub period: PeriodJson,
    pub annotations: Vec<Annotation>,
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

/// The validated content of a new annotation (its scope is resolved
/// separately against the API key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAnnotation {
    pub at: u32,
    pub title: String,
    pub text: String,
}

/// Longest title and text, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_TEXT_CHARS: usize = 10_000;

impl NewAnnotation {
    /// Validates `at` (RFC 3339 or `YYYY-MM-DD`), `title` (required, 1 to
    /// 200 characters, no control characters) and `text` (optional, at
    /// most 10,000 characters, no control characters but newlines and
    /// tabs). Errors name the field.
    pub fn new(at: &str, title: &str, text: Option<&str>) -> Result<NewAnnotation, String> {
        let at = crate::window::parse_time("at", at)?;
        let title_chars = title.chars().count();
        if title.trim().is_empty() {
            return Err("title: must not be empty".into());
        }
        if title_chars > MAX_TITLE_CHARS {
            return Err(format!(
                "title: {title_chars} characters, at most {MAX_TITLE_CHARS} allowed"
            ));
        }
        if title.chars().any(char::is_control) {
            return Err("title: must not contain control characters".into());
        }
        let text = text.unwrap_or("");
        let text_chars = text.chars().count();
        if text_chars > MAX_TEXT_CHARS {
            return Err(format!(
                "text: {text_chars} characters, at most {MAX_TEXT_CHARS} allowed"
            ));
        }
        if text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(
                "text: must not contain control characters other than newlines and tabs".into(),
            );
        }
        Ok(NewAnnotation {
            at,
            title: title.to_owned(),
            text: text.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> u32 {
        crate::window::parse_time("t", s).unwrap()
    }

    #[test]
    fn distribution_shares_and_order() {
        let rows = vec![
            DistributionRow {
                value: "".into(),
                count: 2,
            },
            DistributionRow {
                value: "NL".into(),
                count: 5,
            },
            DistributionRow {
                value: "DE".into(),
                count: 2,
            },
            DistributionRow {
                value: "FR".into(),
                count: 0,
            },
        ];
        let out = distribution_rows(rows.clone(), Dimension::ViewCountry);
        let got: Vec<(&str, u64, Option<f64>)> = out
            .iter()
            .map(|r| (r.value.as_str(), r.count, r.share))
            .collect();
        assert_eq!(
            got,
            [
                ("NL", 5, Some(5.0 / 9.0)),
                ("DE", 2, Some(2.0 / 9.0)),
                ("unknown", 2, Some(2.0 / 9.0)),
            ]
        );
        // Only countries have an "unknown" value.
        let out = distribution_rows(rows, Dimension::ViewSource);
        assert_eq!(out[1].value, "");
        assert!(distribution_rows(Vec::new(), Dimension::AwardMethod).is_empty());
    }

    fn badge(id: &str, org: &str, awarded: u64, accepted: u64, views: u64, min: u64) -> BadgeRow {
        let measures = Measures::derive(Counts {
            awarded,
            accepted,
            views,
            ..Counts::default()
        });
        BadgeRow {
            org_id: org.into(),
            badge_class_id: id.into(),
            name: String::new(),
            low_sample: awarded < min,
            measures,
        }
    }

    fn ids(rows: &[BadgeRow]) -> Vec<String> {
        rows.iter()
            .map(|r| format!("{}/{}", r.org_id, r.badge_class_id))
            .collect()
    }

    #[test]
    fn ranking_puts_low_samples_last_and_breaks_ties() {
        let rows = vec![
            badge("b", "o", 10, 5, 0, 10),  // performance 12.5
            badge("a", "o", 10, 10, 0, 10), // 25
            badge("c", "o", 10, 5, 0, 10),  // 12.5, tie with b
            badge("a", "n", 10, 5, 0, 10),  // 12.5, tie: by id then org
            badge("z", "o", 2, 2, 100, 10), // high but low sample
            badge("y", "o", 0, 0, 5, 10),   // null performance, low sample
        ];
        let r = rank(rows.clone(), Ranking::default());
        assert_eq!(ids(&r), ["o/a", "n/a", "o/b", "o/c", "o/z", "o/y"]);
        let r = rank(
            rows.clone(),
            Ranking {
                sort: "performance",
                order: Order::Asc,
                limit: 3,
            },
        );
        assert_eq!(ids(&r), ["n/a", "o/b", "o/c"]);
        // Sorting by a count; nulls never come first.
        let r = rank(
            rows,
            Ranking {
                sort: "views",
                order: Order::Desc,
                limit: 100,
            },
        );
        assert_eq!(ids(&r), ["n/a", "o/a", "o/b", "o/c", "o/z", "o/y"]);
        let json = serde_json::to_value(&r[0]).unwrap();
        assert_eq!(json["badge_class_id"], "a");
        assert_eq!(json["low_sample"], false);
        assert_eq!(json["performance"], 12.5);
        assert_eq!(json.as_object().unwrap().len(), 3 + NAMES.len() + 1);
    }

    #[test]
    fn trend_buckets_are_filled_with_zeros() {
        let w = Window::new(t("2024-03-01T10:30:00Z"), t("2024-03-01T13:00:01Z")).unwrap();
        let req =
            TrendRequest::new(w, Granularity::Hour, vec!["awarded", "acceptance_rate"]).unwrap();
        assert_eq!(
            req.buckets,
            [
                i64::from(t("2024-03-01T10:00:00Z")),
                i64::from(t("2024-03-01T11:00:00Z")),
                i64::from(t("2024-03-01T12:00:00Z")),
                i64::from(t("2024-03-01T13:00:00Z")),
            ]
        );
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
        let json = serde_json::to_value(&trends).unwrap();
        assert_eq!(json["granularity"], "hour");
        assert_eq!(
            json["series"]["awarded"],
            serde_json::json!([
                {"t": "2024-03-01T10:00:00Z", "value": 4},
                {"t": "2024-03-01T11:00:00Z", "value": 0},
                {"t": "2024-03-01T12:00:00Z", "value": 1},
                {"t": "2024-03-01T13:00:00Z", "value": 0},
            ])
        );
        assert_eq!(
            json["series"]["acceptance_rate"],
            serde_json::json!([
                {"t": "2024-03-01T10:00:00Z", "value": 0.5},
                {"t": "2024-03-01T11:00:00Z", "value": null},
                {"t": "2024-03-01T12:00:00Z", "value": 1.0},
                {"t": "2024-03-01T13:00:00Z", "value": null},
            ])
        );
        assert_eq!(
            trends.table().to_csv(),
            "t,awarded,acceptance_rate\r\n2024-03-01T10:00:00Z,4,0.5\r\n2024-03-01T11:00:00Z,0,\r\n\
             2024-03-01T12:00:00Z,1,1\r\n2024-03-01T13:00:00Z,0,\r\n"
        );
    }

    #[test]
    fn trend_requests_are_bounded() {
        let month = Window::new(t("2024-01-01"), t("2024-02-01")).unwrap();
        let err = TrendRequest::new(month, Granularity::Minute, vec!["views"]).unwrap_err();
        assert!(err.starts_with("granularity:"), "{err}");
        assert_eq!(
            TrendRequest::new(month, Granularity::Hour, vec!["views"])
                .unwrap()
                .buckets
                .len(),
            744
        );
        let err = TrendRequest::new(month, Granularity::Day, Vec::new()).unwrap_err();
        assert!(err.starts_with("metrics:"), "{err}");
        // A week bucket before 1970 takes the rows ClickHouse clamps to 0.
        let early = Window::new(0, 86_400 * 10).unwrap();
        let req = TrendRequest::new(early, Granularity::Week, vec!["awarded"]).unwrap();
        assert_eq!(req.buckets, [-3 * 86_400, 4 * 86_400]);
        let row = TrendRow {
            t: 0,
            awarded: 3,
            accepted: 0,
            shared: 0,
            shares: 0,
            views: 0,
            unique_viewers: 0,
            revoked: 0,
            badge_classes: 1,
        };
        assert_eq!(fill(&req.buckets, &[row])[0].counts.awarded, 3);
    }

    #[test]
    fn lifecycle_stages() {
        let row = LifecycleRow {
            awarded: 10,
            accepted: 8,
            shared: 2,
            viewed: 0,
            award_to_accept_n: 8,
            award_to_accept_secs: 5_400.0,
            accept_to_share_n: 2,
            accept_to_share_secs: 36_000.0,
            share_to_view_n: 0,
            share_to_view_secs: 0.0,
        };
        let (stages, medians) = lifecycle_of(&row);
        let got: Vec<_> = stages
            .iter()
            .map(|s| (s.stage, s.count, s.conversion, s.drop_off))
            .collect();
        assert_eq!(
            got,
            [
                ("awarded", 10, Some(1.0), Some(0.0)),
                ("accepted", 8, Some(0.8), Some(0.19999999999999996)),
                ("shared", 2, Some(0.25), Some(0.75)),
                ("viewed", 0, Some(0.0), Some(1.0)),
            ]
        );
        assert_eq!(
            medians,
            MedianHours {
                award_to_accept: Some(1.5),
                accept_to_share: Some(10.0),
                share_to_view: None,
            }
        );
        // An empty cohort: nothing divides by zero.
        let (stages, medians) = lifecycle_of(&LifecycleRow::default());
        assert_eq!(stages[0].conversion, Some(1.0));
        assert!(stages[1..]
            .iter()
            .all(|s| s.conversion.is_none() && s.drop_off.is_none()));
        assert_eq!(medians, MedianHours::default());
    }

    #[test]
    fn new_annotations_are_validated() {
        let a = NewAnnotation::new("2024-03-01", "Launch", Some("line 1\nline 2")).unwrap();
        assert_eq!(a.at, t("2024-03-01"));
        assert_eq!(a.text, "line 1\nline 2");
        assert_eq!(
            NewAnnotation::new("2024-03-01T10:00:00Z", "x", None)
                .unwrap()
                .text,
            ""
        );
        let err = |at: &str, title: &str, text: Option<&str>| {
            NewAnnotation::new(at, title, text).unwrap_err()
        };
        assert!(err("soon", "x", None).starts_with("at:"));
        assert!(err("2024-03-01", "  ", None).starts_with("title:"));
        assert!(err("2024-03-01", &"é".repeat(201), None).starts_with("title:"));
        NewAnnotation::new("2024-03-01", &"é".repeat(200), None).unwrap();
        assert!(err("2024-03-01", "a\u{7}", None).starts_with("title:"));
        assert!(err("2024-03-01", "a", Some(&"x".repeat(10_001))).starts_with("text:"));
        assert!(err("2024-03-01", "a", Some("\u{0}")).starts_with("text:"));
        let json = serde_json::to_value(Annotation::from(AnnotationRow {
            id: "id1".into(),
            org_id: "acme".into(),
            issuer_id: "".into(),
            badge_class_id: "b1".into(),
            at: t("2024-03-01"),
            title: "=cmd".into(),
            text: "".into(),
            created_at: t("2024-03-02"),
        }))
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": "id1", "at": "2024-03-01T00:00:00Z", "title": "=cmd", "text": "",
                "org": "acme", "issuer": null, "badge_class": "b1", "created_at": "2024-03-02T00:00:00Z"})
        );
    }
}
