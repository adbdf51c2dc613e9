//! The Grafana dashboards (`grafana/`) and the Prometheus configuration and
//! alerting rules (`deploy/prometheus/`), checked against the real things:
//!
//! - `dashboards_are_consistent`: the dashboard JSON is what
//!   `grafana/generate.py` writes; panel ids are unique and panels do not
//!   overlap; every datasource goes through a `${DS_…}` datasource variable
//!   (listed in `__inputs`, for import) whose default is provisioned;
//!   `editable` matches the provisioning's `allowUiUpdates`; every
//!   `$variable` is defined and every `$__macro` is one the
//!   grafana-clickhouse-datasource (or Grafana, for PromQL) expands and
//!   ClickHouse 18.16 can run; every dashboard has the cascading `org`,
//!   `issuer`, `badge_class` variables; every metric a panel or an alert
//!   reads is declared by a service.
//! - `provisioning_is_complete`: the datasources and their settings, a
//!   default for every environment variable the provisioning reads.
//! - `prometheus_config_and_rules_pass_promtool`: `promtool check config`
//!   (both Prometheus configs, which must scrape the same jobs),
//!   `promtool check rules`, `promtool test rules`; every alert has a
//!   `runbook_url` to its section of `deploy/prometheus/runbooks.md` and a
//!   unit test where it fires and one where it does not.
//! - `every_panel_query_runs_on_real_data`: the real pipeline (NATS,
//!   ClickHouse 18.16, the three services) takes known traffic and program
//!   updates. Then every ClickHouse query of every dashboard (panels,
//!   variables, annotations), expanded as Grafana would for "All" and for
//!   one org / issuer / badge class, runs on ClickHouse 18.16 and returns
//!   rows; the panels equal the analytics API for the same scope and window
//!   (overview KPIs and trend deltas, trends bucket by bucket, distribution,
//!   top badges, lifecycle, drivers, annotations) and the known traffic; the
//!   same queries run on current ClickHouse (chDB) on the same data with the
//!   same results; every PromQL query returns a series from a real
//!   Prometheus scraping the services, which also loads and evaluates the
//!   alerting rules.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use badgepulse_aggregator::schema::Schema;
use badgepulse_contract::signing::{sign, PixelIds};
use badgepulse_tests::{
    eventually, start_services, ClickHouse, Nats, Prometheus, StackConfig, StackPorts,
};
use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde_json::{json, Value};

const CH_UID: &str = "badgepulse-clickhouse";
const CH_TYPE: &str = "grafana-clickhouse-datasource";
const PROM_UID: &str = "badgepulse-prometheus";
const PROM_TYPE: &str = "prometheus";
/// The custom "All" value of the template variables.
const ALL: &str = "__all";
const VARIABLES: [&str; 3] = ["org", "issuer", "badge_class"];
/// Macros of grafana-clickhouse-datasource the dashboards may use.
/// (`$__timeInterval` is not one: it expands to `toStartOfInterval`,
/// which ClickHouse 18.16 does not have.)
const CH_MACROS: [&str; 4] = ["timeFilter", "fromTime", "toTime", "interval_s"];
/// Grafana's global variables the PromQL queries may use.
const PROM_MACROS: [&str; 3] = ["rate_interval", "interval", "range"];
const DASHBOARD_TITLES: [&str; 7] = [
    "badgepulse / Performance overview",
    "badgepulse / Distribution insights",
    "badgepulse / Top performing badges",
    "badgepulse / Performance drivers",
    "badgepulse / Lifecycle and trends",
    "badgepulse / Program insights",
    "badgepulse / Pipeline health",
];
const JOBS: [(&str, &str); 3] = [
    ("badgepulse-ingest", "127.0.0.1:8083"),
    ("badgepulse-exporter", "127.0.0.1:8084"),
    ("badgepulse-aggregator", "127.0.0.1:8082"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---------------------------------------------------------------------------
// Dashboards and their queries
// ---------------------------------------------------------------------------

struct Dashboard {
    file: String,
    json: Value,
}

fn dashboards() -> Vec<Dashboard> {
    let dir = root().join("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("dashboard file");
            Dashboard {
                file: p.file_name().unwrap().to_string_lossy().into_owned(),
                json: serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display())),
            }
        })
        .collect()
}

/// Every panel, rows' nested panels included.
fn panels(d: &Dashboard) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d.json["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Panel,
    Variable,
    Annotation,
}

/// One query of a dashboard: SQL for ClickHouse, PromQL for Prometheus.
#[derive(Debug, Clone)]
struct Query {
    dashboard: String,
    /// Panel title, variable name or annotation name.
    title: String,
    kind: Kind,
    uid: String,
    text: String,
}

impl Query {
    fn name(&self) -> String {
        format!("{} / {:?} {:?}", self.dashboard, self.kind, self.title)
    }
}

/// The datasource uid a reference resolves to on a Grafana provisioned
/// from `grafana/provisioning`: a `${VAR}` reference is the default
/// (`current`) of the dashboard's datasource variable `VAR`.
fn uid_of(d: &Dashboard, datasource: &Value) -> String {
    let uid = datasource["uid"].as_str().unwrap_or_default();
    match uid
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
    {
        Some(var) => datasource_variable(d, var)
            .and_then(|v| v["current"]["value"].as_str())
            .unwrap_or_default()
            .to_owned(),
        None => uid.to_owned(),
    }
}

/// The dashboard's datasource template variable `name`.
fn datasource_variable<'d>(d: &'d Dashboard, name: &str) -> Option<&'d Value> {
    d.json["templating"]["list"]
        .as_array()?
        .iter()
        .find(|v| v["type"] == "datasource" && v["name"] == name)
}

