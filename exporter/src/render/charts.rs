//! Charts of the analytics bodies (SPEC §8 `GET /api/v1/charts/…`): each
//! typed body of `analytics.rs` drawn as a self-contained SVG document,
//! and SVG rasterised to PNG with `resvg` (pure Rust).
//!
//! Owns the drawing only: no SQL, no HTTP, no parameters beyond the
//! already validated [`Size`]. Every string that comes from data (badge
//! names, attribute names, annotation titles) goes through [`escape`].
//! Text is set in DejaVu Sans: the PNG renderer loads it from the Debian
//! package `fonts-dejavu-core` at first use; without it PNGs have no text
//! (logged once), SVGs are unaffected.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use resvg::{tiny_skia, usvg};

use crate::analytics::distribution::Distribution;
use crate::analytics::lifecycle::Lifecycle;
use crate::analytics::overview::Overview;
use crate::analytics::performance_drivers::Drivers;
use crate::analytics::top_badges::TopBadges;
use crate::analytics::trends::Trends;
use crate::model::measures::Value;
use crate::model::performance_drivers::{self as drivers, ALPHA};
use crate::model::window::{rfc3339_i64, Granularity};

/// Default and allowed chart sizes, pixels.
pub const DEFAULT_WIDTH: u32 = 800;
pub const DEFAULT_HEIGHT: u32 = 400;
pub const MIN_SIDE: u32 = 200;
pub const MAX_SIDE: u32 = 4_000;

/// Font files tried for PNG text, in order.
pub const FONT_FILES: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
];

const FONT_FAMILY: &str = "DejaVu Sans, Verdana, Arial, sans-serif";
pub(super) const PALETTE: [&str; 8] = [
    "#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
];
pub(super) const INK: &str = "#1f2937";
pub(super) const MUTED: &str = "#6b7280";
pub(super) const GRID: &str = "#e5e7eb";

/// The charts, by URL name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartKind {
    Overview,
    Trends,
    Distribution,
    TopBadges,
    Drivers,
    Lifecycle,
    Impact,
    Timing,
    Cohorts,
    Benchmark,
}

impl ChartKind {
    pub const ALL: [ChartKind; 10] = [
        ChartKind::Overview,
        ChartKind::Trends,
        ChartKind::Distribution,
        ChartKind::TopBadges,
        ChartKind::Drivers,
        ChartKind::Lifecycle,
        ChartKind::Impact,
        ChartKind::Timing,
        ChartKind::Cohorts,
        ChartKind::Benchmark,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChartKind::Overview => "overview",
            ChartKind::Trends => "trends",
            ChartKind::Distribution => "distribution",
            ChartKind::TopBadges => "top-badges",
            ChartKind::Drivers => "drivers",
            ChartKind::Lifecycle => "lifecycle",
            ChartKind::Impact => "impact",
            ChartKind::Timing => "timing",
            ChartKind::Cohorts => "cohorts",
            ChartKind::Benchmark => "benchmark",
        }
    }

    pub fn parse(s: &str) -> Option<ChartKind> {
        ChartKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The image format, by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Svg,
}

impl ImageFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Svg => "image/svg+xml",
        }
    }
}

/// `NAME.EXT` of a chart URL, e.g. `top-badges.png`; the error names the
/// `chart` path segment.
pub fn parse_file(file: &str) -> Result<(ChartKind, ImageFormat), String> {
    let expected = || {
        ChartKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (name, ext) = file
        .rsplit_once('.')
        .ok_or_else(|| format!("chart: expected NAME.png or NAME.svg, got {file:?}"))?;
    let format = match ext {
        "png" => ImageFormat::Png,
        "svg" => ImageFormat::Svg,
        _ => return Err(format!("chart: expected a .png or .svg file, got {file:?}")),
    };
    let kind = ChartKind::parse(name)
        .ok_or_else(|| format!("chart: expected one of {}, got {name:?}", expected()))?;
    Ok((kind, format))
}

/// A chart's size in pixels, each side in `MIN_SIDE..=MAX_SIDE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl Default for Size {
    fn default() -> Self {
        Size {
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
        }
    }
}

impl Size {
    /// The `width` and `height` parameters (defaults when absent); errors
    /// name the parameter.
    pub fn parse(width: Option<&str>, height: Option<&str>) -> Result<Size, String> {
        let side = |name: &str, v: Option<&str>, default: u32| match v {
            None => Ok(default),
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (MIN_SIDE..=MAX_SIDE).contains(n))
                .ok_or_else(|| {
                    format!("{name}: expected an integer from {MIN_SIDE} to {MAX_SIDE}, got {v:?}")
                }),
        };
        Ok(Size {
            width: side("width", width, DEFAULT_WIDTH)?,
            height: side("height", height, DEFAULT_HEIGHT)?,
        })
    }
}

