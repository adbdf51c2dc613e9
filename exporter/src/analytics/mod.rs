//! The analytics of SPEC §7 as data: one file per endpoint of SPEC §8,
//! each with its typed body (which serialises to the endpoint's JSON) and
//! the method of [`Analytics`] that computes it; renderers (`render`: CSV,
//! charts, report) and the HTTP layer use these with an already authorised
//! [`Filter`] and validated parameters.
//!
//! [`Analytics::answer`] is the one way in for the endpoints kept as whole
//! answers: it looks the answer up by its [`AnswerKey`] among the kept
//! answers (`freshness::kept_answers`), which recompute it when a change
//! touches it, and otherwise computes it. Every read goes through
//! `freshness::Reader` in the request's [`ReadMode`].
//!
//! Imports `freshness`, `db` (row types) and `model`; no SQL, no HTTP
//! types, no rendering.

pub mod annotations;
pub mod benchmark;
pub mod cohorts;
pub mod distribution;
pub mod impact;
pub mod lifecycle;
pub mod overview;
pub mod performance_drivers;
pub mod scopes;
pub mod timing;
pub mod top_badges;
pub mod trends;

use std::sync::Arc;

use chrono_tz::Tz;
use serde::Serialize;

use crate::db::store::StoreError;
use crate::freshness::kept_answers::KeptAnswers;
use crate::freshness::reader::Reader;
use crate::freshness::ReadMode;
use crate::model::cohorts::Stage;
use crate::model::measures::{Dimension, NAMES};
use crate::model::reach::Reach;
use crate::model::scope::Filter;
use crate::model::tiers::{Period, Resolution, Retention};
use crate::model::window::{Granularity, Window, WindowSpec};

use benchmark::Benchmark;
use cohorts::Cohorts;
use distribution::Distribution;
use impact::{Impact, ImpactRequest};
use lifecycle::Lifecycle;
use overview::Overview;
use performance_drivers::Drivers;
use timing::Timing;
use top_badges::{Ranking, TopBadges};
use trends::{TrendRequest, Trends};

/// What the analytics need from `[exporter]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Top badges: fewer awards in the window → `low_sample`; impact:
    /// fewer → never significant; timing: fewer → no best cell;
    /// benchmark: fewer → not a peer.
    pub min_awarded: u64,
    /// Benchmark: fewer qualifying peers → no rank or quartiles.
    pub benchmark_min_peers: u64,
    /// Retention of `rollup_minute`, days (as the aggregator's).
    pub rollup_minute_days: u32,
    /// Retention of `rollup_hour`, days (as the aggregator's).
    pub rollup_hour_days: u32,
}

impl Settings {
    pub fn from_config(e: &crate::config::ExporterConfig) -> Settings {
        Settings {
            min_awarded: e.min_awarded,
            benchmark_min_peers: e.benchmark_min_peers,
            rollup_minute_days: e.rollup_minute_days,
            rollup_hour_days: e.rollup_hour_days,
        }
    }
}

/// The analytics over one ClickHouse store.
#[derive(Clone)]
pub struct Analytics {
    reader: Reader,
    settings: Settings,
    /// Whole answers kept up to date; `None`: computed for each request.
    kept: Option<Arc<KeptAnswers>>,
}

/// What one analytics endpoint is asked, besides scope and window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    Impact(ImpactRequest),
    Timing(Tz),
    Cohorts {
        granularity: Granularity,
        stage: Stage,
    },
    Benchmark,
}

impl Question {
    /// Its canonical text, every parameter named.
    fn encode(&self) -> String {
        match self {
            Question::Overview => "overview".to_owned(),
            Question::Distribution(d) => format!("distribution dimension={}", d.as_str()),
            Question::TopBadges(r) => format!(
                "top-badges sort={} order={} limit={}",
                r.sort,
                r.order.as_str(),
                r.limit
            ),
            Question::Trends {
                granularity,
                metrics,
            } => format!(
                "trends granularity={} metrics={}",
                granularity.as_str(),
                metrics.join(",")
            ),
            Question::Drivers => "drivers".to_owned(),
            Question::Lifecycle => "lifecycle".to_owned(),
            Question::Impact(r) => format!(
                "impact annotation={} days={} horizon={}",
                r.annotation, r.days, r.horizon
            ),
            Question::Timing(tz) => format!("timing tz={}", tz.name()),
            Question::Cohorts { granularity, stage } => format!(
                "cohorts granularity={} stage={}",
                granularity.as_str(),
                stage.as_str()
            ),
            Question::Benchmark => "benchmark".to_owned(),
        }
    }
}

