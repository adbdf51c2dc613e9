//! Sends a [`Plan`] to a running badgepulse-ingest over plain HTTP, in
//! phases (platform events, late events, share beacons, views), with
//! bounded concurrency, and checks that ingest took everything.
//!
//! Fails loudly on anything a correct ingest would not do with this
//! traffic: a rejected event, an unexpected status, or (when checking
//! metrics) pixel outcomes other than the ledger's `accepted` and `bot`.
//! Must not: change the plan or the ledger.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use badgepulse_contract::signing::sign;
use futures::{StreamExt, TryStreamExt};
use rand::Rng;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, REFERER, USER_AGENT};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::catalog::COUNTRY_HEADER;
use crate::generate::{Beacon, BeaconKind, Plan, Transport};
use crate::ledger::Ledger;

/// Platform events per `POST /v1/events` (ingest takes at most 1,000).
pub const EVENTS_PER_REQUEST: usize = 500;

/// Event requests in flight at once, at most.
const MAX_EVENT_REQUESTS_IN_FLIGHT: usize = 8;

/// Attempts of one event request answered with 503 (JetStream unavailable;
/// safe to retry because of `event_id`).
const EVENT_ATTEMPTS: u32 = 6;

/// The User-Agent of loadgen's own API calls (never of beacons).
const OWN_USER_AGENT: &str = concat!("badgepulse-loadgen/", env!("CARGO_PKG_VERSION"));

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URL of ingest, e.g. `http://127.0.0.1:8080`.
    pub ingest: String,
    /// Bearer token of `POST /v1/events`, allowed to write every generated org.
    pub token: String,
    /// Pixel key id (`kid`).
    pub kid: String,
    /// The pixel key named `kid` in ingest's `[ingest.pixel_keys]`.
    pub key: String,
    /// Requests in flight at once (beacons; event requests at most 8).
    pub concurrency: usize,
    /// Base URL of ingest's admin listener (e.g. `http://127.0.0.1:8083`):
    /// read its `/metrics` before and after and require its beacon, bot
    /// and event counters to have moved exactly as the ledger says. Only
    /// meaningful when nothing else sends to this ingest meanwhile; `None`:
    /// not checked.
    pub metrics: Option<String>,
    /// Requests started per second at most (a steady rate, for soaks);
    /// `None`: as fast as `concurrency` allows.
    pub rate: Option<f64>,
}

/// Spaces request starts `1 / rate` apart, shared by every task: each
/// caller takes the next free slot and sleeps until it. A pacer that falls
/// behind (ingest slower than the rate) does not burst to catch up.
#[derive(Debug)]
struct Pacer {
    interval: Option<Duration>,
    next: std::sync::Mutex<tokio::time::Instant>,
}