/// A chart could not be rasterised.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("svg: {0}")]
    Svg(#[from] usvg::Error),
    #[error("png: cannot allocate a {0}×{1} image")]
    Pixmap(u32, u32),
    #[error("png: {0}")]
    Encode(String),
}

/// `s` safe inside XML/HTML text and quoted attributes: `& < > " '`
/// escaped, characters XML 1.0 forbids replaced by U+FFFD.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() || matches!(c, '\u{FFFE}' | '\u{FFFF}') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters of `s`, with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

// ------------------------------------------------------------- formatting

/// `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let head = digits.len() % 3;
    let mut out = digits[..head].to_owned();
    for group in digits.as_bytes()[head..].chunks(3) {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(std::str::from_utf8(group).expect("ASCII digits"));
    }
    out
}

/// A measure's value as people read it: counts with separators, rates as
/// percentages, scores with one decimal, `—` for null.
pub fn format_metric(name: &str, value: Option<Value>) -> String {
    match value {
        None => "—".into(),
        Some(Value::Count(n)) => thousands(n),
        Some(Value::Ratio(r)) => match name {
            "acceptance_rate" | "share_rate" => format!("{:.1}%", r * 100.0),
            "external_impact_score" => format!("{r:.2}"),
            _ => format!("{r:.1}"),
        },
    }
}

/// A signed percentage change, `+12.5%`.
pub fn format_change(change: f64) -> String {
    format!("{:+.1}%", change * 100.0)
}

/// A compact axis label: `1.5k`, `2M`, `0.25`.
fn axis_label(v: f64) -> String {
    let a = v.abs();
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    };
    if a >= 1e6 {
        format!("{}M", trim(format!("{:.1}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else {
        trim(format!("{v:.2}"))
    }
}

/// The smallest 1/2/5 × 10^k step giving at most `ticks` intervals to
/// `max`, and the axis top.
fn nice_axis(max: f64, ticks: u32) -> (f64, f64) {
    if max <= 0.0 || !max.is_finite() {
        return (1.0 / f64::from(ticks), 1.0);
    }
    let raw = max / f64::from(ticks);
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (step, (max / step).ceil() * step)
}

// ---------------------------------------------------------------- drawing

/// An SVG document being written.
pub(super) struct Svg {
    pub(super) w: f64,
    pub(super) h: f64,
    /// Base font size.
    pub(super) fs: f64,
    pub(super) out: String,
}

impl Svg {
    pub(super) fn new(size: Size, kind: ChartKind, title: &str) -> Svg {
        let (w, h) = (f64::from(size.width), f64::from(size.height));
        let fs = (w.min(h * 2.0) / 55.0).clamp(8.0, 18.0);
        let mut out = String::with_capacity(8 * 1024);
        let _ = write!(
            out,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" font-family="{FONT_FAMILY}" font-size="{fs:.1}" class="chart chart-{}" role="img"><title>{}</title><rect width="100%" height="100%" fill="#ffffff"/>"##,
            size.width,
            size.height,
            size.width,
            size.height,
            kind.as_str(),
            escape(title)
        );
        let mut svg = Svg { w, h, fs, out };
        svg.text(
            fs * 0.8,
            fs * 1.5,
            &truncate(title, (w / (fs * 0.7)) as usize),
            &format!(
                r#"font-weight="bold" font-size="{:.1}" fill="{INK}""#,
                fs * 1.15
            ),
        );
        svg
    }

    /// Top of the drawing area below the title.
    pub(super) fn top(&self) -> f64 {
        self.fs * 2.6
    }

    /// `text` (escaped here) at (x, y) with extra attributes.
    pub(super) fn text(&mut self, x: f64, y: f64, text: &str, attrs: &str) {
        let _ = write!(
            self.out,
            r#"<text x="{x:.1}" y="{y:.1}" {attrs}>{}</text>"#,
            escape(text)
        );
    }

    pub(super) fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, attrs: &str) {
        let _ = write!(
            self.out,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" {attrs}/>"#,
            w.max(0.0),
            h.max(0.0)
        );
    }

    pub(super) fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, attrs: &str) {
        let _ = write!(
            self.out,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" {attrs}/>"#
        );
    }

    /// "no data", centred in the drawing area.
    pub(super) fn no_data(&mut self) {
        let (x, y) = (self.w / 2.0, (self.top() + self.h) / 2.0);
        self.text(
            x,
            y,
            "no data",
            &format!(
                r#"class="no-data" text-anchor="middle" font-size="{:.1}" fill="{MUTED}""#,
                self.fs * 1.4
            ),
        );
    }

    pub(super) fn finish(mut self) -> String {
        self.out.push_str("</svg>");
        self.out
    }
}

