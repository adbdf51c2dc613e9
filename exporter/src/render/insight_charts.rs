//! The charts of the insights (SPEC §7.7–§7.10): an impact's changes as
//! bars, the timing heatmap (weekday × hour), the cohort triangle and the
//! benchmark's percentiles, drawn with the primitives of [`charts`]
//! (every string from data escaped there).
//!
//! [`charts`]: super::charts

use std::fmt::Write as _;

use super::charts::{
    format_change, hbars, thousands, truncate, Bar, ChartKind, Size, Svg, GRID, INK, MUTED, PALETTE,
};
use crate::analytics::benchmark::Benchmark;
use crate::analytics::cohorts::Cohorts;
use crate::analytics::impact::Impact;
use crate::analytics::timing::Timing;
use crate::model::performance_drivers::format_p;
use crate::model::timing::WEEKDAYS;

/// A measure of the insights as people read it: rates as percentages,
/// scores and per-day rates with one decimal, views per share with two.
pub fn format_insight(measure: &str, v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) => match measure {
            "acceptance_rate" | "share_rate" => format!("{:.1}%", v * 100.0),
            "external_impact_score" => format!("{v:.2}"),
            _ => format!("{v:.1}"),
        },
    }
}

/// "acceptance rate within 7 days", "awards per day", …
pub fn impact_label(measure: &str, horizon: u32) -> String {
    let days = if horizon == 1 {
        "1 day".to_owned()
    } else {
        format!("{horizon} days")
    };
    match measure {
        "acceptance_rate" => format!("accepted within {days}"),
        "share_rate" => format!("shared within {days}"),
        "external_impact_score" => "views per share".into(),
        other => other.replace('_', " "),
    }
}

/// Each measure's change after the update as a bar (in percent),
/// significant ones solid, with before → after and the p-value.
pub fn impact_svg(i: &Impact, size: Size) -> String {
    let title = format!("Impact of “{}”: after vs before", i.annotation.title);
    let mut svg = Svg::new(size, ChartKind::Impact, &title);
    let bars: Vec<Bar> = i
        .measures
        .iter()
        .filter_map(|m| {
            let change = m.change?;
            let p = m
                .p_value
                .map(|p| format!(", {}", format_p(p)))
                .unwrap_or_default();
            Some(Bar {
                label: impact_label(m.measure, i.horizon),
                value: change * 100.0,
                text: format!(
                    "{} → {} ({}{p})",
                    format_insight(m.measure, m.before),
                    format_insight(m.measure, m.after),
                    format_change(change)
                ),
                color: if change >= 0.0 { "#16a34a" } else { "#dc2626" },
                opacity: if m.significant { 1.0 } else { 0.4 },
            })
        })
        .collect();
    hbars(&mut svg, &bars);
    svg.finish()
}

/// The fill of a share in `[0, 1]`: `color` from pale to full.
fn shade(share: f64) -> f64 {
    0.1 + 0.9 * share.clamp(0.0, 1.0)
}

/// `text` centred in the cell `(x, y, w, h)` shaded by `share`: white on
/// dark shades.
fn cell_label(svg: &mut Svg, (x, y, w, h): (f64, f64, f64, f64), share: f64, text: &str) {
    let fs = svg.fs;
    let ink = if shade(share) > 0.55 { "#ffffff" } else { INK };
    svg.text(
        x + w / 2.0,
        y + h / 2.0 + fs * 0.3,
        text,
        &format!(
            r#"text-anchor="middle" font-size="{:.1}" fill="{ink}""#,
            fs * 0.75
        ),
    );
}