impl Pacer {
    fn new(rate: Option<f64>) -> Pacer {
        Pacer {
            interval: rate
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r)),
            next: std::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    async fn wait(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let slot = {
            let mut next = self.next.lock().expect("pacer lock");
            let slot = (*next).max(tokio::time::Instant::now());
            *next = slot + interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// What was sent and what ingest answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SendReport {
    pub event_requests: u64,
    /// Platform events sent, resends included.
    pub events_sent: u64,
    /// Sum of `accepted` over the `/v1/events` answers.
    pub events_accepted: u64,
    /// Sum of `duplicates` over the `/v1/events` answers.
    pub events_duplicates: u64,
    pub view_pixels: u64,
    pub view_posts: u64,
    pub share_pixels: u64,
    pub share_posts: u64,
    /// Hits with a bot User-Agent (included in the four counts above).
    pub bot_hits: u64,
    pub elapsed_secs: f64,
    /// How ingest's counters moved during the run, when `metrics` is set.
    pub ingest: Option<IngestCounters>,
}

/// The ingest counters a run moves (`badgepulse_ingest_…`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestCounters {
    /// `beacons_total` by kind, then outcome.
    pub beacons: BTreeMap<String, BTreeMap<String, u64>>,
    /// `bots_total` by family.
    pub bots: BTreeMap<String, u64>,
    /// `events_total` by outcome.
    pub events: BTreeMap<String, u64>,
}

/// The answer of `POST /v1/events`.
#[derive(Deserialize)]
struct EventsAnswer {
    accepted: u64,
    duplicates: u64,
    rejected: Vec<Value>,
}

/// Sends `plan` to `target` and returns what happened. Errors name the
/// request that failed and what ingest said.
pub async fn send(plan: &Plan, target: &Target) -> anyhow::Result<SendReport> {
    ensure!(target.concurrency >= 1, "concurrency must be at least 1");
    let base = target.ingest.trim_end_matches('/').to_owned();
    // No default User-Agent: every request sets its own.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(target.concurrency)
        .build()
        .context("building the HTTP client")?;
    let admin = target
        .metrics
        .as_deref()
        .map(|m| m.trim_end_matches('/').to_owned());
    let before = match &admin {
        Some(admin) => Some(scrape(&client, admin).await?),
        None => None,
    };
    let started = Instant::now();
    let mut report = SendReport::default();
    let pacer = Pacer::new(target.rate);

    for events in [&plan.events, &plan.late_events] {
        let answers: Vec<EventsAnswer> = futures::stream::iter(events.chunks(EVENTS_PER_REQUEST))
            .map(|chunk| paced(&pacer, post_events(&client, &base, &target.token, chunk)))
            .buffer_unordered(MAX_EVENT_REQUESTS_IN_FLIGHT.min(target.concurrency))
            .try_collect()
            .await?;
        report.event_requests += answers.len() as u64;
        report.events_sent += events.len() as u64;
        report.events_accepted += answers.iter().map(|a| a.accepted).sum::<u64>();
        report.events_duplicates += answers.iter().map(|a| a.duplicates).sum::<u64>();
    }

    for beacons in [&plan.share_beacons, &plan.view_beacons] {
        futures::stream::iter(beacons)
            .map(|b| paced(&pacer, hit(&client, &base, target, b)))
            .buffer_unordered(target.concurrency)
            .try_collect::<()>()
            .await?;
        for b in beacons {
            let n = match (b.kind, b.transport) {
                (BeaconKind::View, Transport::Pixel) => &mut report.view_pixels,
                (BeaconKind::View, Transport::Post) => &mut report.view_posts,
                (BeaconKind::Share, Transport::Pixel) => &mut report.share_pixels,
                (BeaconKind::Share, Transport::Post) => &mut report.share_posts,
            };
            *n += 1;
            report.bot_hits += u64::from(b.bot_family.is_some());
        }
    }
    report.elapsed_secs = started.elapsed().as_secs_f64();

    if let (Some(before), Some(admin)) = (before, &admin) {
        let after = scrape(&client, admin).await?;
        let delta = after.since(&before);
        let problems = delta.disagreements(&plan.ledger, report.events_sent);
        report.ingest = Some(delta);
        if !problems.is_empty() {
            bail!(
                "ingest's counters disagree with the ledger (a bug, unless other traffic reached this ingest; \
                 then pass --no-metrics-check):\n  - {}",
                problems.join("\n  - ")
            );
        }
    }
    Ok(report)
}

/// Runs `request` once `pacer` gives it a slot. (A named async fn, not a
/// closure returning an async block, so the futures stay `Send` for any
/// borrow and `send` can run in a spawned task.)
async fn paced<F: std::future::Future>(pacer: &Pacer, request: F) -> F::Output {
    pacer.wait().await;
    request.await
}

/// One `POST /v1/events`, retried with backoff while ingest answers 503.
async fn post_events(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    events: &[Value],
) -> anyhow::Result<EventsAnswer> {
    let url = format!("{base}/v1/events");
    let body = json!({ "events": events });
    let first_id = events
        .first()
        .and_then(|e| e["event_id"].as_str())
        .unwrap_or("");
    for attempt in 1..=EVENT_ATTEMPTS {
        let resp = client
            .post(&url)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(USER_AGENT, OWN_USER_AGENT)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        if status == StatusCode::SERVICE_UNAVAILABLE && attempt < EVENT_ATTEMPTS {
            let backoff = 250u64 << attempt;
            let jitter = rand::thread_rng().gen_range(0..=backoff / 2);
            tokio::time::sleep(Duration::from_millis(backoff + jitter)).await;
            continue;
        }
        let text = resp
            .text()
            .await
            .with_context(|| format!("reading the answer of POST {url}"))?;
        if status != StatusCode::OK {
            bail!(
                "POST {url} ({} events from {first_id}) answered {status}: {}",
                events.len(),
                text.trim()
            );
        }
        let answer: EventsAnswer = serde_json::from_str(&text)
            .with_context(|| format!("POST {url} answered 200 with an unexpected body: {text}"))?;
        if !answer.rejected.is_empty() {
            let shown: Vec<String> = answer
                .rejected
                .iter()
                .take(5)
                .map(Value::to_string)
                .collect();
            bail!(
                "ingest rejected {} of {} events (a bug in loadgen or ingest): {}",
                answer.rejected.len(),
                events.len(),
                shown.join("; ")
            );
        }
        ensure!(
            answer.accepted + answer.duplicates == events.len() as u64,
            "POST {url}: {} accepted + {} duplicates for {} events sent",
            answer.accepted,
            answer.duplicates,
            events.len()
        );
        return Ok(answer);
    }
    Err(anyhow!(
        "POST {url}: still 503 after {EVENT_ATTEMPTS} attempts"
    ))
}

/// One signed pixel or beacon with its browser (or bot) headers.
async fn hit(
    client: &reqwest::Client,
    base: &str,
    target: &Target,
    b: &Beacon,
) -> anyhow::Result<()> {
    let sig = sign(target.key.as_bytes(), &b.ids());
    let (what, req, expected) = match b.transport {
        Transport::Pixel => {
            let url = format!("{base}{}", b.pixel_path(&target.kid, &sig));
            (format!("GET {url}"), client.get(&url), StatusCode::OK)
        }
        Transport::Post => {
            let url = format!("{base}/v1/beacon");
            let req = client
                .post(&url)
                // What navigator.sendBeacon sends for a string body.
                .header(CONTENT_TYPE, "text/plain;charset=UTF-8")
                .body(b.post_body(&target.kid, &sig).to_string());
            (format!("POST {url}"), req, StatusCode::NO_CONTENT)
        }
    };
    let mut req = req
        .header(USER_AGENT, &b.user_agent)
        .header("x-forwarded-for", &b.forwarded_for);
    if let Some(referer) = &b.referer {
        req = req.header(REFERER, referer);
    }
    if let Some(country) = &b.country {
        req = req.header(COUNTRY_HEADER, country);
    }
    let resp = req.send().await.with_context(|| what.clone())?;
    let status = resp.status();
    ensure!(
        status == expected,
        "{what} answered {status}, expected {expected}"
    );
    if b.transport == Transport::Pixel {
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        ensure!(
            ct == "image/gif",
            "{what} answered Content-Type {ct:?}, expected image/gif"
        );
    }
    // Drain the body so the connection goes back to the pool.
    resp.bytes().await.with_context(|| what.clone())?;
    Ok(())
}

/// Reads ingest's counters from `/metrics` of its admin listener at `base`.
async fn scrape(client: &reqwest::Client, base: &str) -> anyhow::Result<IngestCounters> {
    let url = format!("{base}/metrics");
    let resp = client
        .get(&url)
        .header(USER_AGENT, OWN_USER_AGENT)
        .send()
        .await
        .with_context(|| format!("GET {url} (needed to check ingest's counters)"))?;
    ensure!(
        resp.status() == StatusCode::OK,
        "GET {url} answered {}",
        resp.status()
    );
    let text = resp.text().await.with_context(|| format!("GET {url}"))?;
    Ok(IngestCounters::parse(&text))
}

impl IngestCounters {
    /// Picks the three counters out of Prometheus text format.
    pub fn parse(text: &str) -> Self {
        let mut c = IngestCounters::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            let labels: BTreeMap<&str, &str> = labels
                .trim_end_matches('}')
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k, v.trim_matches('"')))
                .collect();
            let label = |k: &str| labels.get(k).copied().unwrap_or("").to_owned();
            let value = value as u64;
            match name {
                "badgepulse_ingest_beacons_total" => {
                    c.beacons
                        .entry(label("kind"))
                        .or_default()
                        .insert(label("outcome"), value);
                }
                "badgepulse_ingest_bots_total" => {
                    c.bots.insert(label("family"), value);
                }
                "badgepulse_ingest_events_total" => {
                    c.events.insert(label("outcome"), value);
                }
                _ => {}
            }
        }
        c
    }

    /// How far each counter moved since `before`.
    pub fn since(&self, before: &IngestCounters) -> IngestCounters {
        let sub = |now: &BTreeMap<String, u64>, then: Option<&BTreeMap<String, u64>>| {
            now.iter()
                .map(|(k, v)| {
                    let old = then.and_then(|t| t.get(k)).copied().unwrap_or(0);
                    (k.clone(), v.saturating_sub(old))
                })
                .collect::<BTreeMap<_, _>>()
        };
        IngestCounters {
            beacons: self
                .beacons
                .iter()
                .map(|(kind, m)| (kind.clone(), sub(m, before.beacons.get(kind))))
                .collect(),
            bots: sub(&self.bots, Some(&before.bots)),
            events: sub(&self.events, Some(&before.events)),
        }
    }

    /// Where these counter moves differ from what the ledger expects for
    /// a run that sent `events_sent` platform events; empty when they agree.
    pub fn disagreements(&self, ledger: &Ledger, events_sent: u64) -> Vec<String> {
        let t = &ledger.traffic;
        let mut problems = Vec::new();
        for kind in ["view", "share"] {
            let got = self.beacons.get(kind).cloned().unwrap_or_default();
            let want = t.ingest_beacons.get(kind).cloned().unwrap_or_default();
            let outcomes: std::collections::BTreeSet<&String> =
                got.keys().chain(want.keys()).collect();
            for outcome in outcomes {
                let (g, w) = (
                    got.get(outcome).copied().unwrap_or(0),
                    want.get(outcome).copied().unwrap_or(0),
                );
                if g != w {
                    problems.push(format!(
                        "badgepulse_ingest_beacons_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} rose by {g}, expected {w}"
                    ));
                }
            }
        }
        let families: std::collections::BTreeSet<&String> =
            self.bots.keys().chain(t.bots_by_family.keys()).collect();
        for family in families {
            let (g, w) = (
                self.bots.get(family).copied().unwrap_or(0),
                t.bots_by_family.get(family).copied().unwrap_or(0),
            );
            if g != w {
                problems.push(format!(
                    "badgepulse_ingest_bots_total{{family=\"{family}\"}} rose by {g}, expected {w}"
                ));
            }
        }
        let ev = |k: &str| self.events.get(k).copied().unwrap_or(0);
        if ev("rejected") != 0 {
            problems.push(format!("{} platform events rejected", ev("rejected")));
        }
        if ev("accepted") + ev("duplicate") != events_sent {
            problems.push(format!(
                "badgepulse_ingest_events_total: accepted {} + duplicate {} != {events_sent} sent",
                ev("accepted"),
                ev("duplicate")
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pacer_spaces_request_starts_by_the_rate() {
        let pacer = std::sync::Arc::new(Pacer::new(Some(200.0)));
        let started = Instant::now();
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let p = pacer.clone();
                tokio::spawn(async move { p.wait().await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // 40 starts at 200/s: the last one 39 × 5 ms after the first.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(190), "{took:?}");
        assert!(took < Duration::from_millis(600), "{took:?}");
        let unpaced = Pacer::new(None);
        let t = Instant::now();
        for _ in 0..1000 {
            unpaced.wait().await;
        }
        assert!(t.elapsed() < Duration::from_millis(50));
    }

    const METRICS: &str = r#"# HELP badgepulse_ingest_beacons_total Pixel and beacon hits
# TYPE badgepulse_ingest_beacons_total counter
badgepulse_ingest_beacons_total{kind="share",outcome="accepted"} 3
badgepulse_ingest_beacons_total{kind="view",outcome="accepted"} 10
badgepulse_ingest_beacons_total{kind="view",outcome="bot"} 2
badgepulse_ingest_beacons_total{kind="view",outcome="rate_limited"} 0
badgepulse_ingest_bots_total{family="link_preview"} 2
badgepulse_ingest_events_total{outcome="accepted"} 7
badgepulse_ingest_events_total{outcome="duplicate"} 1
badgepulse_ingest_publish_duration_seconds_bucket{kind="event",le="0.0001"} 0
"#;

    #[test]
    fn parses_and_subtracts_counters() {
        let now = IngestCounters::parse(METRICS);
        assert_eq!(now.beacons["view"]["accepted"], 10);
        assert_eq!(now.bots["link_preview"], 2);
        assert_eq!(now.events["duplicate"], 1);
        let before = IngestCounters::parse(&METRICS.replace("} 10", "} 4").replace("} 7", "} 0"));
        let d = now.since(&before);
        assert_eq!(d.beacons["view"]["accepted"], 6);
        assert_eq!(d.events["accepted"], 7);
        assert_eq!(d.events["duplicate"], 0);
    }

    #[test]
    fn disagreements_name_the_counter() {
        let plan = crate::plan(1, 1, "2026-03-01T12:00:00Z".parse().unwrap(), 2);
        let t = &plan.ledger.traffic;
        let mut good = IngestCounters {
            beacons: t.ingest_beacons.clone(),
            bots: t.bots_by_family.clone(),
            events: BTreeMap::from([
                ("accepted".into(), t.platform_events),
                ("duplicate".into(), t.duplicates_resent),
                ("rejected".into(), 0),
            ]),
        };
        assert!(good
            .disagreements(&plan.ledger, t.platform_events_sent)
            .is_empty());
        good.beacons
            .get_mut("view")
            .unwrap()
            .insert("rate_limited".into(), 3);
        let problems = good.disagreements(&plan.ledger, t.platform_events_sent);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("rate_limited"), "{problems:?}");
    }
}
