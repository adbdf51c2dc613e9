//! The printable HTML report of one scope and window (SPEC §8 `GET
//! /report`): header, KPI tiles with trend arrows, the charts as inline
//! SVG, and tables of every analytics body.
//!
//! Renders already fetched bodies (`analytics.rs`) to one self-contained
//! page: no script, no external request (the handler also sends [`CSP`]),
//! print CSS with page breaks. Every string from data is escaped with
//! [`charts::escape`]. No SQL and no HTTP here.

use std::fmt::Write as _;

use super::charts::{
    self, badge_label, escape as e, format_change, format_metric, thousands, trend_arrow, Size,
};
use super::insight_charts::{self, format_insight, impact_label};
use crate::analytics::benchmark::Benchmark;
use crate::analytics::cohorts::Cohorts;
use crate::analytics::distribution::Distribution;
use crate::analytics::impact::Impact;
use crate::analytics::lifecycle::Lifecycle;
use crate::analytics::overview::Overview;
use crate::analytics::performance_drivers::Drivers;
use crate::analytics::timing::Timing;
use crate::analytics::top_badges::TopBadges;
use crate::analytics::trends::Trends;
use crate::model::performance_drivers::{self as drivers, format_p, ALPHA};
use crate::model::scope::Filter;
use crate::model::timing::{WEEKDAYS, WITHIN};
use crate::model::window::rfc3339_i64;

/// The report's Content-Security-Policy: inline styles and nothing else,
/// so a report never makes a request (and never runs a script).
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                       base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Everything the report shows.
pub struct ReportData {
    pub overview: Overview,
    pub trends: Trends,
    /// One per dimension.
    pub distributions: Vec<Distribution>,
    pub top_badges: TopBadges,
    pub drivers: Drivers,
    pub lifecycle: Lifecycle,
    /// The impact of the latest annotations in the period.
    pub impacts: Vec<Impact>,
    pub timing: Timing,
    /// The cohorts of the period, or why there are none.
    pub cohorts: Result<Cohorts, String>,
    /// The peer benchmark, or why the scope has none.
    pub benchmark: Result<Benchmark, String>,
    /// When the newest of the answers shown was computed, epoch seconds:
    /// the same answers give the same page (and so the same `ETag`).
    pub computed_at: i64,
}