/// The weekday × hour heatmap of acceptance rates; empty cells blank, the
/// best cell outlined.
pub fn timing_svg(t: &Timing, size: Size) -> String {
    let title = format!("Acceptance by weekday and hour ({})", t.tz);
    let mut svg = Svg::new(size, ChartKind::Timing, &title);
    let a = &t.analysis;
    if a.cells.is_empty() {
        svg.no_data();
        return svg.finish();
    }
    let fs = svg.fs;
    let left = fs * 3.2;
    let top = svg.top() + fs * 1.4;
    let cell_w = (svg.w - left - fs * 0.8) / 24.0;
    let cell_h = (svg.h - top - fs * 0.8) / 7.0;
    let every = if cell_w >= fs * 1.6 { 1 } else { 3 };
    for h in (0..24).step_by(every) {
        svg.text(
            left + (h as f64 + 0.5) * cell_w,
            top - fs * 0.4,
            &format!("{h:02}"),
            &format!(r#"text-anchor="middle" fill="{MUTED}""#),
        );
    }
    for (d, name) in WEEKDAYS.iter().enumerate() {
        svg.text(
            left - fs * 0.4,
            top + (d as f64 + 0.5) * cell_h + fs * 0.35,
            &name[..3],
            &format!(r#"text-anchor="end" fill="{INK}""#),
        );
        for h in 0..24 {
            svg.rect(
                left + h as f64 * cell_w,
                top + d as f64 * cell_h,
                cell_w,
                cell_h,
                &format!(r##"fill="#ffffff" stroke="{GRID}""##),
            );
        }
    }
    for c in &a.cells {
        let (x, y) = (
            left + f64::from(c.hour) * cell_w,
            top + f64::from(c.weekday - 1) * cell_h,
        );
        let rate = c.acceptance_rate.unwrap_or(0.0);
        let best = a
            .best
            .is_some_and(|b| (b.weekday, b.hour) == (c.weekday, c.hour));
        let stroke = if best {
            r##"stroke="#dc2626" stroke-width="2""##.to_owned()
        } else {
            format!(r#"stroke="{GRID}""#)
        };
        let _ = write!(
            svg.out,
            r#"<rect class="cell" x="{x:.1}" y="{y:.1}" width="{cell_w:.1}" height="{cell_h:.1}" fill="{}" fill-opacity="{:.2}" {stroke}><title>{} {:02}:00: {} awarded, {:.1}% accepted</title></rect>"#,
            PALETTE[0],
            shade(rate),
            WEEKDAYS[usize::from(c.weekday - 1)],
            c.hour,
            thousands(c.awarded),
            rate * 100.0
        );
        if cell_w >= fs * 2.2 && cell_h >= fs * 1.1 {
            cell_label(
                &mut svg,
                (x, y, cell_w, cell_h),
                rate,
                &format!("{:.0}", rate * 100.0),
            );
        }
    }
    svg.finish()
}

/// The cohort triangle: one row per cohort (the latest that fit), one
/// column per age, each cell shaded by its share.
pub fn cohorts_svg(c: &Cohorts, size: Size) -> String {
    let title = format!(
        "Cohorts by {}: share {} by age",
        c.granularity,
        c.stage.as_str()
    );
    let mut svg = Svg::new(size, ChartKind::Cohorts, &title);
    if c.cohorts.is_empty() {
        svg.no_data();
        return svg.finish();
    }
    let fs = svg.fs;
    let label = |s: &str| {
        if c.granularity == "month" {
            s[..7].to_owned()
        } else {
            s[..10].to_owned()
        }
    };
    let left = fs * 0.8 + fs * 0.62 * 18.0;
    let top = svg.top() + fs * 1.4;
    let bottom = svg.h - fs * 0.8;
    let fit_rows = (((bottom - top) / (fs * 1.3)).floor() as usize).max(1);
    let hidden = c.cohorts.len().saturating_sub(fit_rows);
    let rows = &c.cohorts[hidden..];
    let ages = rows.iter().map(|r| r.values.len()).max().unwrap_or(1);
    let fit_cols = (((svg.w - left - fs * 0.8) / (fs * 1.4)).floor() as usize).max(1);
    let cols = ages.min(fit_cols);
    let cell_w = (svg.w - left - fs * 0.8) / cols as f64;
    let cell_h = ((bottom - top) / rows.len() as f64).min(fs * 2.4);
    for k in 0..cols {
        svg.text(
            left + (k as f64 + 0.5) * cell_w,
            top - fs * 0.4,
            &k.to_string(),
            &format!(r#"text-anchor="middle" fill="{MUTED}""#),
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let y = top + i as f64 * cell_h;
        svg.text(
            left - fs * 0.4,
            y + cell_h / 2.0 + fs * 0.35,
            &format!("{} ({})", label(&row.cohort), thousands(row.size)),
            &format!(r#"text-anchor="end" fill="{INK}""#),
        );
        for (k, v) in row.values.iter().take(cols).enumerate() {
            let x = left + k as f64 * cell_w;
            match v {
                Some(share) => {
                    let _ = write!(
                        svg.out,
                        r#"<rect class="cell" x="{x:.1}" y="{y:.1}" width="{cell_w:.1}" height="{cell_h:.1}" fill="{}" fill-opacity="{:.2}" stroke="{GRID}"/>"#,
                        PALETTE[1],
                        shade(*share)
                    );
                    if cell_w >= fs * 2.4 {
                        let text = format!("{:.0}%", share * 100.0);
                        cell_label(&mut svg, (x, y, cell_w, cell_h), *share, &text);
                    }
                }
                None => svg.rect(
                    x,
                    y,
                    cell_w,
                    cell_h,
                    &format!(r##"class="running" fill="#f3f4f6" stroke="{GRID}""##),
                ),
            }
        }
    }
    if hidden > 0 {
        svg.text(
            fs * 0.8,
            svg.top() + fs * 0.5,
            &format!("{hidden} earlier cohorts not shown"),
            &format!(r#"fill="{MUTED}" font-style="italic""#),
        );
    }
    svg.finish()
}

/// `1st`, `2nd`, `3rd`, `11th`, `62nd`.
fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, r) if r != 11 => "st",
        (2, r) if r != 12 => "nd",
        (3, r) if r != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// The scope's percentile on each measure as a bar on a 0–100 track
/// (the dashed line: the peers' median); a measure without a rank says
/// why.
pub fn benchmark_svg(b: &Benchmark, size: Size) -> String {
    let title = format!("Percentile among {} peers", b.level.as_str());
    let mut svg = Svg::new(size, ChartKind::Benchmark, &title);
    let fs = svg.fs;
    let top = svg.top();
    let rows = b.measures.len().max(1) as f64;
    let row_h = ((svg.h - top - fs * 0.8) / rows).min(fs * 3.0);
    let label_w = fs * 0.56 * 22.0;
    let x0 = fs * 0.8 + label_w;
    let track_w = ((svg.w - x0 - fs * 0.8) * 0.3).max(fs);
    for (i, m) in b.measures.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let mid = y + row_h / 2.0;
        svg.text(
            x0 - fs * 0.5,
            mid + fs * 0.35,
            &m.measure.replace('_', " "),
            &format!(r#"text-anchor="end" fill="{INK}""#),
        );
        svg.rect(
            x0,
            y + row_h * 0.2,
            track_w,
            row_h * 0.6,
            r##"class="track" fill="#c4b5fd""##,
        );
        let text = match m.percentile {
            Some(p) => {
                svg.rect(
                    x0,
                    y + row_h * 0.2,
                    (p / 100.0 * track_w).max(1.0),
                    row_h * 0.6,
                    r##"class="bar" fill="#6d28d9""##,
                );
                format!(
                    "{} percentile of {}: you {}, median {}",
                    ordinal(p.round() as u64),
                    m.peers,
                    format_insight(m.measure, m.value),
                    format_insight(m.measure, m.median)
                )
            }
            None => format!("not ranked: {}", m.reason.as_deref().unwrap_or("")),
        };
        svg.line(
            x0 + track_w / 2.0,
            y + row_h * 0.1,
            x0 + track_w / 2.0,
            y + row_h * 0.9,
            &format!(r#"stroke="{MUTED}" stroke-dasharray="3 2""#),
        );
        let chars = ((svg.w - x0 - track_w - fs * 1.2) / (fs * 0.6)).max(8.0) as usize;
        svg.text(
            x0 + track_w + fs * 0.5,
            mid + fs * 0.35,
            &truncate(&text, chars),
            &format!(r#"fill="{INK}""#),
        );
    }
    svg.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use chrono_tz::Tz;

    use crate::analytics::annotations::Annotation;
    use crate::analytics::impact::AfterJson;
    use crate::analytics::PeriodJson;
    use crate::model::benchmark::{self, Level, PeerCounts, Rules};
    use crate::model::cohorts::{self, ReachCounts, Stage};
    use crate::model::impact::{self as impact_model, Inputs, Windows};
    use crate::model::measures::Counts;
    use crate::model::scope::Filter;
    use crate::model::timing::{self, SlotCounts};
    use crate::model::window::Granularity;
    use crate::render::charts::png;

    fn period() -> PeriodJson {
        PeriodJson {
            from: "2025-03-01T00:00:00Z".into(),
            to: "2025-04-01T00:00:00Z".into(),
        }
    }

    pub(crate) fn impact(title: &str, inputs: Inputs) -> Impact {
        let now = 1_745_000_000;
        let w = Windows::new(now - 40 * 86_400, 28, 7, now);
        let measures = impact_model::compare(&w, &inputs, 1);
        Impact {
            scope: Filter::default(),
            period: period(),
            annotation: Annotation {
                id: "a1".into(),
                at: "2025-03-01T00:00:00Z".into(),
                title: title.into(),
                text: String::new(),
                org: "acme".into(),
                issuer: None,
                badge_class: None,
                created_at: "2025-03-01T00:00:00Z".into(),
            },
            days: 28,
            horizon: 7,
            before: period(),
            after: AfterJson {
                from: "x".into(),
                to: "y".into(),
                complete: true,
            },
            insights: impact_model::insights(&measures, title, 7),
            measures,
        }
    }

    pub(crate) fn timing_body(rows: &[SlotCounts]) -> Timing {
        Timing {
            scope: Filter::default(),
            period: period(),
            tz: "UTC",
            analysis: timing::analyse(Tz::UTC, 3_600, rows, 1),
        }
    }

    pub(crate) fn cohorts_body(rows: &[ReachCounts]) -> Cohorts {
        Cohorts {
            scope: Filter::default(),
            period: period(),
            granularity: "month",
            stage: Stage::Accepted,
            cohorts: cohorts::triangle(Granularity::Month, rows, 1_745_000_000),
        }
    }

    pub(crate) fn benchmark_body(peers: &[PeerCounts]) -> Benchmark {
        let rules = Rules {
            min_awarded: 1,
            min_peers: 5,
        };
        Benchmark {
            scope: Filter::default(),
            period: period(),
            level: Level::Org,
            min_awarded: 1,
            min_peers: 5,
            measures: benchmark::benchmark(("o0", ""), peers, rules),
        }
    }

    fn png_size(png: &[u8]) -> (u32, u32) {
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let be = |i: usize| u32::from_be_bytes(png[i..i + 4].try_into().unwrap());
        (be(16), be(20))
    }

    #[test]
    fn empty_insights_draw_no_data_or_unranked_bars() {
        let size = Size {
            width: 321,
            height: 234,
        };
        for svg in [
            impact_svg(&impact("x", Inputs::default()), size),
            timing_svg(&timing_body(&[]), size),
            cohorts_svg(&cohorts_body(&[]), size),
        ] {
            assert!(svg.contains(">no data</text>"), "{svg}");
            assert_eq!(png_size(&png(&svg).unwrap()), (321, 234));
        }
        let svg = benchmark_svg(&benchmark_body(&[]), size);
        assert_eq!(svg.matches("not ranked: ").count(), 5, "{svg}");
        assert_eq!(svg.matches(r#"class="bar""#).count(), 0, "{svg}");
        assert_eq!(png_size(&png(&svg).unwrap()), (321, 234));
    }

    #[test]
    fn insight_charts_draw_the_data() {
        let evil = "<b>New & \"improved\"</b>";
        let inputs = Inputs {
            before_cohort: impact_model::Cohort {
                awarded: 100,
                accepted: 45,
                shared: 9,
            },
            after_cohort: impact_model::Cohort {
                awarded: 100,
                accepted: 30,
                shared: 12,
            },
            before: Counts {
                awarded: 40,
                shares: 10,
                views: 30,
                ..Counts::default()
            },
            after: Counts {
                awarded: 25,
                shares: 10,
                views: 12,
                ..Counts::default()
            },
        };
        let svg = impact_svg(&impact(evil, inputs), Size::default());
        assert!(!svg.contains("<b>"), "{svg}");
        assert!(svg.contains("&lt;b&gt;New &amp;"), "{svg}");
        assert_eq!(svg.matches(r#"class="bar""#).count(), 5);
        assert!(svg.contains("45.0% → 30.0% (-33.3%, p = 0.03)"), "{svg}");
        assert_eq!(png_size(&png(&svg).unwrap()), (800, 400));

        let slot = |t: u32, awarded, accepted| SlotCounts {
            slot: t / 3_600,
            awarded,
            accepted,
            ..SlotCounts::default()
        };
        // Monday 2025-03-03 09:00 and 10:00 UTC, Sunday 2025-03-09 23:00.
        let rows = [
            slot(1_740_992_400, 4, 3),
            slot(1_740_996_000, 2, 0),
            slot(1_741_561_200, 1, 1),
        ];
        let svg = timing_svg(&timing_body(&rows), Size::default());
        assert_eq!(svg.matches(r#"class="cell""#).count(), 3, "{svg}");
        assert!(
            svg.contains("Monday 09:00: 4 awarded, 75.0% accepted"),
            "{svg}"
        );
        assert_eq!(svg.matches(r##"stroke="#dc2626""##).count(), 1, "best cell");
        assert_eq!(png_size(&png(&svg).unwrap()), (800, 400));

        let reach = |cohort: u32, period: Option<u32>, n| ReachCounts {
            cohort,
            reached: u8::from(period.is_some()),
            period: period.unwrap_or(0),
            assertions: n,
        };
        // February and March 2025 cohorts, now in mid-April.
        let (feb, mar, apr) = (1_738_368_000, 1_740_787_200, 1_743_465_600);
        let rows = [
            reach(feb, Some(feb), 2),
            reach(feb, Some(mar), 1),
            reach(feb, None, 1),
            reach(mar, Some(apr), 1),
        ];
        let svg = cohorts_svg(&cohorts_body(&rows), Size::default());
        // February: ages 0 and 1, then the running one; March: 0, then
        // the running one.
        assert_eq!(svg.matches(r#"class="cell""#).count(), 3, "{svg}");
        assert_eq!(svg.matches(r#"class="running""#).count(), 2, "{svg}");
        assert!(svg.contains(">2025-02 (4)<"), "{svg}");
        assert!(svg.contains(">75%<"), "{svg}");
        assert_eq!(png_size(&png(&svg).unwrap()), (800, 400));

        let peers: Vec<PeerCounts> = (0..6)
            .map(|i| PeerCounts {
                org_id: format!("o{i}"),
                issuer_id: String::new(),
                awarded: 10,
                accepted: i + 2,
                shared: 1,
                shares: 1,
                views: i,
            })
            .collect();
        let svg = benchmark_svg(&benchmark_body(&peers), Size::default());
        assert!(
            svg.contains("8th percentile of 6: you 20.0%, median 45.0%<"),
            "{svg}"
        );
        assert_eq!(png_size(&png(&svg).unwrap()), (800, 400));
        assert_eq!(ordinal(1), "1st");
        assert_eq!(ordinal(12), "12th");
        assert_eq!(ordinal(62), "62nd");
        assert_eq!(ordinal(103), "103rd");
    }
}