/// Everything that tells one kept answer from another: the question, the
/// scope and the window as asked (a window up to now is one answer, which
/// follows the clock).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnswerKey {
    pub question: Question,
    pub filter: Filter,
    pub window: WindowSpec,
}

impl AnswerKey {
    /// The cache key: a canonical text of every field, so equal keys are
    /// equal text and different ones differ.
    pub fn encode(&self) -> String {
        let id = |v: &Option<String>| v.clone().unwrap_or_else(|| "*".to_owned());
        let bound = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |t| t.to_string());
        let (from, to) = self.window.bounds();
        let span = self.window.default_span();
        let span = if span == WindowSpec::DEFAULT_SPAN {
            String::new()
        } else {
            format!(" span={span}")
        };
        format!(
            "answer {} org={} issuer={} badge_class={} from={} to={}{span}",
            self.question.encode(),
            id(&self.filter.org),
            id(&self.filter.issuer),
            id(&self.filter.badge_class),
            bound(from),
            bound(to),
        )
    }

    /// Whether the answer changes with the clock, not only with the data:
    /// a window up to now, and the cohorts, whose running age ends at a
    /// period boundary whatever their window (such answers are served
    /// only while computed at most `exporter.cache_live_window_secs`
    /// ago). An impact has no `to`: its after window ends now.
    fn follows_the_clock(&self) -> bool {
        self.window.up_to_now() || matches!(self.question, Question::Cohorts { .. })
    }

    /// What the answer reads. Distributions and trends read the window
    /// only; the benchmark reads the window of every org; any commit of
    /// the org may touch the others (all-time tiles, badge-class metadata,
    /// a cohort's later stages, an annotation). The answer's own queries
    /// are cached with their exact spans, so a refresh re-reads only those
    /// touched.
    fn reach(&self) -> Reach {
        let org = self.filter.org.as_deref();
        let (from, to) = self.window.reach();
        match self.question {
            Question::Distribution(_) | Question::Trends { .. } => Reach::span(org, from, to),
            Question::Benchmark => Reach::span(None, from, to),
            _ => Reach::all_time(org),
        }
    }
}

/// The body of any analytics endpoint kept as a whole answer.
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
    Impact(Impact),
    Timing(Timing),
    Cohorts(Cohorts),
    Benchmark(Benchmark),
}