const STYLE: &str = r#"
*{box-sizing:border-box}
body{font-family:"DejaVu Sans",Verdana,Arial,sans-serif;color:#1f2937;margin:0 auto;max-width:1200px;padding:24px;background:#fff;font-size:14px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 10px;border-bottom:2px solid #e5e7eb;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}
.meta{color:#6b7280;margin:0 0 2px}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px}
.tile{border:1px solid #e5e7eb;border-radius:6px;padding:10px 12px;background:#f9fafb}
.tile .name{color:#6b7280;font-size:12px;text-transform:capitalize}
.tile .value{font-size:24px;font-weight:bold;margin:4px 0}
.tile .period{font-size:12px;color:#374151}
.trend{font-weight:bold;white-space:nowrap}
.trend.up{color:#15803d}.trend.down{color:#b91c1c}.trend.neutral{color:#6b7280}
.figure{margin:10px 0}
.figure svg{width:100%;height:auto;display:block;border:1px solid #f3f4f6}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:14px}
table{border-collapse:collapse;width:100%;font-size:12px;margin:6px 0 12px}
th,td{border-bottom:1px solid #e5e7eb;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f3f4f6}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.low td{color:#9ca3af}
.sig{font-weight:bold}
.empty{color:#6b7280;font-style:italic}
.wide{overflow-x:auto}
ul.insights li{margin:4px 0}
@page{size:A4;margin:12mm}
@media print{
body{padding:0;max-width:none;font-size:10pt}
section{break-inside:avoid-page}
.page-break{break-before:page}
table{break-inside:auto}
tr,.tile,.figure{break-inside:avoid}
.tile,th,.figure svg{-webkit-print-color-adjust:exact;print-color-adjust:exact}
.grid2{grid-template-columns:1fr 1fr}
}
"#;

/// "org acme · issuer i1 · badge class b1", or "all orgs".
pub fn scope_text(f: &Filter) -> String {
    let mut parts = Vec::new();
    match &f.org {
        Some(o) => parts.push(format!("org {o}")),
        None => parts.push("all orgs".to_owned()),
    }
    if let Some(i) = &f.issuer {
        parts.push(format!("issuer {i}"));
    }
    if let Some(b) = &f.badge_class {
        parts.push(format!("badge class {b}"));
    }
    parts.join(" · ")
}

fn opt_num(v: Option<f64>, decimals: usize) -> String {
    v.map(|x| format!("{x:.decimals$}"))
        .unwrap_or_else(|| "—".into())
}

fn opt_pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.1}%", x * 100.0))
        .unwrap_or_else(|| "—".into())
}

fn figure(out: &mut String, svg: &str) {
    let _ = write!(out, r#"<div class="figure">{svg}</div>"#);
}

/// The whole page.
pub fn render(d: &ReportData) -> String {
    let o = &d.overview;
    let mut out = String::with_capacity(128 * 1024);
    let scope = scope_text(&o.scope);
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="referrer" content="no-referrer"><title>badgepulse report — {}</title><style>{STYLE}</style></head><body>"#,
        e(&scope)
    );
    let _ = write!(
        out,
        r#"<header><h1>badgepulse analytics report</h1><p class="meta" id="scope">Scope: {}</p><p class="meta" id="period">Period: {} → {} (UTC, end exclusive)</p><p class="meta">Data as of {}</p></header>"#,
        e(&scope),
        e(&o.period.from),
        e(&o.period.to),
        e(&rfc3339_i64(d.computed_at))
    );
    kpis(&mut out, o);
    out.push_str(r#"<section id="trends"><h2>Trends</h2>"#);
    figure(
        &mut out,
        &charts::trends_svg(
            &d.trends,
            Size {
                width: 1100,
                height: 360,
            },
        ),
    );
    out.push_str("</section>");
    distributions(&mut out, &d.distributions);
    top_badges(&mut out, &d.top_badges);
    drivers_section(&mut out, &d.drivers);
    lifecycle(&mut out, &d.lifecycle);
    impact_section(&mut out, &d.impacts);
    timing_section(&mut out, &d.timing);
    cohorts_section(&mut out, &d.cohorts);
    benchmark_section(&mut out, &d.benchmark);
    annotations(&mut out, &d.trends);
    out.push_str("</body></html>\n");
    out
}

fn kpis(out: &mut String, o: &Overview) {
    out.push_str(r#"<section id="kpis"><h2>Key figures</h2><p class="meta">All-time values; below each, the period's value and its change against the equally long period before.</p><div class="kpis">"#);
    for (name, trend) in &o.trends.0 {
        let (arrow, _) = trend_arrow(trend.change);
        let class = match trend.change {
            Some(c) if c > 0.0 => "up",
            Some(c) if c < 0.0 => "down",
            _ => "neutral",
        };
        let change = trend
            .change
            .map(format_change)
            .unwrap_or_else(|| "n/a".into());
        let _ = write!(
            out,
            r#"<div class="tile" data-metric="{name}"><div class="name">{}</div><div class="value">{}</div><div class="period">period: {} <span class="trend {class}">{arrow} {change}</span></div></div>"#,
            e(&name.replace('_', " ")),
            e(&format_metric(name, o.kpis.get(name))),
            e(&format_metric(name, o.period_values.get(name))),
        );
    }
    out.push_str("</div></section>");
}

fn distributions(out: &mut String, ds: &[Distribution]) {
    out.push_str(
        r#"<section id="distribution" class="page-break"><h2>Distribution</h2><div class="grid2">"#,
    );
    for dist in ds {
        let _ = write!(
            out,
            r#"<div><h3>{}</h3>"#,
            e(&dist.dimension.replace('_', " "))
        );
        figure(
            out,
            &charts::distribution_svg(
                dist,
                Size {
                    width: 540,
                    height: (50 + 24 * dist.rows.len().max(3)).min(600) as u32,
                },
            ),
        );
        if dist.rows.is_empty() {
            out.push_str(r#"<p class="empty">No data in this period.</p></div>"#);
            continue;
        }
        out.push_str(r#"<table><thead><tr><th>value</th><th class="num">count</th><th class="num">share</th></tr></thead><tbody>"#);
        for r in &dist.rows {
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
                e(&r.value),
                thousands(r.count),
                opt_pct(r.share)
            );
        }
        out.push_str("</tbody></table></div>");
    }
    out.push_str("</div></section>");
}

fn top_badges(out: &mut String, t: &TopBadges) {
    let _ = write!(
        out,
        r#"<section id="top-badges" class="page-break"><h2>Top badges</h2><p class="meta">By {}; classes with fewer than {} awards in the period are listed last (low sample).</p>"#,
        e(&t.sort.replace('_', " ")),
        t.min_awarded
    );
    figure(
        out,
        &charts::top_badges_svg(
            t,
            Size {
                width: 1100,
                height: (60 + 26 * t.rows.len().max(4)).min(4_000) as u32,
            },
        ),
    );
    if t.rows.is_empty() {
        out.push_str(r#"<p class="empty">No data in this period.</p></section>"#);
        return;
    }
    const COLS: [&str; 9] = [
        "awarded",
        "accepted",
        "shared",
        "views",
        "acceptance_rate",
        "share_rate",
        "engagement_score",
        "reach_score",
        "performance",
    ];
    out.push_str(r#"<table><thead><tr><th class="num">#</th><th>badge</th>"#);
    for c in COLS {
        let _ = write!(out, r#"<th class="num">{}</th>"#, c.replace('_', " "));
    }
    out.push_str("</tr></thead><tbody>");
    let with_org = t.scope.org.is_none();
    for (i, r) in t.rows.iter().enumerate() {
        let _ = write!(
            out,
            r#"<tr{}><td class="num">{}</td><td>{}{}</td>"#,
            if r.low_sample { r#" class="low""# } else { "" },
            i + 1,
            e(&badge_label(
                &r.name,
                &r.org_id,
                &r.badge_class_id,
                with_org
            )),
            if r.low_sample { " (low sample)" } else { "" }
        );
        for c in COLS {
            let _ = write!(
                out,
                r#"<td class="num">{}</td>"#,
                e(&format_metric(c, r.measures.get(c)))
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></section>");
}

fn drivers_section(out: &mut String, d: &Drivers) {
    out.push_str(r#"<section id="drivers" class="page-break"><h2>Drivers</h2>"#);
    out.push_str("<h3>Key insights</h3>");
    if d.analysis.insights.is_empty() {
        out.push_str(r#"<p class="empty">No significant driver in this period.</p>"#);
    } else {
        out.push_str(r#"<ul class="insights">"#);
        for i in &d.analysis.insights {
            let _ = write!(out, "<li>{}</li>", e(i));
        }
        out.push_str("</ul>");
    }
    let lifts = d
        .analysis
        .drivers
        .iter()
        .map(|dr| {
            drivers::MEASURES
                .iter()
                .filter(|(m, _)| dr.lift.get(m).is_some())
                .count()
        })
        .sum::<usize>();
    figure(
        out,
        &charts::drivers_svg(
            d,
            Size {
                width: 1100,
                height: (60 + 30 * lifts.max(4)).min(4_000) as u32,
            },
        ),
    );
    if d.analysis.drivers.is_empty() {
        out.push_str(r#"<p class="empty">No badge class metadata in scope.</p></section>"#);
        return;
    }
    out.push_str(r#"<table><thead><tr><th>attribute</th><th class="num">classes with / without</th><th class="num">awarded with / without</th>"#);
    for (_, label) in drivers::MEASURES {
        let _ = write!(out, r#"<th class="num">{label}: lift (p)</th>"#);
    }
    out.push_str("</tr></thead><tbody>");
    for dr in &d.analysis.drivers {
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td class="num">{} / {}</td><td class="num">{} / {}</td>"#,
            e(&dr.attribute),
            dr.with.badge_classes,
            dr.without.badge_classes,
            thousands(dr.with.awarded),
            thousands(dr.without.awarded)
        );
        for (m, _) in drivers::MEASURES {
            let p = dr.p_value.get(m);
            let lift = dr
                .lift
                .get(m)
                .map(format_change)
                .unwrap_or_else(|| "—".into());
            let p_text = p
                .map(|p| format!(" ({})", drivers::format_p(p)))
                .unwrap_or_default();
            let sig = p.is_some_and(|p| p < ALPHA);
            let _ = write!(
                out,
                r#"<td class="num{}">{}{}</td>"#,
                if sig { " sig" } else { "" },
                e(&lift),
                e(&p_text)
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></section>");
}

fn lifecycle(out: &mut String, l: &Lifecycle) {
    out.push_str(r#"<section id="lifecycle" class="page-break"><h2>Lifecycle</h2><p class="meta">The cohort of assertions awarded in the period; later events count whenever they happened.</p>"#);
    figure(
        out,
        &charts::lifecycle_svg(
            l,
            Size {
                width: 1100,
                height: 300,
            },
        ),
    );
    let m = l.median_hours;
    let medians = [None, m.award_to_accept, m.accept_to_share, m.share_to_view];
    out.push_str(r#"<table><thead><tr><th>stage</th><th class="num">count</th><th class="num">conversion</th><th class="num">drop-off</th><th class="num">median hours from previous stage</th></tr></thead><tbody>"#);
    for (s, median) in l.stages.iter().zip(medians) {
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            e(s.stage),
            thousands(s.count),
            opt_pct(s.conversion),
            opt_pct(s.drop_off),
            opt_num(median, 1)
        );
    }
    out.push_str("</tbody></table></section>");
}

fn insight_list(out: &mut String, insights: &[String], none: &str) {
    if insights.is_empty() {
        let _ = write!(out, r#"<p class="empty">{}</p>"#, e(none));
        return;
    }
    out.push_str(r#"<ul class="insights">"#);
    for i in insights {
        let _ = write!(out, "<li>{}</li>", e(i));
    }
    out.push_str("</ul>");
}

fn wide_figure(out: &mut String, height: u32, draw: impl Fn(Size) -> String) {
    figure(
        out,
        &draw(Size {
            width: 1100,
            height,
        }),
    );
}

fn impact_section(out: &mut String, impacts: &[Impact]) {
    out.push_str(r#"<section id="impact" class="page-break"><h2>Impact of program updates</h2><p class="meta">For each of the latest annotations in the period: the measures in the days before and after it. Acceptance and sharing are those of the badges awarded in each window, within the horizon of their award. A change after an update is not proof that the update caused it.</p>"#);
    if impacts.is_empty() {
        out.push_str(r#"<p class="empty">No annotation in this period.</p></section>"#);
        return;
    }
    for i in impacts {
        let _ = write!(
            out,
            r#"<h3>{} ({})</h3><p class="meta">Before {} → {}; after {} → {}{}.</p>"#,
            e(&i.annotation.title),
            e(&i.annotation.at),
            e(&i.before.from),
            e(&i.before.to),
            e(&i.after.from),
            e(&i.after.to),
            if i.after.complete {
                ""
            } else {
                " (cut at now)"
            }
        );
        insight_list(out, &i.insights, "No significant change.");
        wide_figure(out, 260, |size| insight_charts::impact_svg(i, size));
        out.push_str(r#"<table><thead><tr><th>measure</th><th class="num">before</th><th class="num">after</th><th class="num">change</th><th class="num">p</th></tr></thead><tbody>"#);
        for m in &i.measures {
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num{}">{}</td><td class="num">{}</td></tr>"#,
                e(&impact_label(m.measure, i.horizon)),
                e(&format_insight(m.measure, m.before)),
                e(&format_insight(m.measure, m.after)),
                if m.significant { " sig" } else { "" },
                e(&m.change.map(format_change).unwrap_or_else(|| "—".into())),
                e(&m.p_value.map(format_p).unwrap_or_else(|| "—".into())),
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");
}

fn timing_section(out: &mut String, t: &Timing) {
    let _ = write!(
        out,
        r#"<section id="timing" class="page-break"><h2>Timing</h2><p class="meta">The badges awarded in the period by the weekday and hour of their award ({}), and the share accepted by now.</p>"#,
        e(t.tz)
    );
    let a = &t.analysis;
    insight_list(out, &a.insights, "No time slot stands out.");
    wide_figure(out, 320, |size| insight_charts::timing_svg(t, size));
    out.push_str(r#"<table><thead><tr><th>accepted within</th>"#);
    for (name, _) in WITHIN {
        let _ = write!(out, r#"<th class="num">{name}</th>"#);
    }
    out.push_str("</tr></thead><tbody><tr><td>share of the awards</td>");
    for v in a.accepted_within.values() {
        let _ = write!(out, r#"<td class="num">{}</td>"#, opt_pct(v));
    }
    out.push_str("</tr></tbody></table>");
    match &a.best {
        Some(b) => {
            let _ = write!(
                out,
                r#"<p id="best">Best time slot: {} {:02}:00–{:02}:00, {} awards, {} accepted{}.</p>"#,
                WEEKDAYS[usize::from(b.weekday - 1)],
                b.hour,
                (b.hour + 1) % 24,
                thousands(b.awarded),
                opt_pct(Some(b.acceptance_rate)),
                b.p_value
                    .map(|p| format!(" ({}, adjusted)", format_p(p)))
                    .unwrap_or_default()
            );
        }
        None => out.push_str(r#"<p class="empty">No time slot has enough awards to compare.</p>"#),
    }
    out.push_str(r#"<table><thead><tr><th>weekday</th><th class="num">awarded</th><th class="num">accepted</th></tr></thead><tbody>"#);
    for r in &a.by_weekday {
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            WEEKDAYS[usize::from(r.weekday - 1)],
            thousands(r.awarded),
            opt_pct(r.acceptance_rate)
        );
    }
    out.push_str("</tbody></table></section>");
}

fn cohorts_section(out: &mut String, cohorts: &Result<Cohorts, String>) {
    out.push_str(r#"<section id="cohorts" class="page-break"><h2>Cohorts</h2>"#);
    let c = match cohorts {
        Ok(c) => c,
        Err(why) => {
            let _ = write!(out, r#"<p class="empty">{}</p></section>"#, e(why));
            return;
        }
    };
    let _ = write!(
        out,
        r#"<p class="meta">The badges awarded in the period by the {} of their award: the share {} by the end of each {} since (age 0 is the {} itself; the running one is blank).</p>"#,
        e(c.granularity),
        e(c.stage.as_str()),
        e(c.granularity),
        e(c.granularity)
    );
    wide_figure(
        out,
        (80 + 22 * c.cohorts.len().clamp(3, 40)) as u32,
        |size| insight_charts::cohorts_svg(c, size),
    );
    if c.cohorts.is_empty() {
        out.push_str(r#"<p class="empty">No awards in this period.</p></section>"#);
        return;
    }
    let ages = c.cohorts.iter().map(|r| r.values.len()).max().unwrap_or(0);
    out.push_str(r#"<div class="wide"><table><thead><tr><th>cohort</th><th class="num">size</th>"#);
    for k in 0..ages {
        let _ = write!(out, r#"<th class="num">{k}</th>"#);
    }
    out.push_str("</tr></thead><tbody>");
    for r in &c.cohorts {
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td class="num">{}</td>"#,
            e(&r.cohort[..10]),
            thousands(r.size)
        );
        for k in 0..ages {
            let cell = match r.values.get(k) {
                Some(v) => opt_pct(*v),
                None => String::new(),
            };
            let _ = write!(out, r#"<td class="num">{cell}</td>"#);
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div></section>");
}

fn benchmark_section(out: &mut String, benchmark: &Result<Benchmark, String>) {
    out.push_str(r#"<section id="benchmark"><h2>Peer benchmark</h2>"#);
    let b = match benchmark {
        Ok(b) => b,
        Err(why) => {
            let _ = write!(out, r#"<p class="empty">{}</p></section>"#, e(why));
            return;
        }
    };
    let _ = write!(
        out,
        r#"<p class="meta">Where this {} stands among every {} with at least {} awards in the period; ranks need at least {} such peers. No peer is named.</p>"#,
        e(b.level.as_str()),
        e(b.level.as_str()),
        b.min_awarded,
        b.min_peers
    );
    wide_figure(out, 240, |size| insight_charts::benchmark_svg(b, size));
    out.push_str(r#"<table><thead><tr><th>measure</th><th class="num">value</th><th class="num">peers</th><th class="num">percentile</th><th class="num">p25</th><th class="num">median</th><th class="num">p75</th><th>note</th></tr></thead><tbody>"#);
    for m in &b.measures {
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
            e(&m.measure.replace('_', " ")),
            e(&format_insight(m.measure, m.value)),
            m.peers,
            opt_num(m.percentile, 1),
            e(&format_insight(m.measure, m.p25)),
            e(&format_insight(m.measure, m.median)),
            e(&format_insight(m.measure, m.p75)),
            e(m.reason.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</tbody></table></section>");
}

fn annotations(out: &mut String, t: &Trends) {
    out.push_str(r#"<section id="annotations"><h2>Annotations</h2>"#);
    if t.annotations.is_empty() {
        out.push_str(r#"<p class="empty">No annotations in this period.</p></section>"#);
        return;
    }
    out.push_str(
        "<table><thead><tr><th>at</th><th>title</th><th>text</th><th>scope</th></tr></thead><tbody>",
    );
    for a in &t.annotations {
        let scope = [
            Some(a.org.as_str()),
            a.issuer.as_deref(),
            a.badge_class.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" / ");
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e(&a.at),
            e(&a.title),
            e(&a.text).replace('\n', "<br>"),
            e(&scope)
        );
    }
    out.push_str("</tbody></table></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::analytics::annotations::Annotation;
    use crate::analytics::distribution::DistributionEntry;
    use crate::analytics::lifecycle::lifecycle_of;
    use crate::analytics::overview::Indicators;
    use crate::analytics::top_badges::BadgeRow;
    use crate::analytics::top_badges::Order;
    use crate::analytics::trends::fill;
    use crate::analytics::PeriodJson;
    use crate::db::lifecycle::LifecycleRow;
    use crate::model::cohorts::ReachCounts;
    use crate::model::impact::Inputs;
    use crate::model::measures::{self, Counts, Measures};
    use crate::model::timing::SlotCounts;
    use crate::model::window::Granularity;
    use crate::render::insight_charts::tests as fixtures;

    const EVIL: &str = "<script>alert('x')</script>&\"";

    fn data(counts: Counts, with_rows: bool) -> ReportData {
        let period = PeriodJson {
            from: "2024-03-01T00:00:00Z".into(),
            to: "2024-03-03T00:00:00Z".into(),
        };
        let m = Measures::derive(counts);
        let previous = Measures::derive(Counts {
            awarded: counts.awarded / 2,
            views: counts.views * 2,
            ..Counts::default()
        });
        let scope = Filter {
            org: Some(EVIL.into()),
            ..Filter::default()
        };
        let buckets = vec![1_709_251_200, 1_709_337_600];
        let annotations = if with_rows {
            vec![Annotation {
                id: "a1".into(),
                at: "2024-03-01T12:00:00Z".into(),
                title: EVIL.into(),
                text: "line\n<b>".into(),
                org: "acme".into(),
                issuer: None,
                badge_class: None,
                created_at: "2024-03-01T12:00:00Z".into(),
            }]
        } else {
            Vec::new()
        };
        let row = BadgeRow {
            org_id: "acme".into(),
            badge_class_id: "b1".into(),
            name: EVIL.into(),
            measures: m,
            low_sample: false,
        };
        let dist = |dimension| Distribution {
            scope: scope.clone(),
            period: period.clone(),
            dimension,
            rows: if with_rows {
                vec![DistributionEntry {
                    value: EVIL.into(),
                    count: 3,
                    share: Some(1.0),
                }]
            } else {
                Vec::new()
            },
        };
        let (stages, median_hours) = lifecycle_of(&LifecycleRow {
            awarded: counts.awarded,
            accepted: counts.accepted,
            ..LifecycleRow::default()
        });
        ReportData {
            overview: Overview {
                scope: scope.clone(),
                period: period.clone(),
                kpis: m,
                period_values: m,
                trends: Indicators(measures::trends(&m, &previous)),
            },
            trends: Trends {
                scope: scope.clone(),
                period: period.clone(),
                granularity: Granularity::Day,
                metrics: vec!["awarded", "views"],
                values: fill(&buckets, &[]),
                buckets,
                annotations,
            },
            distributions: vec![dist("award_method"), dist("view_country")],
            top_badges: TopBadges {
                scope: scope.clone(),
                period: period.clone(),
                sort: "performance",
                order: Order::Desc,
                min_awarded: 10,
                rows: if with_rows { vec![row] } else { Vec::new() },
            },
            drivers: Drivers {
                scope: scope.clone(),
                period: period.clone(),
                analysis: drivers::Analysis {
                    drivers: Vec::new(),
                    insights: if with_rows {
                        vec![EVIL.into()]
                    } else {
                        Vec::new()
                    },
                },
            },
            lifecycle: Lifecycle {
                scope,
                period,
                stages,
                median_hours,
            },
            impacts: if with_rows {
                vec![fixtures::impact(
                    EVIL,
                    Inputs {
                        before: counts,
                        after: counts,
                        ..Inputs::default()
                    },
                )]
            } else {
                Vec::new()
            },
            timing: fixtures::timing_body(if with_rows { &SLOTS } else { &[] }),
            cohorts: Ok(fixtures::cohorts_body(if with_rows { &REACH } else { &[] })),
            benchmark: if with_rows {
                Ok(fixtures::benchmark_body(&[]))
            } else {
                Err(format!("Not available for this scope: {EVIL}"))
            },
            computed_at: 1_709_337_600,
        }
    }

    const SLOTS: [SlotCounts; 1] = [SlotCounts {
        slot: 1_709_251_200 / 3_600,
        awarded: 4,
        accepted: 3,
        within_1h: 1,
        within_1d: 2,
        within_7d: 3,
        within_30d: 3,
        within_90d: 3,
    }];

    const REACH: [ReachCounts; 1] = [ReachCounts {
        cohort: 1_709_251_200,
        reached: 1,
        period: 1_709_251_200,
        assertions: 2,
    }];

    #[test]
    fn every_string_from_data_is_escaped() {
        let html = render(&data(
            Counts {
                awarded: 10,
                accepted: 5,
                views: 4,
                ..Counts::default()
            },
            true,
        ));
        assert!(!html.contains("<script"), "unescaped data");
        assert!(!html.contains("alert('x')"));
        // Scope (title and header), badge name, distribution value,
        // insight, annotation title: each escaped.
        assert!(
            html.matches("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;")
                .count()
                >= 6,
            "{html}"
        );
        assert!(html.contains("line<br>&lt;b&gt;"));
        // Self-contained: no external reference.
        for needle in ["http://", "https://", "src=", "<link", "@import"] {
            let hits: Vec<_> = html
                .match_indices(needle)
                .filter(|(i, _)| !html[*i..].starts_with("http://www.w3.org/2000/svg"))
                .collect();
            assert!(hits.is_empty(), "{needle} in the report");
        }
    }

    #[test]
    fn tiles_show_trends_and_the_charts_are_inline() {
        let html = render(&data(
            Counts {
                awarded: 10,
                accepted: 5,
                views: 4,
                ..Counts::default()
            },
            true,
        ));
        assert_eq!(
            html.matches(r#"<div class="tile""#).count(),
            measures::NAMES.len()
        );
        // awarded 10 vs 5 before: +100%; views 4 vs 8: −50%; shares 0 vs 0: n/a.
        assert!(html.contains(r#"<span class="trend up">▲ +100.0%</span>"#));
        assert!(html.contains(r#"<span class="trend down">▼ -50.0%</span>"#));
        assert!(html.contains(r#"<span class="trend neutral">■ n/a</span>"#));
        // trends, 2 distributions, top badges, drivers, lifecycle, an
        // impact, timing, cohorts, benchmark.
        assert_eq!(html.matches("<svg ").count(), 10);
        for id in ["impact", "timing", "cohorts", "benchmark"] {
            assert!(html.contains(&format!(r#"<section id="{id}""#)), "{id}");
        }
        assert!(
            html.contains(
                r#"<p id="best">Best time slot: Friday 00:00–01:00, 4 awards, 75.0% accepted"#
            ),
            "{html}"
        );
        assert!(html.contains("@media print"));
        assert!(html.contains(r#"<td class="num">50.0%</td>"#), "conversion");
    }

    #[test]
    fn empty_data_gives_a_complete_page() {
        let html = render(&data(Counts::default(), false));
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.ends_with("</html>\n"));
        // The six of before, and timing and cohorts.
        assert_eq!(html.matches(">no data</text>").count(), 8, "{html}");
        assert!(html.contains("No annotations in this period."));
        assert!(html.contains("No annotation in this period."));
        assert!(html.contains("Not available for this scope: &lt;script&gt;"));
        assert!(html.contains(r#"<span class="trend neutral">■ n/a</span>"#));
        assert!(html.contains("<td class=\"num\">—</td>"));
    }
}