fn queries(d: &Dashboard) -> Vec<Query> {
    let mut out = Vec::new();
    let query = |title: &str, kind, uid: String, text: &str| Query {
        dashboard: d.file.clone(),
        title: title.to_owned(),
        kind,
        uid,
        text: text.to_owned(),
    };
    for v in d.json["templating"]["list"].as_array().expect("templating") {
        if v["type"] == "datasource" {
            continue;
        }
        let text = v["query"]
            .as_str()
            .or_else(|| v["query"]["rawSql"].as_str())
            .unwrap_or_default();
        out.push(query(
            v["name"].as_str().unwrap_or_default(),
            Kind::Variable,
            uid_of(d, &v["datasource"]),
            text,
        ));
    }
    for a in d.json["annotations"]["list"]
        .as_array()
        .expect("annotations")
    {
        let target = &a["target"];
        let text = target["rawSql"]
            .as_str()
            .or_else(|| target["expr"].as_str())
            .unwrap_or_default();
        out.push(query(
            a["name"].as_str().unwrap_or_default(),
            Kind::Annotation,
            uid_of(d, &a["datasource"]),
            text,
        ));
    }
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let ds = if t["datasource"].is_object() {
                &t["datasource"]
            } else {
                &p["datasource"]
            };
            let text = t["rawSql"]
                .as_str()
                .or_else(|| t["expr"].as_str())
                .unwrap_or_default();
            out.push(query(
                p["title"].as_str().unwrap_or_default(),
                Kind::Panel,
                uid_of(d, ds),
                text,
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Variables and macros: how Grafana and grafana-clickhouse-datasource expand
// ---------------------------------------------------------------------------

/// A piece of query text: literal text, a template variable reference
/// (`$name`, `${name}`, `${name:format}`, `[[name]]`) or a macro / global
/// variable (`$__name`, `$__name(arg)`).
#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    Var {
        name: String,
        format: Option<String>,
    },
    Macro {
        name: String,
        arg: Option<String>,
    },
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Splits query text the way Grafana's template service finds variables
/// (`\$(\w+)`, `\${…}`, `[[…]]`), keeping `$__…` names apart as macros.
fn pieces(text: &str) -> Vec<Piece> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    let flush = |lit: &mut String, out: &mut Vec<Piece>| {
        if !lit.is_empty() {
            out.push(Piece::Text(std::mem::take(lit)));
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '$' && chars.get(i + 1) == Some(&'{') {
            let end = (i + 2..chars.len())
                .find(|&j| chars[j] == '}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {text}"));
            let inner: String = chars[i + 2..end].iter().collect();
            let (name, format) = match inner.split_once(':') {
                Some((n, f)) => (n.to_owned(), Some(f.to_owned())),
                None => (inner, None),
            };
            flush(&mut lit, &mut out);
            if let Some(m) = name.strip_prefix("__") {
                out.push(Piece::Macro {
                    name: m.to_owned(),
                    arg: None,
                });
            } else {
                out.push(Piece::Var { name, format });
            }
            i = end + 1;
        } else if c == '$' && chars.get(i + 1).is_some_and(|&c| is_word(c)) {
            let end = (i + 1..chars.len())
                .find(|&j| !is_word(chars[j]))
                .unwrap_or(chars.len());
            let name: String = chars[i + 1..end].iter().collect();
            flush(&mut lit, &mut out);
            i = end;
            if let Some(m) = name.strip_prefix("__") {
                let mut arg = None;
                if chars.get(i) == Some(&'(') {
                    let close = (i..chars.len())
                        .find(|&j| chars[j] == ')')
                        .unwrap_or_else(|| panic!("unclosed macro call in {text}"));
                    arg = Some(chars[i + 1..close].iter().collect::<String>());
                    i = close + 1;
                }
                out.push(Piece::Macro {
                    name: m.to_owned(),
                    arg,
                });
            } else {
                out.push(Piece::Var { name, format: None });
            }
        } else if c == '[' && chars.get(i + 1) == Some(&'[') {
            let end = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == ']' && chars[j + 1] == ']')
                .unwrap_or_else(|| panic!("unclosed [[ in {text}"));
            let name: String = chars[i + 2..end].iter().collect();
            flush(&mut lit, &mut out);
            out.push(Piece::Var { name, format: None });
            i = end + 2;
        } else {
            lit.push(c);
            i += 1;
        }
    }
    flush(&mut lit, &mut out);
    out
}

/// The time range and interval of one panel query, epoch seconds.
#[derive(Debug, Clone, Copy)]
struct Range {
    from: u32,
    to: u32,
    interval_s: u32,
}

/// Expands a ClickHouse query as Grafana with grafana-clickhouse-datasource
/// does. First the frontend replaces variables through the datasource's
/// `format` function, which pastes a single value as it is (only a
/// multi-value array is quoted, `'a','b'`), and a custom "All" value
/// (`__all`) unformatted: the SQL quotes them itself (`'${org}'`). Then the
/// backend expands the macros (pkg/macros/macros.go):
/// `$__timeFilter(c)` → `c >= toDateTime(from) AND c <= toDateTime(to)`,
/// `$__fromTime` / `$__toTime` → `toDateTime(epoch)`, `$__interval_s` → the
/// interval in whole seconds (at least 1). Any other macro panics.
fn expand_sql(text: &str, vars: &BTreeMap<&str, &str>, r: Range) -> String {
    let mut out = String::new();
    for piece in pieces(text) {
        match piece {
            Piece::Text(t) => out.push_str(&t),
            Piece::Var { name, format } => {
                assert!(format.is_none(), "variable format ${{{name}:…}} in {text}");
                out.push_str(
                    vars.get(name.as_str())
                        .unwrap_or_else(|| panic!("undefined variable ${name} in {text}")),
                );
            }
            Piece::Macro { name, arg } => match (name.as_str(), arg) {
                ("timeFilter", Some(col)) => {
                    let col = col.trim();
                    out.push_str(&format!(
                        "{col} >= toDateTime({}) AND {col} <= toDateTime({})",
                        r.from, r.to
                    ));
                }
                ("fromTime", None) => out.push_str(&format!("toDateTime({})", r.from)),
                ("toTime", None) => out.push_str(&format!("toDateTime({})", r.to)),
                ("interval_s", None) => out.push_str(&r.interval_s.max(1).to_string()),
                (other, arg) => panic!("unsupported macro $__{other}({arg:?}) in {text}"),
            },
        }
    }
    out
}

/// Expands a PromQL query: variables as for SQL, Grafana's interval
/// globals as given (the test Prometheus scrapes every second).
fn expand_promql(text: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    for piece in pieces(text) {
        match piece {
            Piece::Text(t) => out.push_str(&t),
            Piece::Var { name, .. } => out.push_str(
                vars.get(name.as_str())
                    .unwrap_or_else(|| panic!("undefined variable ${name} in {text}")),
            ),
            Piece::Macro { name, arg: None } => out.push_str(match name.as_str() {
                "rate_interval" => "20s",
                "interval" => "5s",
                "range" => "10m",
                other => panic!("unsupported global ${other} in {text}"),
            }),
            Piece::Macro { name, arg } => panic!("unsupported $__{name}({arg:?}) in {text}"),
        }
    }
    out
}

#[test]
fn expansion_follows_the_datasource() {
    let vars = BTreeMap::from([("org", "acme"), ("issuer", ALL)]);
    let r = Range {
        from: 100,
        to: 200,
        interval_s: 0,
    };
    assert_eq!(
        expand_sql(
            "WHERE $__timeFilter(at) AND ('${org}' = '__all' OR org_id = '$org') AND i = '[[issuer]]' GROUP BY intDiv(t, $__interval_s) HAVING $__fromTime < $__toTime",
            &vars,
            r
        ),
        "WHERE at >= toDateTime(100) AND at <= toDateTime(200) AND ('acme' = '__all' OR org_id = 'acme') AND i = '__all' GROUP BY intDiv(t, 1) HAVING toDateTime(100) < toDateTime(200)"
    );
    assert_eq!(
        expand_promql("rate(x[$__rate_interval]) + increase(y[$__range])", &vars),
        "rate(x[20s]) + increase(y[10m])"
    );
    assert_eq!(
        pieces("$__fromTime_ms"),
        vec![Piece::Macro {
            name: "fromTime_ms".into(),
            arg: None
        }]
    );
    let forbidden =
        std::panic::catch_unwind(|| expand_sql("SELECT $__timeInterval(t)", &BTreeMap::new(), r));
    assert!(forbidden.is_err(), "$__timeInterval must be refused");
}

// ---------------------------------------------------------------------------
// Static checks
// ---------------------------------------------------------------------------

/// The provisioned datasources: uid → type.
fn provisioned_datasources() -> BTreeMap<String, String> {
    let doc = yaml("grafana/provisioning/datasources/datasources.yaml");
    doc["datasources"]
        .as_array()
        .expect("datasources list")
        .iter()
        .map(|d| {
            (
                d["uid"].as_str().expect("datasource uid").to_owned(),
                d["type"].as_str().expect("datasource type").to_owned(),
            )
        })
        .collect()
}

/// Every `"datasource": {"uid": …}` anywhere in `v`, with its JSON path.
fn datasource_refs(v: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = format!("{path}.{k}");
                if k == "datasource" {
                    out.push((p.clone(), child.clone()));
                }
                datasource_refs(child, &p, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                datasource_refs(child, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Metric names (`badgepulse_…`) in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("badgepulse_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !is_word(c)).unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// Whether a service declares metric `name` (histogram series suffixes
/// allowed): the full name or, for `badgepulse_<service>_x`, `"x"` appears
/// as a string literal in that service's metrics.rs.
fn declared(name: &str, sources: &BTreeMap<&str, String>) -> bool {
    let mut candidates = vec![name];
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            candidates.push(base);
        }
    }
    candidates.iter().any(|n| {
        for (service, src) in sources {
            if let Some(short) = n.strip_prefix(&format!("badgepulse_{service}_")) {
                if src.contains(&format!("\"{short}\"")) || src.contains(&format!("\"{n}\"")) {
                    return true;
                }
            }
        }
        sources["exporter"].contains(&format!("\"{n}\""))
    })
}

#[test]
fn dashboards_are_consistent() {
    // The measures' SQL is the exporter's (SPEC §7 written once), and the
    // JSON is what the generator writes from it.
    let printed = Command::new(badgepulse_tests::workspace_bin("badgepulse-exporter"))
        .arg("print-measures")
        .output()
        .expect("badgepulse-exporter print-measures");
    assert!(printed.status.success());
    assert_eq!(
        String::from_utf8_lossy(&printed.stdout),
        read("grafana/measures.json"),
        "grafana/measures.json is stale: badgepulse-exporter print-measures > grafana/measures.json"
    );
    let out = Command::new("python3")
        .arg(root().join("grafana/generate.py"))
        .arg("--check")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "grafana/generate.py --check: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let provisioned = provisioned_datasources();
    assert_eq!(
        provisioned,
        BTreeMap::from([
            (CH_UID.to_owned(), CH_TYPE.to_owned()),
            (PROM_UID.to_owned(), PROM_TYPE.to_owned())
        ])
    );
    let allow_ui_updates = yaml("grafana/provisioning/dashboards/dashboards.yaml")["providers"][0]
        ["allowUiUpdates"]
        .as_bool()
        .expect("allowUiUpdates");
    let dashboards = dashboards();
    let titles: BTreeSet<&str> = dashboards
        .iter()
        .map(|d| d.json["title"].as_str().expect("title"))
        .collect();
    assert_eq!(titles, DASHBOARD_TITLES.into_iter().collect());
    let uids: BTreeSet<&str> = dashboards
        .iter()
        .map(|d| d.json["uid"].as_str().expect("uid"))
        .collect();
    assert_eq!(
        uids.len(),
        dashboards.len(),
        "dashboard uids must be unique"
    );

    let mut metrics_used = BTreeSet::new();
    for d in &dashboards {
        let f = &d.file;
        let j = &d.json;
        assert!(
            j["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            "{f}: schemaVersion"
        );
        assert!(j["id"].is_null(), "{f}: provisioned dashboards carry no id");
        assert!(
            j["tags"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("badgepulse"))),
            "{f}: tag badgepulse (dashboard links use it)"
        );
        assert!(
            j["time"]["from"]
                .as_str()
                .is_some_and(|s| s.starts_with("now-")),
            "{f}: default time range"
        );

        // Panel ids unique, grid positions inside the 24 columns, no overlaps.
        let all = panels(d);
        let mut ids = BTreeSet::new();
        let mut rects = Vec::new();
        for p in &all {
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{f}: panel without id"));
            assert!(ids.insert(id), "{f}: duplicate panel id {id}");
            let g = &p["gridPos"];
            let (x, y, w, h) = (
                g["x"].as_u64().expect("gridPos.x"),
                g["y"].as_u64().expect("gridPos.y"),
                g["w"].as_u64().expect("gridPos.w"),
                g["h"].as_u64().expect("gridPos.h"),
            );
            assert!(w > 0 && h > 0 && x + w <= 24, "{f}: panel {id} gridPos {g}");
            rects.push((id, x, y, w, h));
        }
        for (i, a) in rects.iter().enumerate() {
            for b in &rects[i + 1..] {
                let overlap =
                    a.1 < b.1 + b.3 && b.1 < a.1 + a.3 && a.2 < b.2 + b.4 && b.2 < a.2 + a.4;
                assert!(!overlap, "{f}: panels {} and {} overlap", a.0, b.0);
            }
        }

        // Importable: every datasource (of panels, targets, variables and
        // annotations) goes through a datasource variable, `${DS_…}`, of the
        // same plugin type, whose default is the provisioned datasource of
        // that type; `__inputs` asks for exactly those variables (the
        // grafana.com import flow). Not editable, as the provisioning
        // lets no UI change be saved.
        assert_eq!(
            j["editable"].as_bool(),
            Some(allow_ui_updates),
            "{f}: editable must match allowUiUpdates of the provisioning"
        );
        let mut refs = Vec::new();
        datasource_refs(j, "", &mut refs);
        assert!(!refs.is_empty(), "{f}: no datasource");
        assert!(
            all.iter()
                .filter(|p| p["type"] != "row" && p["type"] != "text")
                .all(|p| p["datasource"].is_object()),
            "{f}: every panel names its datasource"
        );
        let mut used = BTreeSet::new();
        for (path, ds) in refs {
            let uid = ds["uid"]
                .as_str()
                .unwrap_or_else(|| panic!("{f}{path}: datasource without uid: {ds}"));
            let var = uid
                .strip_prefix("${DS_")
                .and_then(|v| v.strip_suffix('}'))
                .map(|v| format!("DS_{v}"))
                .unwrap_or_else(|| {
                    panic!("{f}{path}: datasource {uid} is not a ${{DS_…}} variable")
                });
            let v = datasource_variable(d, &var)
                .unwrap_or_else(|| panic!("{f}{path}: no datasource variable {var}"));
            assert_eq!(
                v["query"], ds["type"],
                "{f}{path}: {var} is of another type"
            );
            let default = v["current"]["value"].as_str().unwrap_or_default();
            assert_eq!(
                provisioned.get(default),
                ds["type"].as_str().map(str::to_owned).as_ref(),
                "{f}{path}: {var} defaults to {default:?}, not the provisioned datasource of its type"
            );
            used.insert(var);
        }
        let inputs: BTreeSet<String> = j["__inputs"]
            .as_array()
            .unwrap_or_else(|| panic!("{f}: __inputs"))
            .iter()
            .map(|i| {
                let name = i["name"].as_str().unwrap_or_default();
                let v = datasource_variable(d, name)
                    .unwrap_or_else(|| panic!("{f}: input {name} has no variable"));
                assert_eq!(i["type"], "datasource", "{f}: input {name}");
                assert_eq!(i["pluginId"], v["query"], "{f}: input {name}");
                name.to_owned()
            })
            .collect();
        assert_eq!(
            inputs, used,
            "{f}: __inputs are the datasource variables used"
        );

        // The three cascading variables, "All" with a custom value.
        let vars: Vec<&Value> = j["templating"]["list"]
            .as_array()
            .expect("templating")
            .iter()
            .filter(|v| v["type"] != "datasource")
            .collect();
        let names: Vec<&str> = vars
            .iter()
            .map(|v| v["name"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(names, VARIABLES, "{f}: template variables");
        for v in &vars {
            let n = &v["name"];
            assert_eq!(v["type"], "query", "{f}: {n}");
            assert_eq!(uid_of(d, &v["datasource"]), CH_UID, "{f}: {n}");
            assert_eq!(v["includeAll"], true, "{f}: {n}");
            assert_eq!(v["allValue"], ALL, "{f}: {n}");
            // Single values are pasted unquoted by the datasource; the SQL
            // quotes them. A multi-value selection would be quoted twice.
            assert_eq!(v["multi"], false, "{f}: {n}");
        }
        let refs_of = |i: usize| -> BTreeSet<String> {
            pieces(vars[i]["query"].as_str().unwrap_or_default())
                .into_iter()
                .filter_map(|p| match p {
                    Piece::Var { name, .. } => Some(name),
                    _ => None,
                })
                .collect()
        };
        assert!(refs_of(0).is_empty(), "{f}: org is the top of the cascade");
        assert_eq!(
            refs_of(1),
            BTreeSet::from(["org".to_owned()]),
            "{f}: issuer follows org"
        );
        assert_eq!(
            refs_of(2),
            BTreeSet::from(["org".to_owned(), "issuer".to_owned()]),
            "{f}: badge_class follows org and issuer"
        );

        // Every query: known datasource, defined variables, allowed macros.
        let defined: BTreeSet<&str> = names.iter().copied().collect();
        let qs = queries(d);
        assert!(
            qs.iter().any(|q| q.kind == Kind::Panel),
            "{f}: no panel query"
        );
        for q in &qs {
            let name = q.name();
            assert!(!q.text.trim().is_empty(), "{name}: empty query");
            let macros: &[&str] = match q.uid.as_str() {
                CH_UID => &CH_MACROS,
                PROM_UID => &PROM_MACROS,
                other => panic!("{name}: datasource {other:?}"),
            };
            for p in pieces(&q.text) {
                match p {
                    Piece::Var { name: v, format } => {
                        assert!(defined.contains(v.as_str()), "{name}: ${v} is not defined");
                        assert!(format.is_none(), "{name}: ${{{v}:{format:?}}}");
                    }
                    Piece::Macro { name: m, .. } => assert!(
                        macros.contains(&m.as_str()),
                        "{name}: $__{m} is not allowed here (allowed: {macros:?})"
                    ),
                    Piece::Text(_) => {}
                }
            }
            if q.uid == CH_UID {
                let upper = q.text.to_uppercase();
                for banned in [
                    "TOSTARTOFINTERVAL",
                    "WITH FILL",
                    "DATETIME64",
                    " OVER (",
                    " OVER(",
                    "TTL ",
                ] {
                    assert!(
                        !upper.contains(banned),
                        "{name}: {banned} is not in ClickHouse 18.16"
                    );
                }
                // Variables are compared as quoted strings with the All value.
                for v in VARIABLES {
                    if q.text.contains(&format!("${{{v}}}")) {
                        assert!(
                            q.text.contains(&format!("'${{{v}}}' = '{ALL}'")),
                            "{name}: ${{{v}}} must be guarded by '${{{v}}}' = '{ALL}'"
                        );
                    }
                }
            } else {
                metrics_used.extend(metric_names(&q.text));
            }
        }
        // Cascading filters only make sense with annotations on time series.
        if d.file != "pipeline-health.json" {
            let annotations = j["annotations"]["list"].as_array().expect("annotations");
            assert!(
                !annotations.is_empty(),
                "{f}: program updates as annotations"
            );
        }
    }

    // Every metric that a panel or an alert reads is declared by a service.
    let rules = yaml("deploy/prometheus/rules/badgepulse.yml");
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            metrics_used.extend(metric_names(rule["expr"].as_str().expect("expr")));
        }
    }
    // The metrics of badgepulse_runtime::metrics (build info, the HTTP
    // durations) are every service's.
    let runtime = read("runtime/src/metrics.rs");
    let sources = BTreeMap::from([
        ("ingest", read("ingest/src/metrics.rs") + &runtime),
        ("aggregator", read("aggregator/src/metrics.rs") + &runtime),
        (
            "exporter",
            read("exporter/src/telemetry.rs")
                + &read("exporter/src/business_metrics.rs")
                + &runtime,
        ),
    ]);
    assert!(metrics_used.len() > 20, "{metrics_used:?}");
    for m in &metrics_used {
        assert!(
            declared(m, &sources),
            "metric {m} is not declared by any service"
        );
    }
}

#[test]
fn provisioning_is_complete() {
    let doc = yaml("grafana/provisioning/datasources/datasources.yaml");
    let by_uid = |uid: &str| -> Value {
        doc["datasources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["uid"] == uid)
            .cloned()
            .unwrap_or_else(|| panic!("datasource {uid}"))
    };
    let prom = by_uid(PROM_UID);
    assert_eq!(prom["url"], "${PROMETHEUS_URL}");
    let ch = by_uid(CH_UID);
    let j = &ch["jsonData"];
    assert_eq!(j["protocol"], "http");
    assert_eq!(j["defaultDatabase"], "badgepulse");
    for key in ["host", "port", "username"] {
        assert!(
            j[key].as_str().is_some_and(|s| !s.is_empty()),
            "jsonData.{key}"
        );
    }
    assert_eq!(ch["secureJsonData"]["password"], "$CLICKHOUSE_PASSWORD");

    // Grafana has no default syntax for ${VAR}: grafana/grafana.env has one
    // for every variable the provisioning files read.
    let env: BTreeSet<String> = read("grafana/grafana.env")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .collect();
    for file in [
        "grafana/provisioning/datasources/datasources.yaml",
        "grafana/provisioning/dashboards/dashboards.yaml",
    ] {
        let text: String = read(file)
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        for p in pieces(&text) {
            if let Piece::Var { name, .. } = p {
                assert!(
                    env.contains(&name),
                    "{file}: ${name} has no default in grafana/grafana.env"
                );
            }
        }
    }

    let providers = yaml("grafana/provisioning/dashboards/dashboards.yaml");
    let p = &providers["providers"][0];
    assert_eq!(p["type"], "file");
    assert_eq!(p["folder"], "badgepulse");
    assert!(p["options"]["path"]
        .as_str()
        .is_some_and(|s| s.starts_with('/')));
}

// ---------------------------------------------------------------------------
// Prometheus configuration and rules
// ---------------------------------------------------------------------------

fn promtool(args: &[&str]) {
    let out = Command::new(badgepulse_tests::system_binary("promtool"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("promtool (Debian package prometheus)");
    assert!(
        out.status.success(),
        "promtool {}:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// job_name → targets of a Prometheus config file.
fn scrape_jobs(path: &str) -> BTreeMap<String, Vec<String>> {
    let doc = yaml(path);
    doc["scrape_configs"]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: scrape_configs"))
        .iter()
        .map(|c| {
            let targets = c["static_configs"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["targets"].as_array().cloned().unwrap_or_default())
                .map(|t| t.as_str().unwrap_or_default().to_owned())
                .collect();
            (
                c["job_name"].as_str().unwrap_or_default().to_owned(),
                targets,
            )
        })
        .collect()
}

#[test]
fn prometheus_config_and_rules_pass_promtool() {
    promtool(&["check", "config", "deploy/prometheus/prometheus.yml"]);
    promtool(&["check", "config", "deploy/local/prometheus.yml"]);
    promtool(&["check", "rules", "deploy/prometheus/rules/badgepulse.yml"]);
    promtool(&[
        "test",
        "rules",
        "deploy/prometheus/rules/badgepulse.test.yml",
    ]);

    let expected: BTreeMap<String, Vec<String>> = JOBS
        .iter()
        .map(|(j, t)| (j.to_string(), vec![t.to_string()]))
        .collect();
    assert_eq!(scrape_jobs("deploy/prometheus/prometheus.yml"), expected);
    assert_eq!(scrape_jobs("deploy/local/prometheus.yml"), expected);

    // Every alert: severity, summary, description and a runbook_url to its
    // section of deploy/prometheus/runbooks.md (one base URL for all), which
    // says what it means, what to check and how to fix it; a unit test
    // where it fires and one where it does not.
    let rules = yaml("deploy/prometheus/rules/badgepulse.yml");
    let tests = yaml("deploy/prometheus/rules/badgepulse.test.yml");
    let runbooks = read("deploy/prometheus/runbooks.md");
    let mut bases = BTreeSet::new();
    let mut alerts = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"]
                .as_str()
                .expect("alerting rules only")
                .to_owned();
            let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
            assert!(
                ["warning", "critical"].contains(&severity),
                "{name}: severity"
            );
            let a = &rule["annotations"];
            for key in ["summary", "description"] {
                assert!(
                    a[key].as_str().is_some_and(|s| !s.is_empty()),
                    "{name}: {key}"
                );
            }
            assert!(a["runbook"].is_null(), "{name}: runbook_url, not runbook");
            let url = a["runbook_url"].as_str().unwrap_or_default();
            let (base, anchor) = url
                .split_once('#')
                .unwrap_or_else(|| panic!("{name}: runbook_url {url:?} names no section"));
            assert!(
                base.starts_with("https://") && base.ends_with("/deploy/prometheus/runbooks.md"),
                "{name}: runbook_url {url:?}"
            );
            bases.insert(base.to_owned());
            assert_eq!(
                anchor,
                name.to_lowercase(),
                "{name}: the anchor of its heading"
            );
            let section = runbooks
                .split("\n## ")
                .find(|s| s.starts_with(&format!("{name}\n")))
                .unwrap_or_else(|| panic!("{name}: no section in runbooks.md"));
            for part in ["What it means:", "What to check:", "How to fix:"] {
                assert!(section.contains(part), "{name}: runbook lacks {part:?}");
            }
            alerts.push(name);
        }
    }
    assert_eq!(bases.len(), 1, "one runbook base URL: {bases:?}");
    assert_eq!(
        runbooks.matches("\n## ").count(),
        alerts.len(),
        "a runbook section per alert, no other"
    );
    for topic in [
        "Publish",
        "Lag",
        "DeadLetters",
        "ClickHouseInsert",
        "ServiceDown",
        "IngestLatency",
        "ExporterLatency",
    ] {
        assert!(
            alerts.iter().any(|a| a.contains(topic)),
            "no alert about {topic}"
        );
    }
    let cases: Vec<Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().cloned().unwrap_or_default())
        .collect();
    for alert in &alerts {
        let fires = cases.iter().any(|c| {
            c["alertname"] == alert.as_str()
                && c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty())
        });
        let quiet = cases.iter().any(|c| {
            c["alertname"] == alert.as_str()
                && c["exp_alerts"].as_array().is_some_and(|a| a.is_empty())
        });
        assert!(
            fires && quiet,
            "{alert}: needs a firing and a quiet unit test case"
        );
    }
}

// ---------------------------------------------------------------------------
// Against the real pipeline
// ---------------------------------------------------------------------------

const DB: &str = "grafana_e2e";
const TOKEN: &str = "grafana-test-token";
const API_KEY: &str = "grafana-test-admin-key";
const PIXEL_KEY: &str = "grafana-test-pixel-key-0123456789";
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

fn config(nats: &Nats, ch: &ClickHouse, ports: StackPorts) -> String {
    StackConfig::new(&nats.url(), &ch.url(), DB, ports)
        .open_pipeline(TOKEN, PIXEL_KEY, API_KEY)
        .toml()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The platform events, one per line: event_id, type after "badge.",
/// org/issuer/badge class, assertion (`-`: none), hours before the start of
/// the test (2: the current window, 5: the previous window, 72 and more:
/// neither; 180 to 320: the cohorts around the "Old news" update, ten
/// days ago), further fields.
const EVENTS: [&str; 37] = [
    r#"u-b1 upserted acme/i1/b1 - 72 {"name": "Rust 101", "skills": ["rust"], "attributes": {"has_expiry": true}}"#,
    r#"u-b2 upserted acme/i1/b2 - 72 {"name": "Go 101", "pathways": ["backend"], "attributes": {"has_expiry": false}}"#,
    r#"u-b3 upserted acme/i2/b3 - 72 {"name": "Data 101", "catalogs": ["main"]}"#,
    r#"aw-old awarded acme/i1/b1 a-old 72 {"award_method": "manual"}"#,
    r#"aw-0 awarded acme/i1/b1 a0 5 {"award_method": "lms"}"#,
    r#"ac-0 accepted acme/i1/b1 a0 5 {}"#,
    r#"aw-1 awarded acme/i1/b1 a1 2 {"award_method": "lms"}"#,
    r#"aw-2 awarded acme/i1/b1 a2 2 {"award_method": "lms"}"#,
    r#"aw-3 awarded acme/i1/b1 a3 2 {}"#,
    r#"aw-4 awarded acme/i1/b2 a4 2 {"award_method": "api"}"#,
    r#"aw-5 awarded acme/i1/b2 a5 2 {"award_method": "api"}"#,
    r#"aw-6 awarded acme/i2/b3 a6 2 {"award_method": "integration"}"#,
    r#"ac-1 accepted acme/i1/b1 a1 2 {}"#,
    r#"ac-2 accepted acme/i1/b1 a2 2 {}"#,
    r#"ac-4 accepted acme/i1/b2 a4 2 {}"#,
    r#"ac-6 accepted acme/i2/b3 a6 2 {}"#,
    r#"sh-1 shared acme/i1/b1 a1 2 {"channel": "linkedin"}"#,
    r#"sh-1b shared acme/i1/b1 a1 2 {"channel": "x"}"#,
    r#"sh-4 shared acme/i1/b2 a4 2 {"channel": "email"}"#,
    r#"sh-6 shared acme/i2/b3 a6 2 {"channel": "wallet"}"#,
    r#"vw-2 viewed acme/i1/b1 a2 2 {"source": "search"}"#,
    r#"rv-5 revoked acme/i1/b2 a5 2 {}"#,
    r#"u-g1 upserted globex/i9/g1 - 72 {"name": "Safety 101", "courses": ["hse"]}"#,
    r#"aw-g1 awarded globex/i9/g1 ga1 2 {"award_method": "lms"}"#,
    r#"ac-g1 accepted globex/i9/g1 ga1 2 {}"#,
    r#"sh-g1 shared globex/i9/g1 ga1 2 {"channel": "linkedin"}"#,
    r#"vw-g1 viewed globex/i9/g1 ga1 2 {"source": "direct", "country": "DE"}"#,
    r#"aw-o1 awarded acme/i1/b1 o1 300 {}"#,
    r#"ac-o1 accepted acme/i1/b1 o1 299 {}"#,
    r#"aw-o2 awarded acme/i1/b1 o2 310 {}"#,
    r#"aw-o3 awarded acme/i1/b2 o3 320 {}"#,
    r#"ac-o3 accepted acme/i1/b2 o3 318 {}"#,
    r#"sh-o3 shared acme/i1/b2 o3 317 {"channel": "email"}"#,
    r#"aw-o4 awarded acme/i1/b1 o4 200 {}"#,
    r#"ac-o4 accepted acme/i1/b1 o4 199 {}"#,
    r#"sh-o4 shared acme/i1/b1 o4 198 {"channel": "x"}"#,
    r#"aw-o5 awarded acme/i2/b3 o5 190 {}"#,
];

fn platform_events(now: DateTime<Utc>) -> Vec<Value> {
    EVENTS
        .iter()
        .map(|line| {
            let f: Vec<&str> = line.splitn(6, ' ').collect();
            let ids: Vec<&str> = f[2].split('/').collect();
            let kind = match f[1] {
                "upserted" => "badge_class.upserted".to_owned(),
                k => format!("badge.{k}"),
            };
            let hours_ago: i64 = f[4].parse().expect("hours");
            let mut e: Value = serde_json::from_str(f[5]).expect("valid JSON");
            e["event_id"] = json!(f[0]);
            e["type"] = json!(kind);
            e["occurred_at"] = json!(rfc3339(now - chrono::Duration::hours(hours_ago)));
            e["org_id"] = json!(ids[0]);
            e["issuer_id"] = json!(ids[1]);
            e["badge_class_id"] = json!(ids[2]);
            if f[3] != "-" {
                e["assertion_id"] = json!(f[3]);
            }
            e
        })
        .collect()
}

fn pixel_query(assertion: &str, badge: &str) -> String {
    let ids = PixelIds {
        org_id: "acme",
        issuer_id: "i1",
        badge_class_id: badge,
        assertion_id: assertion,
    };
    format!(
        "o=acme&i=i1&b={badge}&a={assertion}&kid=k1&sig={}",
        sign(PIXEL_KEY.as_bytes(), &ids)
    )
}

/// Pixel and share beacons: three viewers, one share, and dropped hits.
/// Returns how many are accepted.
async fn send_beacons(http: &reqwest::Client, ingest: &str) -> u64 {
    let hits: [(&str, String, &str, &str, Option<&str>); 8] = [
        (
            "p.gif",
            pixel_query("a1", "b1"),
            BROWSER,
            "198.51.100.1",
            Some("https://www.linkedin.com/feed/"),
        ),
        (
            "p.gif",
            pixel_query("a1", "b1"),
            BROWSER,
            "198.51.100.1",
            None,
        ),
        (
            "p.gif",
            pixel_query("a1", "b1"),
            BROWSER,
            "198.51.100.2",
            Some("https://badges.example.org/b/1"),
        ),
        (
            "p.gif",
            format!("{}&src=email", pixel_query("a4", "b2")),
            BROWSER,
            "198.51.100.3",
            None,
        ),
        (
            "s.gif",
            format!("{}&c=facebook", pixel_query("a2", "b1")),
            BROWSER,
            "198.51.100.5",
            None,
        ),
        // Dropped: a link-preview bot, an HTTP library, a bad signature.
        (
            "p.gif",
            pixel_query("a1", "b1"),
            "LinkedInBot/1.0 (compatible; Mozilla/5.0)",
            "198.51.100.6",
            None,
        ),
        (
            "p.gif",
            pixel_query("a1", "b1"),
            "curl/8.5.0",
            "198.51.100.6",
            None,
        ),
        (
            "p.gif",
            pixel_query("a1", "b1").replace("sig=", "sig=0"),
            BROWSER,
            "198.51.100.7",
            None,
        ),
    ];
    for (path, query, ua, ip, referer) in hits {
        let mut req = http
            .get(format!("{ingest}/{path}?{query}"))
            .header("User-Agent", ua)
            .header("X-Forwarded-For", ip)
            .header("CF-IPCountry", "NL");
        if let Some(r) = referer {
            req = req.header("Referer", r);
        }
        let r = req.send().await.expect("pixel request");
        assert_eq!(r.status(), 200);
    }
    5
}

/// A scope of the template variables and the same scope for the API.
struct Scope {
    name: &'static str,
    org: &'static str,
    issuer: &'static str,
    badge_class: &'static str,
}

impl Scope {
    fn vars(&self) -> BTreeMap<&'static str, &'static str> {
        BTreeMap::from([
            ("org", self.org),
            ("issuer", self.issuer),
            ("badge_class", self.badge_class),
        ])
    }

    fn api_params(&self) -> String {
        let mut p = String::new();
        for (k, v) in [
            ("org", self.org),
            ("issuer", self.issuer),
            ("badge_class", self.badge_class),
        ] {
            if v != ALL {
                p.push_str(&format!("&{k}={v}"));
            }
        }
        p
    }
}

const SCOPES: [Scope; 4] = [
    Scope {
        name: "all",
        org: ALL,
        issuer: ALL,
        badge_class: ALL,
    },
    Scope {
        name: "org",
        org: "acme",
        issuer: ALL,
        badge_class: ALL,
    },
    Scope {
        name: "issuer",
        org: "acme",
        issuer: "i1",
        badge_class: ALL,
    },
    Scope {
        name: "badge",
        org: "acme",
        issuer: "i1",
        badge_class: "b1",
    },
];

/// A result in TabSeparatedWithNames.
#[derive(Debug)]
struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn parse(tsv: &str) -> Table {
        let mut lines = tsv.lines();
        let columns = lines
            .next()
            .unwrap_or_default()
            .split('\t')
            .map(str::to_owned)
            .collect();
        let rows = lines
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect();
        Table { columns, rows }
    }

    fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns))
    }

    fn text(&self, row: usize, name: &str) -> &str {
        &self.rows[row][self.col(name)]
    }

    /// `None` for NULL.
    fn num(&self, row: usize, name: &str) -> Option<f64> {
        let v = self.text(row, name);
        (v != "\\N").then(|| v.parse().unwrap_or_else(|e| panic!("{name} = {v:?}: {e}")))
    }

    fn column_texts(&self, name: &str) -> Vec<String> {
        (0..self.rows.len())
            .map(|r| self.text(r, name).to_owned())
            .collect()
    }
}

async fn ch_query(ch: &ClickHouse, sql: &str) -> Result<String, String> {
    let r = reqwest::Client::new()
        .post(format!("{}/?database={DB}", ch.url()))
        .body(sql.to_owned())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let ok = r.status().is_success();
    let body = r.text().await.map_err(|e| e.to_string())?;
    if ok {
        Ok(body)
    } else {
        Err(body.trim().to_owned())
    }
}

fn api_num(v: &Value) -> Option<f64> {
    if v.is_null() {
        None
    } else {
        Some(v.as_f64().unwrap_or_else(|| panic!("{v} is not a number")))
    }
}

fn assert_close(panel: Option<f64>, api: Option<f64>, what: &str) {
    match (panel, api) {
        (None, None) => {}
        (Some(a), Some(b)) => assert!(
            (a - b).abs() <= 1e-9 * b.abs().max(1.0),
            "{what}: panel {a} != API {b}"
        ),
        _ => panic!("{what}: panel {panel:?} != API {api:?}"),
    }
}

/// `GET` an analytics endpoint with the admin key; the JSON body.
async fn api_get(http: &reqwest::Client, url: &str) -> Value {
    let r = http.get(url).bearer_auth(API_KEY).send().await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {body}");
    body
}

/// The measures a trend panel may show (all of them in one API request).
const TREND_METRICS: [&str; 11] = [
    "awarded",
    "accepted",
    "shared",
    "shares",
    "views",
    "unique_viewers",
    "acceptance_rate",
    "share_rate",
    "engagement_score",
    "external_impact_score",
    "reach_score",
];
/// The measures of a top-badges row.
const TOP_METRICS: [&str; 12] = [
    "awarded",
    "accepted",
    "shared",
    "shares",
    "views",
    "unique_viewers",
    "acceptance_rate",
    "share_rate",
    "engagement_score",
    "external_impact_score",
    "reach_score",
    "performance",
];
/// The fields of a driver group, and the measures with a lift.
const DRIVER_GROUP_FIELDS: [&str; 7] = [
    "badge_classes",
    "awarded",
    "engagement_score",
    "reach_score",
    "acceptance_rate",
    "share_rate",
    "external_impact_score",
];
const DRIVER_LIFTS: [&str; 5] = [
    "engagement_score",
    "reach_score",
    "acceptance_rate",
    "share_rate",
    "external_impact_score",
];

/// Runs statements in chDB (tests/scripts/chdb_run.py, current ClickHouse)
/// from an empty directory; (name, Ok(TabSeparated output) | Err(error)).
fn run_chdb(statements: &[(String, String)]) -> Vec<(String, Result<String, String>)> {
    let script = root().join("tests/scripts/chdb_run.py");
    let cwd = tempfile::tempdir().expect("temp dir");
    let request = json!({"statements": statements.iter().map(|(n, s)| json!({"name": n, "sql": s})).collect::<Vec<_>>()});
    let mut child = Command::new("python3")
        .arg(script)
        .current_dir(cwd.path())
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 with chdb-core (deploy/local/install.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("request to chdb_run.py");
    let out = child.wait_with_output().expect("chdb_run.py");
    assert!(out.status.success(), "chdb_run.py failed");
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).expect("chdb_run.py output");
    results
        .into_iter()
        .map(|r| {
            let name = r["name"].as_str().unwrap_or_default().to_owned();
            if r["ok"] == true {
                (
                    name,
                    Ok(r["output"].as_str().unwrap_or_default().to_owned()),
                )
            } else {
                (
                    name,
                    Err(r["error"].as_str().unwrap_or_default().to_owned()),
                )
            }
        })
        .collect()
}

fn sorted_lines(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.lines().collect();
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_runs_on_real_data() {
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let ports = StackPorts::free();
    let cfg = config(&nats, &ch, ports);
    let _services = start_services(&cfg, &ports.all()).await;
    let ingest = format!("127.0.0.1:{}", ports.ingest);
    let aggregator = format!("127.0.0.1:{}", ports.aggregator);
    let exporter = format!("127.0.0.1:{}", ports.exporter);
    // Prometheus scrapes the services from the start, with the real rules.
    let rules = root().join("deploy/prometheus/rules/badgepulse.yml");
    // Each service's metrics are on its admin listener.
    let ingest_admin = format!("127.0.0.1:{}", ports.ingest_admin);
    let exporter_admin = format!("127.0.0.1:{}", ports.exporter_admin);
    let prometheus = Prometheus::start(
        &[
            ("badgepulse-ingest", &ingest_admin),
            ("badgepulse-aggregator", &aggregator),
            ("badgepulse-exporter", &exporter_admin),
        ],
        &[&rules],
    )
    .await;

    // Known traffic.
    let http = reqwest::Client::new();
    let now = Utc::now();
    let events = platform_events(now);
    let r = http
        .post(format!("http://{ingest}/v1/events"))
        .bearer_auth(TOKEN)
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["accepted"], events.len(), "{body}");
    let beacons = send_beacons(&http, &format!("http://{ingest}")).await;
    let expected_rows = events.len() as u64 + beacons;
    ch.wait_for_events(DB, expected_rows, Duration::from_secs(60))
        .await;
    // Program updates, created through the API: org-wide, per badge class,
    // another org, and one before the window.
    let mut annotation_ids: BTreeMap<&str, String> = BTreeMap::new();
    for (org, issuer, badge, minutes_ago, title) in [
        ("acme", "", "", 60, "Spring program"),
        ("acme", "i1", "b1", 90, "Rust badge redesign"),
        ("acme", "i1", "b2", 80, "Go badge renamed"),
        ("globex", "", "", 50, "Globex kickoff"),
        ("acme", "", "", 60 * 24 * 10, "Old news"),
    ] {
        let mut body = json!({
            "org": org,
            "at": rfc3339(now - chrono::Duration::minutes(minutes_ago)),
            "title": title,
            "text": format!("{title}: details"),
        });
        if !issuer.is_empty() {
            body["issuer"] = json!(issuer);
        }
        if !badge.is_empty() {
            body["badge_class"] = json!(badge);
        }
        let r = http
            .post(format!("http://{exporter}/api/v1/annotations"))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "{status}: {body}");
        let created: Value = serde_json::from_str(&body).unwrap();
        annotation_ids.insert(title, created["id"].as_str().unwrap().to_owned());
    }

    // The window: whole hours, so that rollup_hour answers it exactly like
    // the API; it holds `cur` and the beacons, the previous window holds
    // `prev`, and `old` is in neither.
    let hour = now
        .with_minute(0)
        .unwrap()
        .with_second(0)
        .unwrap()
        .with_nanosecond(0)
        .unwrap();
    let from = hour - chrono::Duration::hours(3);
    let to = hour + chrono::Duration::hours(2);
    let range = Range {
        from: from.timestamp() as u32,
        to: to.timestamp() as u32,
        interval_s: 3600,
    };

    // Every ClickHouse query of every dashboard, for every scope, on 18.16.
    let dashboards = dashboards();
    let ch_queries: Vec<Query> = dashboards
        .iter()
        .flat_map(queries)
        .filter(|q| q.uid == CH_UID)
        .collect();
    // (name, expanded SQL, 18.16 result)
    let mut runs: Vec<(String, String, Table, String)> = Vec::new();
    let mut failures = Vec::new();
    for q in &ch_queries {
        for scope in &SCOPES {
            let sql = expand_sql(&q.text, &scope.vars(), range);
            let name = format!("{} [{}]", q.name(), scope.name);
            match ch_query(&ch, &format!("{sql}\nFORMAT TabSeparatedWithNames")).await {
                Ok(out) => {
                    let table = Table::parse(&out);
                    if table.rows.is_empty() {
                        failures.push(format!("{name}: no rows\n{sql}"));
                    }
                    runs.push((name, sql, table, out));
                }
                Err(e) => failures.push(format!("{name}: ClickHouse 18.16 refused it: {e}\n{sql}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(runs.len() >= 4 * 60, "only {} query runs", runs.len());
    let result = |dashboard: &str, title: &str, scope: &str| -> &Table {
        let prefix = format!("{dashboard} / ");
        let suffix = format!("[{scope}]");
        let matches: Vec<&Table> = runs
            .iter()
            .filter(|(n, ..)| {
                n.starts_with(&prefix) && n.ends_with(&suffix) && n.contains(&format!("{title:?}"))
            })
            .map(|(_, _, t, _)| t)
            .collect();
        assert!(
            !matches.is_empty(),
            "no result for {dashboard} {title} {scope}"
        );
        matches[0]
    };

    // Key panels equal the analytics API for the same scope and window.
    let window = format!("from={}&to={}", rfc3339(from), rfc3339(to));
    for scope in &SCOPES {
        let sn = scope.name;
        // `path?from=…&to=…` plus the scope's and `extra` parameters.
        let get = |path: &str, extra: &str| {
            let url = format!(
                "http://{exporter}/api/v1/{path}?{window}{}{extra}",
                scope.api_params()
            );
            let http = &http;
            async move { api_get(http, &url).await }
        };

        // Overview: all-time KPIs, and each period panel with its change.
        let overview = get("overview", "").await;
        let kpis = result("performance-overview.json", "All-time KPIs", sn);
        assert_eq!(kpis.rows.len(), 1);
        assert_eq!(kpis.columns.len(), 9, "{:?}", kpis.columns);
        for metric in &kpis.columns {
            let what = format!("[{sn}] all-time {metric}");
            assert_close(
                kpis.num(0, metric),
                api_num(&overview["kpis"][metric]),
                &what,
            );
        }
        let mut compared = 0;
        for (name, _, table, _) in &runs {
            if !(name.starts_with("performance-overview.json")
                && name.ends_with(&format!("[{sn}]")))
            {
                continue;
            }
            if table.columns.len() != 2 || table.columns[1] != "change" {
                continue;
            }
            let metric = &table.columns[0];
            let period = api_num(&overview["period_values"][metric]);
            let change = api_num(&overview["trends"][metric]["change"]);
            assert_close(table.num(0, metric), period, name);
            assert_close(table.num(0, "change"), change, name);
            compared += 1;
        }
        assert_eq!(compared, 9, "[{sn}] period KPI panels");

        // Trends: every time series of counts and scores, bucket by bucket.
        let metrics = format!("&granularity=hour&metrics={}", TREND_METRICS.join(","));
        let api_trends = get("trends", &metrics).await;
        let series = &api_trends["series"];
        let mut compared = 0;
        for (name, _, table, _) in &runs {
            let trend_panel = name.ends_with(&format!("[{sn}]"))
                && table.columns.first().is_some_and(|c| c == "time")
                && table.columns[1..]
                    .iter()
                    .all(|c| TREND_METRICS.contains(&c.as_str()));
            if !trend_panel {
                continue;
            }
            for metric in &table.columns[1..] {
                let points: BTreeMap<&str, Option<f64>> = series[metric]
                    .as_array()
                    .unwrap_or_else(|| panic!("trends: no series {metric}: {api_trends}"))
                    .iter()
                    .map(|p| (p["t"].as_str().unwrap(), api_num(&p["value"])))
                    .collect();
                let mut seen = BTreeSet::new();
                for row in 0..table.rows.len() {
                    let t = table.text(row, "time").replace(' ', "T") + "Z";
                    let api = points
                        .get(t.as_str())
                        .copied()
                        .unwrap_or_else(|| panic!("{name}: no API bucket {t}"));
                    assert_close(
                        table.num(row, metric),
                        api,
                        &format!("{name} {metric} at {t}"),
                    );
                    seen.insert(t);
                }
                for (t, v) in &points {
                    if !seen.contains(*t) {
                        assert!(
                            v.is_none() || *v == Some(0.0),
                            "{name}: API has {metric} {v:?} at {t}, the panel nothing"
                        );
                    }
                }
            }
            compared += 1;
        }
        assert!(
            compared >= 6,
            "[{sn}] only {compared} trend panels compared"
        );

        // Distribution, each dimension.
        for (title, dimension, count) in [
            ("Award method: counts", "award_method", "awards"),
            ("Share channel: counts", "share_channel", "shares"),
            ("View source: counts", "view_source", "views"),
            ("Viewer country: counts", "view_country", "views"),
        ] {
            let api = get("distribution", &format!("&dimension={dimension}")).await;
            let api_rows = api["rows"].as_array().unwrap();
            let panel = result("distribution-insights.json", title, sn);
            let what = format!("[{sn}] {title}");
            assert_eq!(panel.rows.len(), api_rows.len(), "{what}: {api}");
            for (row, r) in api_rows.iter().enumerate() {
                assert_eq!(
                    panel.text(row, dimension),
                    r["value"].as_str().unwrap(),
                    "{what}"
                );
                assert_close(panel.num(row, count), api_num(&r["count"]), &what);
                assert_close(panel.num(row, "share"), api_num(&r["share"]), &what);
            }
        }

        // Top badges, in the API's order.
        let api = get("top-badges", "&sort=performance&limit=1000").await;
        let api_rows = api["rows"].as_array().unwrap();
        let panel = result("top-badges.json", "Top performing badges", sn);
        let what = format!("[{sn}] top badges");
        assert_eq!(panel.rows.len(), api_rows.len(), "{what}: {api}");
        for (row, r) in api_rows.iter().enumerate() {
            let id = r["badge_class_id"].as_str().unwrap();
            assert_eq!(panel.text(row, "badge_class_id"), id, "{what} order");
            let name = r["name"].as_str().filter(|n| !n.is_empty()).unwrap_or(id);
            assert_eq!(panel.text(row, "badge_name"), name, "{what}");
            for metric in TOP_METRICS {
                assert_close(
                    panel.num(row, metric),
                    api_num(&r[metric]),
                    &format!("{what} {id} {metric}"),
                );
            }
            let low = if r["low_sample"] == true { "1" } else { "0" };
            assert_eq!(panel.text(row, "low_sample"), low, "{what} {id}");
        }

        // Lifecycle: stages, conversion, drop-off, medians.
        let api = get("lifecycle", "").await;
        let stages = result(
            "lifecycle-and-trends.json",
            "Stage conversion and drop-off",
            sn,
        );
        let api_stages = api["stages"].as_array().unwrap();
        assert_eq!(stages.rows.len(), api_stages.len());
        for (row, st) in api_stages.iter().enumerate() {
            let what = format!("[{sn}] lifecycle stage {}", st["stage"]);
            assert_eq!(
                stages.text(row, "stage").to_lowercase(),
                st["stage"].as_str().unwrap(),
                "{what}"
            );
            assert_close(stages.num(row, "assertions"), api_num(&st["count"]), &what);
            assert_close(
                stages.num(row, "conversion"),
                api_num(&st["conversion"]),
                &what,
            );
            assert_close(stages.num(row, "drop_off"), api_num(&st["drop_off"]), &what);
        }
        let funnel = result("lifecycle-and-trends.json", "Lifecycle funnel", sn);
        for (st, column) in api_stages.iter().zip(&funnel.columns) {
            assert_close(
                funnel.num(0, column),
                api_num(&st["count"]),
                &format!("[{sn}] funnel {column}"),
            );
        }
        let medians = result(
            "lifecycle-and-trends.json",
            "Median time between stages",
            sn,
        );
        for m in ["award_to_accept", "accept_to_share", "share_to_view"] {
            assert_close(
                medians.num(0, m),
                api_num(&api["median_hours"][m]),
                &format!("[{sn}] median {m}"),
            );
        }

        // Drivers: each attribute's groups and lifts.
        let api = get("drivers", "").await;
        let panel = result(
            "performance-drivers.json",
            "Driver attributes: with vs without",
            sn,
        );
        let api_drivers = api["drivers"].as_array().unwrap();
        assert_eq!(
            panel.column_texts("attribute"),
            api_drivers
                .iter()
                .map(|d| d["attribute"].as_str().unwrap().to_owned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>(),
            "[{sn}] driver attributes"
        );
        for d in api_drivers {
            let attribute = d["attribute"].as_str().unwrap();
            let row = panel
                .column_texts("attribute")
                .iter()
                .position(|a| a == attribute)
                .unwrap();
            for group in ["with", "without"] {
                for field in DRIVER_GROUP_FIELDS {
                    let col = format!("{group}_{field}");
                    assert_close(
                        panel.num(row, &col),
                        api_num(&d[group][field]),
                        &format!("[{sn}] driver {attribute} {col}"),
                    );
                }
            }
            for m in DRIVER_LIFTS {
                let col = format!("lift_{m}");
                assert_close(
                    panel.num(row, &col),
                    api_num(&d["lift"][m]),
                    &format!("[{sn}] driver {attribute} {col}"),
                );
            }
        }

        // Program insights: the impact of the latest updates (cohort
        // rates and their tests), the weekday × hour cells, the cohort
        // triangle, each as the API answers it.
        let impact = result(
            "program-insights.json",
            "Impact of the latest program updates",
            sn,
        );
        for row in 0..impact.rows.len() {
            let title = impact.text(row, "program_update");
            let id = &annotation_ids[title];
            let api = api_get(
                &http,
                &format!(
                    "http://{exporter}/api/v1/impact?annotation={id}{}",
                    scope.api_params()
                ),
            )
            .await;
            let measure = |name: &str| {
                api["measures"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["measure"] == name)
                    .unwrap()
                    .clone()
            };
            for (panel, measure_name) in
                [("acceptance", "acceptance_rate"), ("sharing", "share_rate")]
            {
                let m = measure(measure_name);
                for (suffix, field) in [
                    ("before", "before"),
                    ("after", "after"),
                    ("change", "change"),
                    ("p", "p_value"),
                ] {
                    assert_close(
                        impact.num(row, &format!("{panel}_{suffix}")),
                        api_num(&m[field]),
                        &format!("[{sn}] impact of {title:?} {panel}_{suffix}"),
                    );
                }
            }
        }
        let timing = get("timing", "&tz=UTC").await;
        let heat = result(
            "program-insights.json",
            "Acceptance by weekday and hour (UTC)",
            sn,
        );
        let mut cells = 0;
        for row in 0..heat.rows.len() {
            let weekday = heat.num(row, "weekday").unwrap() as u64;
            for hour in 0..24u64 {
                let api = timing["cells"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["weekday"] == weekday && c["hour"] == hour);
                let what = format!("[{sn}] heatmap {weekday} {hour:02}");
                match api {
                    Some(c) => {
                        assert_close(
                            heat.num(row, &format!("h{hour:02}")),
                            api_num(&c["acceptance_rate"]),
                            &what,
                        );
                        cells += 1;
                    }
                    None => assert_eq!(heat.num(row, &format!("h{hour:02}")), None, "{what}"),
                }
            }
        }
        assert_eq!(
            cells,
            timing["cells"].as_array().unwrap().len(),
            "[{sn}] heatmap cells"
        );
        let cohorts = get("cohorts", "&granularity=month&stage=accepted").await;
        let triangle = result(
            "program-insights.json",
            "Cohort triangle: share accepted by month since the award",
            sn,
        );
        let api_cohorts = cohorts["cohorts"].as_array().unwrap();
        assert_eq!(
            triangle.rows.len(),
            api_cohorts.len(),
            "[{sn}] cohorts: {cohorts}"
        );
        for (row, c) in api_cohorts.iter().enumerate() {
            assert_eq!(
                format!("{}T00:00:00Z", triangle.text(row, "cohort")),
                c["cohort"].as_str().unwrap(),
                "[{sn}] cohort"
            );
            assert_close(
                triangle.num(row, "size"),
                api_num(&c["size"]),
                "[{sn}] cohort size",
            );
            for k in 0..12 {
                let api = c["values"].as_array().unwrap().get(k).and_then(api_num);
                assert_close(
                    triangle.num(row, &format!("m{k}")),
                    api,
                    &format!("[{sn}] cohort age {k}"),
                );
            }
        }

        // Annotations: the same program updates.
        let api = get("annotations", "").await;
        let titles: Vec<String> = api["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["title"].as_str().unwrap().to_owned())
            .collect();
        let panel = result(
            "lifecycle-and-trends.json",
            "Program updates in the window",
            sn,
        );
        assert_eq!(panel.column_texts("title"), titles, "[{sn}] annotations");
    }
    // "Old news" (ten days ago) has cohorts on both sides: 2 of 3 awards
    // accepted within 7 days before, 1 of 2 after (the 2 h old ones are
    // too recent); the updates of the last hours have none after.
    let impact = result(
        "program-insights.json",
        "Impact of the latest program updates",
        "org",
    );
    let old = (0..impact.rows.len())
        .find(|&r| impact.text(r, "program_update") == "Old news")
        .expect("the impact of Old news");
    assert_eq!(
        (
            impact.num(old, "cohort_before"),
            impact.num(old, "cohort_after")
        ),
        (Some(3.0), Some(2.0))
    );
    assert!(impact.num(old, "acceptance_p").is_some());

    // The org percentiles: too few orgs for the exporter's defaults, as
    // the API says; with both thresholds at 1 (the SQL names each), acme
    // (4 of 6 awards accepted in the window) and globex (1 of 1) rank 25
    // and 75 on acceptance: 100 × (below + ½ × equal) ÷ 2.
    let api = api_get(
        &http,
        &format!("http://{exporter}/api/v1/benchmark?{window}&org=acme"),
    )
    .await;
    let panel = result(
        "program-insights.json",
        "Each org's percentile among the orgs",
        "org",
    );
    assert_eq!(panel.column_texts("org_id"), ["acme"]);
    for m in api["measures"].as_array().unwrap() {
        let name = m["measure"].as_str().unwrap();
        let what = format!("benchmark {name}");
        assert_close(
            panel.num(0, &format!("{name}_percentile")),
            api_num(&m["percentile"]),
            &what,
        );
        assert_close(
            panel.num(0, &format!("{name}_peers")),
            api_num(&m["peers"]),
            &what,
        );
    }
    let percentile_sql = ch_queries
        .iter()
        .find(|q| q.name().contains("Each org's percentile among the orgs"))
        .expect("the percentile panel")
        .text
        .replace("10 /* min_awarded */", "1 /* min_awarded */")
        .replace("10 /* min_peers */", "1 /* min_peers */");
    let all = expand_sql(&percentile_sql, &SCOPES[0].vars(), range);
    let ranked = Table::parse(
        &ch_query(&ch, &format!("{all}\nFORMAT TabSeparatedWithNames"))
            .await
            .unwrap(),
    );
    assert_eq!(ranked.column_texts("org_id"), ["acme", "globex"]);
    assert_eq!(
        ranked.column_texts("acceptance_rate_percentile"),
        ["25", "75"]
    );
    assert_eq!(ranked.column_texts("acceptance_rate_peers"), ["2", "2"]);

    // The previous window is not empty, so trends are real numbers.
    let awarded = result("performance-overview.json", "Awarded", "org");
    assert_eq!(awarded.num(0, "awarded"), Some(6.0));
    assert_eq!(awarded.num(0, "change"), Some(5.0));
    let top = result("top-badges.json", "Top performing badges", "org");
    assert_eq!(top.column_texts("badge_class_id"), ["b1", "b3", "b2"]);

    // The ground truth of the traffic.
    let funnel = |scope| {
        let t = result("lifecycle-and-trends.json", "Lifecycle funnel", scope);
        ["Awarded", "Accepted", "Shared", "Viewed"].map(|c| t.num(0, c).unwrap() as u64)
    };
    assert_eq!(funnel("org"), [6, 4, 4, 3]);
    assert_eq!(funnel("badge"), [3, 2, 2, 2]);
    assert_eq!(funnel("all"), [7, 5, 5, 4]);
    let methods = result("distribution-insights.json", "Award method: counts", "org");
    assert_eq!(
        methods.column_texts("award_method"),
        ["api", "lms", "integration", "other"]
    );
    assert_eq!(methods.column_texts("awards"), ["2", "2", "1", "1"]);
    let channels = result("distribution-insights.json", "Share channel: counts", "org");
    assert_eq!(channels.column_texts("shares"), ["1"; 5]);
    let sources = result("distribution-insights.json", "View source: counts", "org");
    assert_eq!(
        sources
            .column_texts("view_source")
            .into_iter()
            .collect::<BTreeSet<_>>(),
        ["direct", "email", "linkedin", "platform", "search"]
            .map(String::from)
            .into()
    );
    let countries = result(
        "distribution-insights.json",
        "Viewer country: counts",
        "org",
    );
    assert_eq!(countries.column_texts("view_country"), ["NL", "unknown"]);
    assert_eq!(countries.column_texts("views"), ["4", "1"]);
    assert_eq!(countries.num(0, "share"), Some(0.8));

    // Variables cascade; annotations follow the scope and the window.
    let var = |name: &str, scope| result("performance-overview.json", name, scope);
    assert_eq!(var("org", "all").column_texts("org_id"), ["acme", "globex"]);
    assert_eq!(
        var("issuer", "all").column_texts("issuer_id"),
        ["i1", "i2", "i9"]
    );
    assert_eq!(var("issuer", "org").column_texts("issuer_id"), ["i1", "i2"]);
    let badges = var("badge_class", "issuer");
    assert_eq!(badges.column_texts("badge_class_id"), ["b1", "b2"]);
    assert_eq!(
        badges.column_texts("label"),
        ["Rust 101 (b1)", "Go 101 (b2)"]
    );
    let titles = |scope| var("Program updates", scope).column_texts("title");
    assert_eq!(
        titles("all"),
        [
            "Rust badge redesign",
            "Go badge renamed",
            "Spring program",
            "Globex kickoff"
        ]
    );
    assert_eq!(
        titles("org"),
        ["Rust badge redesign", "Go badge renamed", "Spring program"]
    );
    assert_eq!(titles("badge"), ["Rust badge redesign", "Spring program"]);

    // The same queries on current ClickHouse (chDB), on the same data.
    let dump = |table: &str| {
        let ch = &ch;
        let table = table.to_owned();
        async move {
            ch.query(&format!("SELECT * FROM {DB}.{table} FORMAT Values"))
                .await
                .unwrap()
        }
    };
    let mut statements: Vec<(String, String)> = Schema::new(DB, "")
        .all_statements()
        .into_iter()
        .enumerate()
        .map(|(i, s)| (format!("ddl #{i}"), s))
        .collect();
    statements.push((
        "insert events".into(),
        format!(
            "INSERT INTO {DB}.events_input VALUES {}",
            dump("events").await
        ),
    ));
    statements.push((
        "insert annotations".into(),
        format!(
            "INSERT INTO {DB}.annotations VALUES {}",
            dump("annotations").await
        ),
    ));
    statements.push(("use".into(), format!("USE {DB}")));
    // Row counts of the derived tables depend on merges; the raw tables must match.
    for table in ["events", "annotations"] {
        statements.push((
            format!("count {table}"),
            format!("SELECT count() FROM {table}"),
        ));
    }
    let first_query = statements.len();
    for (name, sql, ..) in &runs {
        statements.push((name.clone(), sql.clone()));
    }
    let chdb = run_chdb(&statements);
    assert_eq!(chdb.len(), statements.len());
    for (i, (name, r)) in chdb.iter().enumerate().take(first_query) {
        let out = r
            .as_ref()
            .unwrap_or_else(|e| panic!("chDB refused {name}: {e}\n{}", statements[i].1));
        if let Some(table) = name.strip_prefix("count ") {
            let old = ch
                .number(&format!("SELECT count() FROM {DB}.{table}"))
                .await;
            assert_eq!(out.trim(), old.to_string(), "chDB {table} rows");
        }
    }
    let mut failures = Vec::new();
    for ((name, r), (_, sql, _, old)) in chdb[first_query..].iter().zip(&runs) {
        match r {
            Err(e) => failures.push(format!(
                "{name}: current ClickHouse (chDB) refused it: {e}\n{sql}"
            )),
            Ok(new) => {
                let old_rows: Vec<&str> = old.lines().skip(1).collect();
                let mut old_rows = old_rows;
                old_rows.sort_unstable();
                if old_rows != sorted_lines(new) {
                    failures.push(format!(
                        "{name}: 18.16 and current differ\n{sql}\n18.16:\n{old}\ncurrent:\n{new}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // Every PromQL query returns a series from the real Prometheus.
    eventually(Duration::from_secs(60), "three scrapes of every service", || async {
        let d = prometheus
            .query(r#"count(count_over_time(up{job=~"badgepulse-.+"}[30s]) >= 3) == 3 and on() min(up{job=~"badgepulse-.+"}) == 1"#)
            .await
            .ok()?;
        (!d["result"].as_array()?.is_empty()).then_some(())
    })
    .await;
    eventually(
        Duration::from_secs(60),
        "business metrics scraped",
        || async {
            let d = prometheus
                .query(r#"badgepulse_badge_events_total{org_id="acme",event="awarded"}"#)
                .await
                .ok()?;
            let r = d["result"].as_array()?;
            (!r.is_empty()).then_some(())
        },
    )
    .await;
    let prom_queries: Vec<Query> = dashboards
        .iter()
        .flat_map(queries)
        .filter(|q| q.uid == PROM_UID)
        .collect();
    assert!(
        prom_queries.len() >= 25,
        "{} PromQL queries",
        prom_queries.len()
    );
    // A series born with the traffic needs two scrapes before rate() has a
    // value: retry what is empty for a while; an error is final.
    let mut pending: Vec<(String, String)> = prom_queries
        .iter()
        .map(|q| (q.name(), expand_promql(&q.text, &SCOPES[0].vars())))
        .collect();
    let mut failures = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !pending.is_empty() {
        let mut empty = Vec::new();
        for (name, expr) in pending {
            match prometheus.query(&expr).await {
                Ok(d) if d["result"].as_array().is_some_and(|r| !r.is_empty()) => {}
                Ok(d) => empty.push((name, expr, d)),
                Err(e) => failures.push(format!("{name}: {e}\n{expr}")),
            }
        }
        if std::time::Instant::now() > deadline {
            for (name, expr, d) in &empty {
                failures.push(format!("{name}: no series\n{expr}\n{d}"));
            }
            break;
        }
        pending = empty.into_iter().map(|(n, e, _)| (n, e)).collect();
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // The alerting rules load and evaluate without error on real metrics;
    // a healthy pipeline fires none of them.
    let rule_health = eventually(Duration::from_secs(30), "rules evaluated", || async {
        let d = prometheus.api("rules").await.ok()?;
        let rules: Vec<Value> = d["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated = rules.iter().all(|r| {
            r["lastEvaluation"]
                .as_str()
                .is_some_and(|t| !t.starts_with("0001-"))
        });
        (evaluated && !rules.is_empty()).then_some(rules)
    })
    .await;
    assert_eq!(rule_health.len(), 10, "alerting rules loaded");
    for r in &rule_health {
        assert_eq!(r["health"], "ok", "{}: {}", r["name"], r["lastError"]);
    }
    let alerts = prometheus.api("alerts").await.unwrap();
    let firing: Vec<&Value> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing")
        .collect();
    assert!(
        firing.is_empty(),
        "alerts firing on a healthy pipeline: {firing:?}"
    );
}