/// An answer and when it was computed (Unix milliseconds): the same
/// answer may be served for a while (`freshness::kept_answers`).
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
    pub fn new(reader: Reader, settings: Settings) -> Self {
        Analytics {
            reader,
            settings,
            kept: None,
        }
    }

    /// These analytics keeping whole answers up to date in `kept`.
    pub fn with_kept_answers(mut self, kept: Arc<KeptAnswers>) -> Self {
        self.kept = Some(kept);
        self
    }

    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// The answer to `key`: kept up to date among the kept answers if
    /// there are any (see `freshness::kept_answers` for how fresh it is),
    /// else computed now; `mode` says whether the cache may answer.
    pub async fn answer(&self, key: AnswerKey, mode: ReadMode) -> Result<Answer, StoreError> {
        let Some(kept) = &self.kept else {
            return self.compute(&key, mode).await;
        };
        // Without the kept answers: computing needs none, and they keep
        // this closure (no reference cycle).
        let analytics = Analytics {
            kept: None,
            ..self.clone()
        };
        let (encoded, reach, live) = (key.encode(), key.reach(), key.follows_the_clock());
        let key = Arc::new(key);
        kept.answer(encoded, reach, live, mode, move |mode| {
            let (analytics, key) = (analytics.clone(), key.clone());
            Box::pin(async move { analytics.compute(&key, mode).await })
        })
        .await
    }

    /// Computes the answer to `key` with its window resolved now.
    async fn compute(&self, key: &AnswerKey, mode: ReadMode) -> Result<Answer, StoreError> {
        let computed_at_ms = chrono::Utc::now().timestamp_millis();
        let filter = &key.filter;
        let window = key.window.at(now()).map_err(StoreError::Request)?;
        let body = match &key.question {
            Question::Overview => Body::Overview(self.overview(filter, window, mode).await?),
            Question::Distribution(dimension) => {
                Body::Distribution(self.distribution(filter, window, *dimension, mode).await?)
            }
            Question::TopBadges(ranking) => {
                Body::TopBadges(self.top_badges(filter, window, *ranking, mode).await?)
            }
            Question::Trends {
                granularity,
                metrics,
            } => {
                let request = TrendRequest::new(window, *granularity, metrics.clone())
                    .map_err(StoreError::Request)?;
                Body::Trends(self.trends(filter, window, request, mode).await?)
            }
            Question::Drivers => Body::Drivers(self.drivers(filter, window, mode).await?),
            Question::Lifecycle => Body::Lifecycle(self.lifecycle(filter, window, mode).await?),
            Question::Impact(request) => Body::Impact(self.impact(filter, request, mode).await?),
            Question::Timing(tz) => Body::Timing(self.timing(filter, window, *tz, mode).await?),
            Question::Cohorts { granularity, stage } => Body::Cohorts(
                self.cohorts(filter, window, *granularity, *stage, mode)
                    .await?,
            ),
            Question::Benchmark => Body::Benchmark(self.benchmark(filter, window, mode).await?),
        };
        Ok(Answer {
            body,
            computed_at_ms,
        })
    }

    /// `window` decomposed from `coarsest` down, with the rollup retention
    /// as of now.
    fn period(&self, window: Window, coarsest: Resolution) -> Period {
        let s = self.settings;
        Period::window(
            window,
            coarsest,
            Retention::at(now(), s.rollup_minute_days, s.rollup_hour_days),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_keys_name_every_field() {
        let key = |question, org: Option<&str>, from, to| AnswerKey {
            question,
            filter: Filter {
                org: org.map(str::to_owned),
                ..Filter::default()
            },
            window: WindowSpec::parse(from, to).unwrap(),
        };
        let a = key(Question::Overview, Some("acme"), Some("2024-03-01"), None);
        assert_eq!(
            a.encode(),
            "answer overview org=acme issuer=* badge_class=* from=1709251200 to=-"
        );
        let keys = [
            a.clone(),
            key(Question::Overview, None, Some("2024-03-01"), None),
            key(Question::Overview, Some("acme"), None, None),
            key(Question::Lifecycle, Some("acme"), Some("2024-03-01"), None),
            key(
                Question::Distribution(Dimension::ViewSource),
                Some("acme"),
                Some("2024-03-01"),
                None,
            ),
            key(
                Question::TopBadges(Ranking::default()),
                Some("acme"),
                Some("2024-03-01"),
                Some("2024-04-01"),
            ),
        ];
        let encoded: std::collections::HashSet<String> =
            keys.iter().map(AnswerKey::encode).collect();
        assert_eq!(encoded.len(), keys.len());
        assert_eq!(a.clone().encode(), a.encode());
        // A fixed window's cohorts still follow the clock.
        let cohorts = key(
            Question::Cohorts {
                granularity: Granularity::Month,
                stage: Stage::Accepted,
            },
            Some("acme"),
            Some("2024-03-01"),
            Some("2024-04-01"),
        );
        assert!(cohorts.follows_the_clock());
        assert!(!keys[5].follows_the_clock());
        // The cohorts' default span is part of the key.
        let mut year = key(Question::Benchmark, Some("acme"), None, None);
        let month = year.clone();
        year.window = year.window.with_default_span(365 * 86_400);
        assert_ne!(year.encode(), month.encode());
        assert!(
            year.encode().ends_with(" span=31536000"),
            "{}",
            year.encode()
        );
    }
}