/// One horizontal bar.
pub(super) struct Bar {
    pub(super) label: String,
    pub(super) value: f64,
    pub(super) text: String,
    pub(super) color: &'static str,
    pub(super) opacity: f64,
}

/// Horizontal bars with labels on the left and the value text after each
/// bar; bars that do not fit are counted in a footnote. Negative values
/// extend left of a zero line.
pub(super) fn hbars(svg: &mut Svg, bars: &[Bar]) {
    if bars.is_empty() {
        svg.no_data();
        return;
    }
    let fs = svg.fs;
    let top = svg.top();
    let bottom = svg.h - fs * 0.8;
    let row_min = fs * 1.35;
    let fit = (((bottom - top) / row_min).floor() as usize).max(1);
    let (shown, hidden) = if bars.len() > fit {
        (&bars[..fit - 1], bars.len() - (fit - 1))
    } else {
        (bars, 0)
    };
    let rows = shown.len() + usize::from(hidden > 0);
    let row_h = ((bottom - top) / rows as f64).min(fs * 3.0);
    let longest = shown
        .iter()
        .map(|b| b.label.chars().count())
        .max()
        .unwrap_or(0);
    let label_w = (longest as f64 * fs * 0.62 + fs).min(svg.w * 0.38);
    let label_chars = ((label_w - fs) / (fs * 0.62)).max(3.0) as usize;
    let longest_text = shown
        .iter()
        .map(|b| b.text.chars().count())
        .max()
        .unwrap_or(0);
    let value_w = (longest_text as f64 * fs * 0.6 + fs).min(svg.w * 0.3);
    let x0 = fs * 0.8 + label_w;
    let plot_w = (svg.w - x0 - value_w - fs * 0.8).max(fs);
    let lo = shown.iter().map(|b| b.value).fold(0.0f64, f64::min);
    let hi = shown.iter().map(|b| b.value).fold(0.0f64, f64::max);
    let span = if hi - lo > 0.0 { hi - lo } else { 1.0 };
    let scale = |v: f64| x0 + (v - lo) / span * plot_w;
    let zero = scale(0.0);
    for (i, b) in shown.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let mid = y + row_h / 2.0;
        svg.text(
            x0 - fs * 0.5,
            mid + fs * 0.35,
            &truncate(&b.label, label_chars),
            &format!(r#"text-anchor="end" fill="{INK}""#),
        );
        let (a, z) = (scale(b.value), zero);
        let (bx, bw) = if a >= z { (z, a - z) } else { (a, z - a) };
        svg.rect(
            bx,
            y + row_h * 0.15,
            bw.max(1.0),
            row_h * 0.7,
            &format!(
                r#"class="bar" fill="{}" fill-opacity="{:.2}""#,
                b.color, b.opacity
            ),
        );
        // Negative bars are labelled right of the zero line, clear of the
        // row labels.
        let tx = if b.value >= 0.0 {
            bx + bw + fs * 0.4
        } else {
            z + fs * 0.4
        };
        svg.text(tx, mid + fs * 0.35, &b.text, &format!(r#"fill="{INK}""#));
    }
    if lo < 0.0 {
        svg.line(
            zero,
            top,
            zero,
            top + shown.len() as f64 * row_h,
            &format!(r#"stroke="{MUTED}" stroke-width="1""#),
        );
    }
    if hidden > 0 {
        svg.text(
            x0,
            top + shown.len() as f64 * row_h + row_h / 2.0 + fs * 0.35,
            &format!("+{hidden} more not shown"),
            &format!(r#"fill="{MUTED}" font-style="italic""#),
        );
    }
}

// ----------------------------------------------------------------- charts

/// The overview as KPI tiles: each measure's all-time value, its value in
/// the window and the trend against the window before.
pub fn overview_svg(o: &Overview, size: Size) -> String {
    let mut svg = Svg::new(size, ChartKind::Overview, "Overview: all-time KPIs");
    let c = o.kpis.counts;
    let empty = c.awarded == 0 && c.views == 0 && c.shares == 0 && c.badge_classes == 0;
    if empty {
        svg.no_data();
        return svg.finish();
    }
    let fs = svg.fs;
    let n = o.trends.0.len();
    let cols = if svg.w >= 700.0 {
        5
    } else if svg.w >= 420.0 {
        4
    } else {
        2
    };
    let rows = n.div_ceil(cols);
    let (x0, top) = (fs * 0.6, svg.top());
    let tile_w = (svg.w - 2.0 * x0) / cols as f64;
    let tile_h = (svg.h - top - fs * 0.6) / rows as f64;
    let small = (tile_h / 5.0).min(tile_w / 14.0).min(fs);
    let big = (tile_h / 2.6).min(tile_w / 7.0);
    for (i, (name, trend)) in o.trends.0.iter().enumerate() {
        let x = x0 + (i % cols) as f64 * tile_w;
        let y = top + (i / cols) as f64 * tile_h;
        svg.rect(
            x + 2.0,
            y + 2.0,
            tile_w - 4.0,
            tile_h - 4.0,
            r##"class="tile" rx="4" fill="#f9fafb" stroke="#e5e7eb""##,
        );
        let pad = small * 0.6;
        svg.text(
            x + pad + 2.0,
            y + small * 1.3,
            &truncate(&name.replace('_', " "), (tile_w / (small * 0.62)) as usize),
            &format!(r#"font-size="{small:.1}" fill="{MUTED}""#),
        );
        svg.text(
            x + pad + 2.0,
            y + small * 1.5 + big,
            &format_metric(name, o.kpis.get(name)),
            &format!(r#"font-size="{big:.1}" font-weight="bold" fill="{INK}""#),
        );
        let (arrow, color) = trend_arrow(trend.change);
        let period = format!(
            "{} {arrow} {}",
            format_metric(name, o.period_values.get(name)),
            trend
                .change
                .map(format_change)
                .unwrap_or_else(|| "—".into())
        );
        svg.text(
            x + pad + 2.0,
            y + tile_h - small * 0.9,
            &truncate(&period, (tile_w / (small * 0.62)) as usize),
            &format!(r#"font-size="{small:.1}" fill="{color}""#),
        );
    }
    svg.finish()
}

/// `▲` green for a rise, `▼` red for a fall, `■` grey when unchanged or
/// unknown.
pub fn trend_arrow(change: Option<f64>) -> (&'static str, &'static str) {
    match change {
        Some(c) if c > 0.0 => ("▲", "#15803d"),
        Some(c) if c < 0.0 => ("▼", "#b91c1c"),
        _ => ("■", MUTED),
    }
}

/// A bucket start as a short label for the granularity.
fn bucket_label(t: i64, g: Granularity) -> String {
    let s = rfc3339_i64(t);
    match g {
        Granularity::Minute | Granularity::Hour => {
            format!("{} {}", &s[5..10], &s[11..16])
        }
        Granularity::Day | Granularity::Week => s[..10].to_owned(),
        Granularity::Month => s[..7].to_owned(),
    }
}

/// One line per metric over the buckets (nulls break the line), on a
/// shared axis from 0, with the window's annotations as dashed markers.
pub fn trends_svg(t: &Trends, size: Size) -> String {
    let title = format!("Trends per {}", t.granularity.as_str());
    let mut svg = Svg::new(size, ChartKind::Trends, &title);
    let series: Vec<Vec<Option<f64>>> = t
        .metrics
        .iter()
        .map(|m| {
            t.values
                .iter()
                .map(|v| v.get(m).map(Value::as_f64))
                .collect()
        })
        .collect();
    let max = series
        .iter()
        .flatten()
        .flatten()
        .fold(0.0f64, |a, &b| a.max(b));
    if t.buckets.is_empty() || max <= 0.0 {
        svg.no_data();
        return svg.finish();
    }
    let fs = svg.fs;
    // Legend under the title.
    let mut lx = fs * 0.8;
    let ly = svg.top() + fs * 0.2;
    for (i, m) in t.metrics.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        svg.rect(
            lx,
            ly - fs * 0.7,
            fs * 0.8,
            fs * 0.8,
            &format!(r#"fill="{color}""#),
        );
        svg.text(lx + fs, ly, m, &format!(r#"fill="{INK}" class="legend""#));
        lx += fs * (2.0 + m.chars().count() as f64 * 0.62);
    }
    let (step, top_v) = nice_axis(max, 5);
    let left = fs * 0.8 + fs * 0.62 * (axis_label(top_v).len() as f64 + 1.0);
    let right = svg.w - fs * 1.2;
    let top = ly + fs * 1.2;
    let bottom = svg.h - fs * 2.0;
    let n = t.buckets.len();
    let x_of = |i: f64| {
        if n == 1 {
            (left + right) / 2.0
        } else {
            left + i / (n - 1) as f64 * (right - left)
        }
    };
    let y_of = |v: f64| bottom - v / top_v * (bottom - top);
    // Grid and y labels.
    let mut v = 0.0;
    while v <= top_v + step / 2.0 {
        let y = y_of(v);
        svg.line(
            left,
            y,
            right,
            y,
            &format!(r#"stroke="{GRID}" stroke-width="1""#),
        );
        svg.text(
            left - fs * 0.4,
            y + fs * 0.35,
            &axis_label(v),
            &format!(r#"text-anchor="end" fill="{MUTED}""#),
        );
        v += step;
    }
    // X labels, evenly thinned.
    let label_w = fs * 0.62 * (bucket_label(t.buckets[0], t.granularity).len() as f64 + 2.0);
    // 1.5 label widths apart: the outermost labels are not centred.
    let max_labels = (((right - left) / (label_w * 1.5)).floor() as usize).max(1);
    let every = n.div_ceil(max_labels).max(1);
    for i in (0..n).step_by(every) {
        let x = x_of(i as f64);
        svg.line(
            x,
            bottom,
            x,
            bottom + fs * 0.3,
            &format!(r#"stroke="{MUTED}""#),
        );
        // The outermost labels stay inside the chart.
        let anchor = if n > 1 && i == 0 {
            "start"
        } else if n > 1 && i == n - 1 {
            "end"
        } else {
            "middle"
        };
        svg.text(
            x,
            bottom + fs * 1.3,
            &bucket_label(t.buckets[i], t.granularity),
            &format!(r#"text-anchor="{anchor}" fill="{MUTED}""#),
        );
    }
    svg.line(left, bottom, right, bottom, &format!(r#"stroke="{MUTED}""#));
    // Annotations.
    for a in &t.annotations {
        let Ok(at) = chrono::DateTime::parse_from_rfc3339(&a.at) else {
            continue;
        };
        let at = at.timestamp();
        let i = t.buckets.partition_point(|&b| b <= at).saturating_sub(1);
        let next = t.buckets.get(i + 1).copied();
        let frac = match next {
            Some(nb) if nb > t.buckets[i] => {
                (at - t.buckets[i]) as f64 / (nb - t.buckets[i]) as f64
            }
            _ => 0.0,
        };
        let x = x_of(i as f64 + frac.clamp(0.0, 1.0));
        svg.line(
            x,
            top,
            x,
            bottom,
            r##"class="annotation" stroke="#9333ea" stroke-dasharray="4 3" stroke-width="1""##,
        );
        svg.text(
            x + fs * 0.2,
            top + fs * 0.8,
            &truncate(&a.title, 24),
            &format!(r##"font-size="{:.1}" fill="#9333ea""##, fs * 0.8),
        );
    }
    // Lines.
    for (k, values) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let mut d = String::new();
        let mut pen_down = false;
        let mut isolated = Vec::new();
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(v) => {
                    let (x, y) = (x_of(i as f64), y_of(*v));
                    let _ = write!(d, "{}{x:.1} {y:.1} ", if pen_down { "L" } else { "M" });
                    let prev = i > 0 && values[i - 1].is_some();
                    let next = values.get(i + 1).is_some_and(Option::is_some);
                    if !prev && !next {
                        isolated.push((x, y));
                    }
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let _ = write!(
            svg.out,
            r#"<path class="series" d="{}" fill="none" stroke="{color}" stroke-width="{:.1}" stroke-linejoin="round"/>"#,
            d.trim_end(),
            (fs / 6.0).max(1.5)
        );
        for (x, y) in isolated {
            let _ = write!(
                svg.out,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="{:.1}" fill="{color}"/>"#,
                fs / 4.0
            );
        }
    }
    svg.finish()
}

/// The distribution's rows as bars of their counts.
pub fn distribution_svg(d: &Distribution, size: Size) -> String {
    let title = format!("Distribution by {}", d.dimension.replace('_', " "));
    let mut svg = Svg::new(size, ChartKind::Distribution, &title);
    let bars: Vec<Bar> = d
        .rows
        .iter()
        .map(|r| Bar {
            label: if r.value.is_empty() {
                "(none)".into()
            } else {
                r.value.clone()
            },
            value: r.count as f64,
            text: match r.share {
                Some(s) => format!("{} ({:.1}%)", thousands(r.count), s * 100.0),
                None => thousands(r.count),
            },
            color: PALETTE[0],
            opacity: 1.0,
        })
        .collect();
    hbars(&mut svg, &bars);
    svg.finish()
}

/// A badge class's label: its name, else its id (with the org when the
/// scope spans orgs).
pub fn badge_label(name: &str, org: &str, id: &str, with_org: bool) -> String {
    let base = if name.is_empty() { id } else { name };
    if with_org {
        format!("{org}/{base}")
    } else {
        base.to_owned()
    }
}

/// The ranking as bars of the sort measure; low-sample classes paler.
pub fn top_badges_svg(t: &TopBadges, size: Size) -> String {
    let title = format!("Top badges by {}", t.sort.replace('_', " "));
    let mut svg = Svg::new(size, ChartKind::TopBadges, &title);
    let with_org = t.scope.org.is_none();
    let bars: Vec<Bar> = t
        .rows
        .iter()
        .map(|r| {
            let v = r.measures.get(t.sort);
            Bar {
                label: badge_label(&r.name, &r.org_id, &r.badge_class_id, with_org),
                value: v.map(Value::as_f64).unwrap_or(0.0),
                text: if r.low_sample {
                    format!("{} (low sample)", format_metric(t.sort, v))
                } else {
                    format_metric(t.sort, v)
                },
                color: PALETTE[0],
                opacity: if r.low_sample { 0.4 } else { 1.0 },
            }
        })
        .collect();
    hbars(&mut svg, &bars);
    svg.finish()
}

/// Every defined lift (attribute × measure) as a bar, in percent;
/// significant ones (`p < 0.05`) solid, others pale.
pub fn drivers_svg(d: &Drivers, size: Size) -> String {
    let mut svg = Svg::new(
        size,
        ChartKind::Drivers,
        "Drivers: lift with vs. without each attribute",
    );
    let mut bars = Vec::new();
    for dr in &d.analysis.drivers {
        for (m, label) in drivers::MEASURES {
            let Some(lift) = dr.lift.get(m) else { continue };
            let p = dr.p_value.get(m);
            let significant = p.is_some_and(|p| p < ALPHA);
            bars.push(Bar {
                label: format!("{} · {label}", dr.attribute),
                value: lift * 100.0,
                text: match p {
                    Some(p) => format!("{} ({})", format_change(lift), drivers::format_p(p)),
                    None => format_change(lift),
                },
                color: if lift >= 0.0 { "#16a34a" } else { "#dc2626" },
                opacity: if significant { 1.0 } else { 0.4 },
            });
        }
    }
    hbars(&mut svg, &bars);
    svg.finish()
}

/// The lifecycle funnel: centred bars of the stage counts, each with its
/// conversion from the previous stage.
pub fn lifecycle_svg(l: &Lifecycle, size: Size) -> String {
    let mut svg = Svg::new(size, ChartKind::Lifecycle, "Lifecycle funnel");
    let max = l.stages.iter().map(|s| s.count).max().unwrap_or(0);
    if max == 0 {
        svg.no_data();
        return svg.finish();
    }
    let fs = svg.fs;
    let top = svg.top();
    let row_h = (svg.h - top - fs * 0.6) / l.stages.len() as f64;
    let label_w = fs * 7.0;
    let text_w = fs * 16.0;
    let plot_w = (svg.w - label_w - text_w - fs * 1.6).max(fs);
    let cx = fs * 0.8 + label_w + plot_w / 2.0;
    for (i, s) in l.stages.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let mid = y + row_h / 2.0;
        let w = (s.count as f64 / max as f64 * plot_w).max(1.0);
        svg.rect(
            cx - w / 2.0,
            y + row_h * 0.12,
            w,
            row_h * 0.76,
            &format!(r#"class="bar" fill="{}""#, PALETTE[i % PALETTE.len()]),
        );
        svg.text(
            fs * 0.8 + label_w - fs * 0.4,
            mid + fs * 0.35,
            s.stage,
            &format!(r#"text-anchor="end" fill="{INK}""#),
        );
        let conv = if i == 0 {
            thousands(s.count)
        } else {
            match s.conversion {
                Some(c) => format!("{} · {:.1}% of previous", thousands(s.count), c * 100.0),
                None => format!("{} · —", thousands(s.count)),
            }
        };
        svg.text(
            cx + plot_w / 2.0 + fs * 0.6,
            mid + fs * 0.35,
            &conv,
            &format!(r#"fill="{INK}" class="conversion""#),
        );
    }
    svg.finish()
}

// -------------------------------------------------------------------- png

/// The fonts for PNG text, loaded once.
fn fonts() -> Arc<usvg::fontdb::Database> {
    static FONTS: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut db = usvg::fontdb::Database::new();
            for path in FONT_FILES {
                match std::fs::read(path) {
                    Ok(data) => db.load_font_data(data),
                    Err(e) => {
                        tracing::warn!(path, error = %e, "chart font missing; PNG text will not render (install fonts-dejavu-core)");
                    }
                }
            }
            db.set_sans_serif_family("DejaVu Sans");
            Arc::new(db)
        })
        .clone()
}

/// `svg` rasterised to a PNG of its own size. CPU-bound: call it off the
/// async executor.
pub fn png(svg: &str) -> Result<Vec<u8>, ChartError> {
    let options = usvg::Options {
        font_family: "DejaVu Sans".into(),
        fontdb: fonts(),
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_str(svg, &options)?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or(ChartError::Pixmap(size.width(), size.height()))?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap
        .encode_png()
        .map_err(|e| ChartError::Encode(e.to_string()))
}

/// Most PNGs rendered at once (a 4000×4000 image takes 64 MB).
pub const MAX_CONCURRENT_PNG: usize = 2;

/// [`png`] on the blocking pool, at most [`MAX_CONCURRENT_PNG`] at once.
pub async fn png_async(svg: String) -> Result<Vec<u8>, ChartError> {
    static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_PNG);
    let _slot = SLOTS
        .acquire()
        .await
        .expect("the semaphore is never closed");
    tokio::task::spawn_blocking(move || png(&svg))
        .await
        .map_err(|e| ChartError::Encode(format!("renderer panicked: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::analytics::distribution::DistributionEntry;
    use crate::analytics::lifecycle::lifecycle_of;
    use crate::analytics::overview::Indicators;
    use crate::analytics::top_badges::BadgeRow;
    use crate::analytics::top_badges::Order;
    use crate::analytics::trends::fill;
    use crate::analytics::{Body, PeriodJson};
    use crate::db::lifecycle::LifecycleRow;
    use crate::model::measures::{self, Counts, Measures};
    use crate::model::scope::Filter;

    fn period() -> PeriodJson {
        PeriodJson {
            from: "2024-03-01T00:00:00Z".into(),
            to: "2024-03-08T00:00:00Z".into(),
        }
    }

    fn overview(counts: Counts) -> Overview {
        let m = Measures::derive(counts);
        Overview {
            scope: Filter::default(),
            period: period(),
            kpis: m,
            period_values: m,
            trends: Indicators(measures::trends(&m, &Measures::default())),
        }
    }

    fn trends(values: Vec<Measures>) -> Trends {
        let buckets: Vec<i64> = (0..values.len() as i64)
            .map(|i| 1_709_251_200 + i * 86_400)
            .collect();
        Trends {
            scope: Filter::default(),
            period: period(),
            granularity: Granularity::Day,
            metrics: vec!["awarded", "acceptance_rate"],
            buckets,
            values,
            annotations: Vec::new(),
        }
    }

    fn distribution(rows: Vec<DistributionEntry>) -> Distribution {
        Distribution {
            scope: Filter::default(),
            period: period(),
            dimension: "award_method",
            rows,
        }
    }

    fn top(rows: Vec<BadgeRow>) -> TopBadges {
        TopBadges {
            scope: Filter {
                org: Some("acme".into()),
                ..Filter::default()
            },
            period: period(),
            sort: "performance",
            order: Order::Desc,
            min_awarded: 10,
            rows,
        }
    }

    fn lifecycle(row: LifecycleRow) -> Lifecycle {
        let (stages, median_hours) = lifecycle_of(&row);
        Lifecycle {
            scope: Filter::default(),
            period: period(),
            stages,
            median_hours,
        }
    }

    fn drivers_body() -> Drivers {
        Drivers {
            scope: Filter::default(),
            period: period(),
            analysis: drivers::Analysis::default(),
        }
    }

    /// Every chart of `data`, as SVG and PNG, at `size`.
    fn all_empty() -> Vec<Body> {
        vec![
            Body::Overview(overview(Counts::default())),
            Body::Trends(trends(fill(&[0, 86_400], &[]))),
            Body::Distribution(distribution(Vec::new())),
            Body::TopBadges(top(Vec::new())),
            Body::Drivers(drivers_body()),
            Body::Lifecycle(lifecycle(LifecycleRow::default())),
        ]
    }

    fn png_size(png: &[u8]) -> (u32, u32) {
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let be = |i: usize| u32::from_be_bytes(png[i..i + 4].try_into().unwrap());
        (be(16), be(20))
    }

    #[test]
    fn chart_files_and_sizes_are_validated() {
        assert_eq!(
            parse_file("top-badges.png").unwrap(),
            (ChartKind::TopBadges, ImageFormat::Png)
        );
        assert_eq!(
            parse_file("lifecycle.svg").unwrap(),
            (ChartKind::Lifecycle, ImageFormat::Svg)
        );
        for bad in ["top-badges", "pie.svg", "overview.gif", "overview.svg.png"] {
            assert!(parse_file(bad).unwrap_err().starts_with("chart:"), "{bad}");
        }
        assert_eq!(Size::parse(None, None).unwrap(), Size::default());
        assert_eq!(
            Size::parse(Some("200"), Some("4000")).unwrap(),
            Size {
                width: 200,
                height: 4000
            }
        );
        for (w, h, param) in [
            (Some("199"), None, "width:"),
            (Some("4001"), None, "width:"),
            (Some("wide"), None, "width:"),
            (Some("-1"), None, "width:"),
            (None, Some("0"), "height:"),
            (None, Some("1e3"), "height:"),
        ] {
            assert!(
                Size::parse(w, h).unwrap_err().starts_with(param),
                "{w:?} {h:?}"
            );
        }
    }

    #[test]
    fn strings_from_data_are_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(escape("a\u{0}b\u{1b}c\nd"), "a\u{FFFD}b\u{FFFD}c\nd");
        let evil = "<img src=x onerror=alert(1)>&\u{7}";
        let row = BadgeRow {
            org_id: "acme".into(),
            badge_class_id: "b1".into(),
            name: evil.into(),
            measures: Measures::derive(Counts {
                awarded: 20,
                accepted: 10,
                ..Counts::default()
            }),
            low_sample: false,
        };
        let svg = top_badges_svg(&top(vec![row]), Size::default());
        assert!(!svg.contains("<img"), "{svg}");
        assert!(svg.contains("&lt;img src=x"), "{svg}");
        // The document stays well-formed XML: it parses and rasterises.
        assert_eq!(png_size(&png(&svg).unwrap()), (800, 400));
    }

    #[test]
    fn empty_data_renders_no_data_charts_of_the_requested_size() {
        let size = Size {
            width: 321,
            height: 234,
        };
        for data in all_empty() {
            let svg = data.svg(size);
            assert!(svg.starts_with(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"321\" height=\"234\""
            ));
            assert!(svg.contains(">no data</text>"), "{svg}");
            assert_eq!(png_size(&png(&svg).unwrap()), (321, 234));
        }
    }

    #[test]
    fn charts_draw_the_data() {
        let m = |awarded, accepted| {
            Measures::derive(Counts {
                awarded,
                accepted,
                ..Counts::default()
            })
        };
        let svg = overview_svg(
            &overview(Counts {
                awarded: 1234,
                accepted: 600,
                views: 10,
                ..Counts::default()
            }),
            Size::default(),
        );
        assert_eq!(
            svg.matches(r#"class="tile""#).count(),
            measures::NAMES.len()
        );
        assert!(svg.contains(">1,234<"), "{svg}");
        assert!(svg.contains("48.6%"), "{svg}");

        // A null in the middle breaks the rate line into two pieces.
        let svg = trends_svg(&trends(vec![m(4, 2), m(0, 0), m(2, 2)]), Size::default());
        assert_eq!(svg.matches(r#"class="series""#).count(), 2);
        assert!(svg.contains("2024-03-01"), "{svg}");
        assert!(!svg.contains("no data"));

        let svg = distribution_svg(
            &distribution(vec![
                DistributionEntry {
                    value: "api".into(),
                    count: 3,
                    share: Some(0.75),
                },
                DistributionEntry {
                    value: "manual".into(),
                    count: 1,
                    share: Some(0.25),
                },
            ]),
            Size::default(),
        );
        assert_eq!(svg.matches(r#"class="bar""#).count(), 2);
        assert!(svg.contains("3 (75.0%)"), "{svg}");

        let svg = lifecycle_svg(
            &lifecycle(LifecycleRow {
                awarded: 10,
                accepted: 8,
                shared: 2,
                ..LifecycleRow::default()
            }),
            Size::default(),
        );
        assert_eq!(svg.matches(r#"class="bar""#).count(), 4);
        assert!(svg.contains("8 · 80.0% of previous"), "{svg}");
        assert!(svg.contains("0 · 0.0% of previous"), "{svg}");

        // Many bars: those that do not fit are counted.
        let rows: Vec<DistributionEntry> = (0..100)
            .map(|i| DistributionEntry {
                value: format!("c{i}"),
                count: 100 - i,
                share: None,
            })
            .collect();
        let svg = distribution_svg(
            &distribution(rows),
            Size {
                width: 400,
                height: 200,
            },
        );
        assert!(svg.contains("more not shown"), "{svg}");
        assert_eq!(png_size(&png(&svg).unwrap()), (400, 200));
    }

    #[test]
    fn formatting() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(
            format_metric("share_rate", Some(Value::Ratio(0.5))),
            "50.0%"
        );
        assert_eq!(
            format_metric("reach_score", Some(Value::Ratio(12.345))),
            "12.3"
        );
        assert_eq!(format_metric("views", None), "—");
        assert_eq!(format_change(-0.25), "-25.0%");
        assert_eq!(trend_arrow(None).0, "■");
        assert_eq!(trend_arrow(Some(0.1)).0, "▲");
        assert_eq!(axis_label(15_000.0), "15k");
        assert_eq!(axis_label(0.25), "0.25");
        assert_eq!(nice_axis(87.0, 5), (20.0, 100.0));
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
