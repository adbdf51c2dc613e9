#!/usr/bin/env python3
"""Writes the Grafana dashboards in grafana/dashboards/ (the JSON files are
generated: edit this file, then run it).

    python3 grafana/generate.py          # rewrite the JSON files
    python3 grafana/generate.py --check  # exit 1 if a JSON file is stale

Rules every ClickHouse query here follows (tests/tests/grafana_dashboards.rs
runs each one, expanded, on ClickHouse 18.16 and on current ClickHouse):
- Only the grafana-clickhouse-datasource macros `$__timeFilter(col)`,
  `$__fromTime`, `$__toTime` and `$__interval_s`. Never `$__timeInterval`:
  it expands to `toStartOfInterval`, which 18.16 lacks; buckets are
  `toDateTime(intDiv(toUInt32(t), $__interval_s) * $__interval_s, 'UTC')`.
- The datasource pastes a single-value variable as it is (no quotes; only
  multi-value selections are quoted), and the custom "All" value `__all`
  unformatted. So variables are single-value and quoted in the SQL:
  `('${org}' = '__all' OR org_id = '${org}')`. Ids are `[A-Za-z0-9._:-]`
  (SPEC §3), so they never need escaping.
- Windows are half-open, `[from, to)`, like the analytics API, and exact
  for any edges, as the exporter reads them: whole hours of an org from
  `scope_hour` (whole days of badge classes from `scope_day`), the rest
  from `events` with the same aggregate states (`states_union`), merged
  across both. An issuer or badge class reads its `events` (sorted by org,
  day, issuer, badge class). All-time values read `scope_total`.
- Unique viewers add up sealed days (`viewer_days`) and count the others
  from `events` (`viewers_union`), as the exporter does.
- Table names are unqualified: the datasource's default database
  (`badgepulse`) applies.
- No alias repeats a column name of the table it reads (current
  ClickHouse resolves such aliases inside aggregates).
"""

import json
import sys
from pathlib import Path

DASHBOARDS = Path(__file__).resolve().parent / "dashboards"

# Every panel, target, variable and annotation names its datasource through a
# datasource template variable, so that a dashboard can be imported into any
# Grafana (the grafana.com import flow fills in `__inputs`), while the
# provisioned datasources (grafana/provisioning/datasources) are the defaults.
DATASOURCES = {
    # variable: (plugin id, plugin name, label, provisioned name, provisioned uid)
    "DS_CLICKHOUSE": ("grafana-clickhouse-datasource", "ClickHouse", "ClickHouse", "badgepulse ClickHouse", "badgepulse-clickhouse"),
    "DS_PROMETHEUS": ("prometheus", "Prometheus", "Prometheus", "badgepulse Prometheus", "badgepulse-prometheus"),
}


def datasource_ref(var):
    return {"type": DATASOURCES[var][0], "uid": f"${{{var}}}"}


CH = datasource_ref("DS_CLICKHOUSE")
PROM = datasource_ref("DS_PROMETHEUS")

# --------------------------------------------------------------------------
# SQL building blocks
# --------------------------------------------------------------------------

ALL = "__all"


def var_filter(var, column):
    return f"('${{{var}}}' = '{ALL}' OR {column} = '${{{var}}}')"


ORG = var_filter("org", "org_id")
ISSUER = var_filter("issuer", "issuer_id")
BADGE = var_filter("badge_class", "badge_class_id")
SCOPE = f"{ORG}\nAND {ISSUER}\nAND {BADGE}"
# Whether the org rows answer (no issuer or badge class selected).
ORG_LEVEL = f"('${{issuer}}' = '{ALL}' AND '${{badge_class}}' = '{ALL}')"
# The rows of the selected level in `scope_*` and `viewer_days`: the org
# rows, an issuer's rows, or a badge class's row.
LEVEL = (
    f"{ORG}\n"
    f"AND scope_issuer_id = if('${{issuer}}' = '{ALL}', if('${{badge_class}}' = '{ALL}', '', scope_issuer_id), '${{issuer}}')\n"
    f"AND scope_badge_class_id = if('${{badge_class}}' = '{ALL}', '', '${{badge_class}}')"
)
# One row per badge class of the scope.
CLASS_ROWS = (
    f"{ORG}\n"
    f"AND scope_issuer_id = if('${{issuer}}' = '{ALL}', scope_issuer_id, '${{issuer}}') AND scope_issuer_id != ''\n"
    f"AND scope_badge_class_id = if('${{badge_class}}' = '{ALL}', scope_badge_class_id, '${{badge_class}}') AND scope_badge_class_id != ''"
)
FROM = "$__fromTime"
TO = "$__toTime"
# The start of the equally long window just before the selected one.
PREV = "toDateTime(2 * toUInt32($__fromTime) - toUInt32($__toTime), 'UTC')"


def floor_to(t, step):
    return f"toDateTime(intDiv(toUInt32({t}), {step}) * {step}, 'UTC')"


def ceil_to(t, step):
    return f"toDateTime(intDiv(toUInt32({t}) + {step - 1}, {step}) * {step}, 'UTC')"


def bucket(column):
    return f"toDateTime(intDiv(toUInt32({column}), $__interval_s) * $__interval_s, 'UTC')"


def indent(sql, n=2):
    pad = " " * n
    return "\n".join(pad + line if line else line for line in sql.split("\n"))


# The measures of SPEC §7 as SQL, written once in the exporter's model
# (`exporter/src/model/measures.rs`, `contract/src/tables.rs`) and printed
# by `badgepulse-exporter print-measures` into measures.json (a test keeps
# it current): the counts merged from rollup states, `{c}` standing for an
# extra condition (e.g. the current or previous window), and the derived
# measures over count columns named `{p}awarded` etc.
MEASURES = json.loads((Path(__file__).resolve().parent / "measures.json").read_text())
COUNTS = [(name, expr) for name, expr in MEASURES["counts"]]


def counts(prefix="", cond=""):
    c = f" AND {cond}" if cond else ""
    return [f"{expr.replace('{c}', c)} AS {prefix}{name}" for name, expr in COUNTS]


DERIVED = {name: expr for name, expr in MEASURES["derived"]}
# The scope states computed from `events` rows, as the exporter's raw pieces.
STATES = [(name, expr) for name, expr in MEASURES["states"]]
STATE_COLUMNS = ", ".join(name for name, _ in STATES)
RAW_STATES = ", ".join(f"{expr} AS {name}" for name, expr in STATES)


def derived(name, prefix=""):
    return DERIVED[name].replace("{p}", prefix)


def sql(*lines):
    return "\n".join(lines)


def any_of(conditions):
    return "(" + " OR ".join(conditions) + ")" if conditions else "0"


def spans(points, step, column):
    """Whole `step`-second buckets of `column` inside the windows between
    consecutive `points` (SQL times, ascending)."""
    return any_of(
        [f"({column} >= {ceil_to(a, step)} AND {column} < {floor_to(b, step)})" for a, b in zip(points, points[1:])]
    )


def edges(points, step):
    """The `step`-second buckets around each of `points` that whole buckets
    do not cover, within the windows, on `occurred_at`."""
    around = any_of([f"(occurred_at >= {floor_to(p, step)} AND occurred_at < {ceil_to(p, step)})" for p in points])
    return f"occurred_at >= {points[0]} AND occurred_at < {points[-1]} AND {around}"


def keyed(keys):
    return f"{keys}, " if keys else ""


def states_union(points, keys_rollup, keys_raw, group, class_rows=False, every_org=False):
    """`(… UNION ALL …)`: the scope states of the windows between `points`,
    with `keys_*` (named `group`), as the exporter reads them: the org's
    whole hours from `scope_hour` (for badge classes, `class_rows`, whole
    days of `scope_day`), everything else from `events` with the same
    states, so that merging over both is exact. `every_org`: the org rows
    of every org, whatever the variables (the benchmark's peers)."""
    if class_rows:
        table, step, rollup_ok, rows = "scope_day", 86400, "1", CLASS_ROWS
    elif every_org:
        table, step, rollup_ok, rows = "scope_hour", 3600, "1", "scope_issuer_id = '' AND scope_badge_class_id = ''"
    else:
        table, step, rollup_ok, rows = "scope_hour", 3600, ORG_LEVEL, LEVEL
    return sql(
        "(",
        f"  SELECT {keyed(keys_rollup)}{STATE_COLUMNS}",
        f"  FROM {table}",
        f"  WHERE {rollup_ok} AND {indent(rows, 4).strip()}",
        f"    AND {spans(points, step, 'bucket')}",
        "  UNION ALL",
        f"  SELECT {keyed(keys_raw)}{RAW_STATES}",
        "  FROM events",
        f"  WHERE {'1' if every_org else indent(SCOPE, 4).strip()}",
        f"    AND occurred_at >= {points[0]} AND occurred_at < {points[-1]}",
        f"    AND (NOT {rollup_ok} OR {edges(points, step)})",
        f"  GROUP BY {group}" if group else "",
        ")",
    )


def org_days(sealed):
    """(org_id, day) of the days with keyed views whose unique viewers are
    sealed (`bucket`) or not (`Date`), as the exporter decides it."""
    return sql(
        "SELECT org_id, bucket" if sealed else "SELECT org_id, toDate(bucket)",
        f"FROM (SELECT org_id, bucket, maxMerge(max_seq) AS hi FROM view_days WHERE {ORG} GROUP BY org_id, bucket) AS v",
        "ANY INNER JOIN" if sealed else "ANY LEFT JOIN",
        "(SELECT org_id, bucket, max(sealed_seq) AS sealed FROM viewer_days",
        f" WHERE {ORG} AND scope_issuer_id = '' AND scope_badge_class_id = '' GROUP BY org_id, bucket) AS s",
        "USING org_id, bucket WHERE " + ("sealed >= hi" if sealed else "sealed < hi"),
    )


VIEWS = f"{indent(SCOPE, 4).strip()}\n    AND type = 'badge.viewed' AND viewer_key != 0"


def viewers_union(points, key_sealed="", key_raw="", group="", rows=LEVEL):
    """`(…)` of rows `(key, u)` whose `u` add up to the unique viewers per
    key over the windows between `points` (`None`: all time): a viewer key
    is salted per UTC day, so days add up. Sealed days come from
    `viewer_days`; unsealed days and parts of days are counted from
    `events`."""
    g = lambda extra: f"GROUP BY {keyed(group)}{extra}"
    whole_sealed = "1" if points is None else spans(points, 86400, "bucket")
    whole_raw = "1" if points is None else spans(points, 86400, "occurred_at")
    parts = [
        sql(
            f"  SELECT {keyed(key_sealed)}argMax(unique_viewers, sealed_seq) AS u",
            "  FROM viewer_days",
            f"  WHERE {indent(rows, 4).strip()}",
            f"    AND {whole_sealed}",
            f"    AND (org_id, bucket) IN ({indent(org_days(True), 6).strip()})",
            f"  {g('org_id, scope_issuer_id, scope_badge_class_id, bucket')}",
        ),
        sql(
            f"  SELECT {keyed(key_raw)}uniqExact(viewer_key) AS u",
            "  FROM events",
            f"  WHERE {VIEWS}",
            f"    AND {whole_raw}",
            f"    AND (org_id, toDate(occurred_at)) IN ({indent(org_days(False), 6).strip()})",
            f"  {g('org_id, toDate(occurred_at)')}",
        ),
    ]
    if points is not None:
        parts.append(
            sql(
                f"  SELECT {keyed(key_raw)}uniqExact(viewer_key) AS u",
                "  FROM events",
                f"  WHERE {VIEWS}",
                f"    AND {edges(points, 86400)}",
                f"  {g('org_id, toDate(occurred_at)')}",
            )
        )
    return sql("(", "\n  UNION ALL\n".join(parts), ")")


def unique_viewers(points):
    """The unique viewers of the scope over the windows between `points`."""
    return sql("(SELECT sum(u) FROM", indent(viewers_union(points)), ")")


# --------------------------------------------------------------------------
# Dashboard building blocks
# --------------------------------------------------------------------------


class Layout:
    """Places panels left to right, top to bottom, on Grafana's 24-column grid."""

    def __init__(self):
        self.panels = []
        self.x = 0
        self.y = 0
        self.line_h = 0

    def _id(self):
        return len(self.panels) + 1

    def row(self, title):
        self.newline()
        self.panels.append(
            {
                "id": self._id(),
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def newline(self):
        if self.x > 0:
            self.y += self.line_h
            self.x = 0
            self.line_h = 0

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.newline()
        panel = {"id": self._id(), **panel, "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y}}
        self.panels.append(panel)
        self.x += w
        self.line_h = max(self.line_h, h)
        if self.x == 24:
            self.newline()


def ch_target(raw_sql, time_series=False, ref="A"):
    return {
        "datasource": CH,
        "editorType": "sql",
        "format": 0 if time_series else 1,
        "queryType": "timeseries" if time_series else "table",
        "rawSql": raw_sql,
        "refId": ref,
    }


def prom_target(expr, legend, ref="A"):
    return {
        "datasource": PROM,
        "editorType": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": True,
        "refId": ref,
    }


def overrides(names):
    """Field display names: {column: "Display name"}."""
    return [
        {"matcher": {"id": "byName", "options": col}, "properties": [{"id": "displayName", "value": name}]}
        for col, name in names.items()
    ]


def unit_override(cols, unit, decimals=None):
    props = [{"id": "unit", "value": unit}]
    if decimals is not None:
        props.append({"id": "decimals", "value": decimals})
    return [{"matcher": {"id": "byName", "options": c}, "properties": props} for c in cols]


def field_config(unit="short", decimals=None, extra_overrides=(), custom=None, thresholds=None, min_=None, max_=None):
    defaults = {"unit": unit}
    if decimals is not None:
        defaults["decimals"] = decimals
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    defaults["thresholds"] = thresholds or {"mode": "absolute", "steps": [{"color": "blue", "value": None}]}
    defaults["color"] = {"mode": "thresholds"} if thresholds else {"mode": "palette-classic"}
    if custom is not None:
        defaults["custom"] = custom
    return {"defaults": defaults, "overrides": list(extra_overrides)}


def stat(title, description, targets, fc, fields="", text_mode="value_and_name", color_mode="value"):
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": targets[0]["datasource"],
        "targets": targets,
        "fieldConfig": fc,
        "options": {
            "reduceOptions": {"values": False, "calcs": ["lastNotNull"], "fields": fields},
            "orientation": "auto",
            "textMode": text_mode,
            "colorMode": color_mode,
            "graphMode": "none",
            "justifyMode": "auto",
        },
    }


TS_CUSTOM = {
    "drawStyle": "line",
    "lineWidth": 2,
    "fillOpacity": 10,
    "pointSize": 4,
    "showPoints": "auto",
    "spanNulls": False,
    "axisSoftMin": 0,
}


def timeseries(title, description, targets, fc=None, interval=None, bars=False):
    fc = fc or field_config()
    custom = dict(TS_CUSTOM)
    if bars:
        custom.update({"drawStyle": "bars", "fillOpacity": 60, "lineWidth": 1})
    fc["defaults"].setdefault("custom", custom)
    panel = {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": targets[0]["datasource"],
        "targets": targets,
        "fieldConfig": fc,
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
    }
    if interval:
        panel["interval"] = interval
    return panel


def table(title, description, targets, fc=None, sort_by=None):
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"], "fields": ""}}
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by[0], "desc": sort_by[1]}]
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": targets[0]["datasource"],
        "targets": targets,
        "fieldConfig": fc or field_config(),
        "options": options,
    }


def piechart(title, description, targets, value_field):
    return {
        "type": "piechart",
        "title": title,
        "description": description,
        "datasource": targets[0]["datasource"],
        "targets": targets,
        "fieldConfig": field_config(),
        "options": {
            "reduceOptions": {"values": True, "calcs": ["lastNotNull"], "fields": f"/^{value_field}$/"},
            "pieType": "donut",
            "displayLabels": ["name", "percent"],
            "legend": {"displayMode": "table", "placement": "right", "showLegend": True, "values": ["value", "percent"]},
            "tooltip": {"mode": "single", "sort": "none"},
        },
    }


def bargauge(title, description, targets, fc, values=False, fields=""):
    return {
        "type": "bargauge",
        "title": title,
        "description": description,
        "datasource": targets[0]["datasource"],
        "targets": targets,
        "fieldConfig": fc,
        "options": {
            "reduceOptions": {"values": values, "calcs": ["lastNotNull"], "fields": fields},
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
            "valueMode": "color",
            "namePlacement": "auto",
            "minVizHeight": 16,
            "minVizWidth": 8,
            "sizing": "auto",
        },
    }


def barchart(title, description, targets, fc, x_field):
    return {
        "type": "barchart",
        "title": title,
        "description": description,
        "datasource": targets[0]["datasource"],
        "targets": targets,
        "fieldConfig": fc,
        "options": {
            "xField": x_field,
            "orientation": "horizontal",
            "barWidth": 0.8,
            "groupWidth": 0.7,
            "showValue": "auto",
            "stacking": "none",
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
    }


def text_panel(content):
    return {"type": "text", "title": "", "options": {"mode": "markdown", "content": content}}


# --------------------------------------------------------------------------
# Template variables, annotations, links
# --------------------------------------------------------------------------

ORG_QUERY = "SELECT DISTINCT org_id FROM scope_total ORDER BY org_id"
ISSUER_QUERY = sql(
    "SELECT DISTINCT scope_issuer_id AS issuer_id FROM scope_total",
    f"WHERE {ORG} AND scope_issuer_id != '' AND scope_badge_class_id = ''",
    "ORDER BY issuer_id",
)
# Two columns: the value (badge class id), then the text shown.
BADGE_QUERY = sql(
    "SELECT badge_class_id, any(if(name = '', badge_class_id, concat(name, ' (', badge_class_id, ')'))) AS label",
    "FROM (",
    "  SELECT DISTINCT org_id, scope_badge_class_id AS badge_class_id FROM scope_total",
    f"  WHERE {ORG} AND scope_badge_class_id != ''",
    f"    AND ('${{issuer}}' = '{ALL}' OR scope_issuer_id = '${{issuer}}')",
    ") AS l ANY LEFT JOIN (",
    f"  SELECT org_id, badge_class_id, name FROM badge_classes FINAL WHERE {ORG}",
    ") AS r USING (org_id, badge_class_id)",
    "GROUP BY badge_class_id",
    "ORDER BY badge_class_id",
)


def variable(name, label, query, hide):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": CH,
        "query": query,
        "definition": query,
        "includeAll": True,
        "allValue": ALL,
        "multi": False,
        # On dashboard load; never on Pipeline health, where they are hidden
        # (kept only so links carry the scope): that dashboard must load when
        # ClickHouse is down.
        "refresh": 0 if hide else 1,
        "sort": 0,
        "regex": "",
        "hide": hide,
        "skipUrlSync": False,
        "current": {"selected": True, "text": "All", "value": "$__all"},
        "options": [],
    }


def variables(hide=0):
    return [
        variable("org", "Organisation", ORG_QUERY, hide),
        variable("issuer", "Issuer", ISSUER_QUERY, hide),
        variable("badge_class", "Badge class", BADGE_QUERY, hide),
    ]


# Program updates that concern the scope: org-wide ones (empty issuer and
# badge class) and those for the selected issuer / badge class.
ANNOTATION_SQL = sql(
    "SELECT at AS time, title, text,",
    "  arrayStringConcat(arrayFilter(x -> x != '', [org_id, issuer_id, badge_class_id]), ',') AS tags",
    "FROM annotations",
    "WHERE $__timeFilter(at)",
    f"  AND {ORG}",
    # An annotation of another issuer shows for a badge class only if it names it.
    f"  AND (issuer_id = '' OR issuer_id = '${{issuer}}'",
    f"       OR ('${{issuer}}' = '{ALL}' AND ('${{badge_class}}' = '{ALL}' OR badge_class_id = '${{badge_class}}')))",
    f"  AND (badge_class_id = '' OR {BADGE})",
    "ORDER BY at",
)

ANNOTATIONS = [
    {
        "name": "Program updates",
        "enable": True,
        "hide": False,
        "iconColor": "purple",
        "datasource": CH,
        "target": {"editorType": "sql", "format": 1, "rawSql": ANNOTATION_SQL, "refId": "Anno"},
    }
]

LINKS = [
    {
        "title": "badgepulse",
        "type": "dashboards",
        "tags": ["badgepulse"],
        "asDropdown": False,
        "includeVars": True,
        "keepTime": True,
        "icon": "external link",
        "targetBlank": False,
        "tooltip": "",
        "url": "",
    }
]


def datasource_variable(var, hide):
    plugin, _, label, name, uid = DATASOURCES[var]
    return {
        "name": var,
        "label": label,
        "type": "datasource",
        "query": plugin,
        "regex": "",
        "refresh": 1,
        "hide": hide,
        "includeAll": False,
        "multi": False,
        "skipUrlSync": False,
        "current": {"selected": True, "text": name, "value": uid},
        "options": [],
    }


def uses(value, var):
    return f"${{{var}}}" in json.dumps(value)


def imports(board, hide_vars):
    """`__inputs` and `__requires` of the grafana.com import flow (a datasource
    to choose for every datasource variable the dashboard uses), and those
    variables; ClickHouse's is hidden with the scope variables it serves."""
    used = [var for var in DATASOURCES if uses(board, var)]
    inputs = [
        {
            "name": var,
            "label": DATASOURCES[var][2],
            "description": f"Where the badgepulse {DATASOURCES[var][2]} data is (provisioned: {DATASOURCES[var][3]})",
            "type": "datasource",
            "pluginId": DATASOURCES[var][0],
            "pluginName": DATASOURCES[var][1],
        }
        for var in used
    ]
    panel_types = sorted({p["type"] for p in board["panels"] if p["type"] != "row"})
    requires = [{"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"}]
    requires += [{"type": "datasource", "id": DATASOURCES[v][0], "name": DATASOURCES[v][1], "version": ""} for v in used]
    requires += [{"type": "panel", "id": t, "name": t, "version": ""} for t in panel_types]
    hide = {"DS_CLICKHOUSE": hide_vars}
    return inputs, requires, [datasource_variable(var, hide.get(var, 0)) for var in used]


# The provisioning (grafana/provisioning/dashboards) does not let the UI save
# changes (allowUiUpdates: false): the JSON is generated. So the dashboards
# are not editable either; to change one, edit this file.
EDITABLE = False


def dashboard(uid, title, description, layout, time_from, annotations=True, refresh="", hide_vars=0):
    board = {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["badgepulse"],
        "editable": EDITABLE,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "timezone": "utc",
        "weekStart": "monday",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "templating": {"list": variables(hide_vars)},
        "annotations": {"list": ANNOTATIONS if annotations else []},
        "links": LINKS,
        "panels": layout.panels,
    }
    inputs, requires, ds_variables = imports(board, hide_vars)
    board["templating"]["list"] = ds_variables + board["templating"]["list"]
    return {"__inputs": inputs, "__requires": requires, **board}


# --------------------------------------------------------------------------
# Shared queries
# --------------------------------------------------------------------------

KPI_LABELS = {
    "awarded": "Awarded",
    "accepted": "Accepted",
    "shared": "Shared",
    "views": "Views",
    "unique_viewers": "Unique viewers",
    "acceptance_rate": "Acceptance rate",
    "share_rate": "Share rate",
    "engagement_score": "LES (engagement score)",
    "external_impact_score": "EIS (views per share)",
}
KPI_UNITS = {
    "acceptance_rate": ("percentunit", 1),
    "share_rate": ("percentunit", 1),
    "engagement_score": ("none", 1),
    "external_impact_score": ("none", 2),
}


def kpi_unit_overrides():
    out = []
    for col, (unit, dec) in KPI_UNITS.items():
        out += unit_override([col], unit, dec)
    return out


def all_time_kpis_sql():
    cols = ",\n  ".join(
        name if name not in DERIVED else f"{derived(name)} AS {name}" for name in KPI_LABELS
    )
    return sql(
        f"SELECT\n  {cols}",
        "FROM (",
        "  SELECT",
        indent(",\n".join(counts() + [f"{unique_viewers(None)} AS unique_viewers"]), 4),
        "  FROM scope_total",
        f"  WHERE {indent(LEVEL, 4).strip()}",
        ")",
    )


def period_kpi_sql(metric):
    """One row: the metric in the window and its change against the
    equally long window before (NULL when the previous value is 0 or
    NULL), like `trends` in GET /api/v1/overview. The counts are named
    `cur_…` and `prev_…`: an alias equal to a state column would be
    substituted into the other window's merge on 18.16."""
    if metric == "unique_viewers":
        # Alone: 18.16 drops unused aggregates, and with them the grouping.
        inner = sql(
            "SELECT",
            f"  {indent(unique_viewers([FROM, TO]), 2).strip()} AS cur_unique_viewers,",
            f"  {indent(unique_viewers([PREV, FROM]), 2).strip()} AS prev_unique_viewers",
        )
    else:
        inner = sql(
            "SELECT",
            indent(",\n".join(counts("cur_", "cur") + counts("prev_", "NOT cur")), 2),
            "FROM",
            indent(
                states_union(
                    [PREV, FROM, TO], f"bucket >= {FROM} AS cur", f"occurred_at >= {FROM} AS cur", "cur"
                )
            ),
        )
    if metric in DERIVED:
        current, previous = derived(metric, "cur_"), derived(metric, "prev_")
    else:
        current, previous = f"cur_{metric}", f"prev_{metric}"
    inner = sql(
        f"SELECT {current} AS {metric}, {previous} AS prev_{metric}",
        "FROM (",
        indent(inner),
        ")",
    )
    return sql(
        f"SELECT {metric}, if(prev_{metric} = 0, NULL, (toFloat64({metric}) - prev_{metric}) / prev_{metric}) AS change",
        "FROM (",
        indent(inner),
        ")",
    )


def trend_sql(metrics):
    """Per `$__interval_s` bucket: count columns plus derived `metrics`;
    unique viewers per day (keys change daily: a panel showing them has an
    interval of at least a day)."""
    cols = ["time"] + [m for m in metrics]
    outer = ",\n  ".join(c if c not in DERIVED else f"{derived(c)} AS {c}" for c in cols)
    per_time = sql(
        "SELECT time,",
        indent(",\n".join(counts()), 2),
        "FROM",
        indent(states_union([FROM, TO], f"{bucket('bucket')} AS time", f"{bucket('occurred_at')} AS time", "time")),
        "GROUP BY time",
    )
    if "unique_viewers" in metrics:
        per_time = sql(
            "SELECT *",
            "FROM (",
            indent(per_time),
            ") AS c ANY LEFT JOIN (",
            "  SELECT time, sum(u) AS unique_viewers FROM",
            indent(viewers_union([FROM, TO], f"{bucket('bucket')} AS time", f"{bucket('occurred_at')} AS time", "time"), 4),
            "  GROUP BY time",
            ") AS v USING time",
        )
    return sql(
        f"SELECT\n  {outer}",
        "FROM (",
        indent(per_time),
        ")",
        "ORDER BY time",
    )


def per_badge_counts_sql():
    """Per badge class of the scope in the window: the counts and unique
    viewers (badge classes without events are left out)."""
    names = ", ".join(name for name, _ in COUNTS)
    return sql(
        f"SELECT org_id, badge_class_id, issuer, {names}, unique_viewers",
        "FROM (",
        "  SELECT org_id, badge_class_id, issuer,",
        indent(",\n".join(counts()), 4),
        "  FROM",
        indent(
            states_union(
                [FROM, TO],
                "org_id, scope_badge_class_id AS badge_class_id, scope_issuer_id AS issuer",
                "org_id, badge_class_id, issuer_id AS issuer",
                "org_id, badge_class_id, issuer",
                class_rows=True,
            ),
            4,
        ),
        "  GROUP BY org_id, badge_class_id, issuer",
        ") AS c ANY LEFT JOIN (",
        "  SELECT org_id, badge_class_id, sum(u) AS unique_viewers FROM",
        indent(
            viewers_union(
                [FROM, TO],
                "org_id, scope_badge_class_id AS badge_class_id",
                "org_id, badge_class_id",
                "org_id, badge_class_id",
                rows=CLASS_ROWS,
            ),
            4,
        ),
        "  GROUP BY org_id, badge_class_id",
        ") AS v USING (org_id, badge_class_id)",
    )


# Lifecycle: one row per assertion of the scope, with its first times and
# whether it reached each stage (minIf states are 1970-01-01 when never).
LIFECYCLE_BASE = sql(
    "SELECT",
    "  minIfMerge(first_awarded) AS t_awarded,",
    "  minIfMerge(first_accepted) AS t_accepted,",
    "  minIfMerge(first_shared) AS t_shared,",
    "  minIfMerge(first_viewed) AS t_viewed,",
    "  countIfMerge(awarded) > 0 AS is_awarded,",
    "  countIfMerge(accepted) > 0 AS is_accepted,",
    "  countIfMerge(shares) > 0 AS is_shared,",
    "  countIfMerge(views) > 0 AS is_viewed",
    "FROM assertion_lifecycle",
    f"WHERE {indent(SCOPE, 2).strip()}",
    "GROUP BY org_id, issuer_id, badge_class_id, assertion_id",
)

# The cohort of SPEC §7.6: assertions first awarded in the window, with the
# nested stages Awarded ⊇ Accepted ⊇ Shared ⊇ Viewed.
COHORT = sql(
    "SELECT t_awarded, t_accepted, t_shared, t_viewed, is_shared, is_viewed,",
    "  is_accepted AS st_accepted,",
    "  is_accepted AND is_shared AS st_shared,",
    "  is_accepted AND is_shared AND is_viewed AS st_viewed",
    "FROM (",
    indent(LIFECYCLE_BASE),
    ")",
    "WHERE is_awarded AND t_awarded >= $__fromTime AND t_awarded < $__toTime",
)


def sorted_seconds(a, b, cond):
    """The sorted seconds from `a` to `b` of the rows where `cond` holds."""
    return f"arraySort(groupArrayIf(toInt64({b}) - toInt64({a}), {cond}))"


def median_hours(array):
    """The median of a sorted array of seconds, in hours (the mean of the two
    middle values for an even length, as the API); NULL when empty."""
    lo = f"{array}[greatest(1, intDiv(length({array}) + 1, 2))]"
    hi = f"{array}[greatest(1, intDiv(length({array}) + 2, 2))]"
    return f"if(length({array}) = 0, NULL, ({lo} + {hi}) / 2 / 3600)"


def ratio(num, den):
    return f"if({den} = 0, NULL, {num} / {den})"


# --------------------------------------------------------------------------
# Dashboards
# --------------------------------------------------------------------------


def performance_overview():
    l = Layout()
    l.row("All time")
    fc = field_config(
        extra_overrides=overrides(KPI_LABELS) + kpi_unit_overrides(),
        thresholds={"mode": "absolute", "steps": [{"color": "blue", "value": None}]},
    )
    l.add(
        stat(
            "All-time KPIs",
            "All-time values for the scope (the time picker does not apply), as the KPI tiles of GET /api/v1/overview (kpis).",
            [ch_target(all_time_kpis_sql())],
            fc,
        ),
        24,
        4,
    )
    l.row("Selected period vs the previous period")
    trend_thresholds = {"mode": "absolute", "steps": [{"color": "red", "value": None}, {"color": "green", "value": 0}]}
    for metric, label in KPI_LABELS.items():
        unit, dec = KPI_UNITS.get(metric, ("short", 0))
        fc = field_config(
            unit=unit,
            decimals=dec,
            thresholds={"mode": "absolute", "steps": [{"color": "blue", "value": None}]},
            extra_overrides=overrides({metric: label, "change": "vs previous period"})
            + [
                {
                    "matcher": {"id": "byName", "options": "change"},
                    "properties": [
                        {"id": "unit", "value": "percentunit"},
                        {"id": "decimals", "value": 1},
                        {"id": "thresholds", "value": trend_thresholds},
                    ],
                }
            ],
        )
        l.add(
            stat(
                label,
                f"{label} for events in the selected window, and its change against the equally long window just before "
                "((current − previous) / previous; empty when previous is 0), as period_values and trends of GET /api/v1/overview.",
                [ch_target(period_kpi_sql(metric))],
                fc,
            ),
            8,
            4,
        )
    l.row("Activity")
    l.add(
        timeseries(
            "Lifecycle events over time",
            "Per bucket: distinct assertions awarded, accepted and shared, and badge views.",
            [ch_target(trend_sql(["awarded", "accepted", "shared", "views"]), time_series=True)],
            field_config(extra_overrides=overrides(KPI_LABELS)),
            interval="1h",
        ),
        24,
        9,
    )
    l.add(
        timeseries(
            "Acceptance and share rate over time",
            "Per bucket: accepted ÷ awarded and shared ÷ accepted (capped at 100 %).",
            [ch_target(trend_sql(["acceptance_rate", "share_rate"]), time_series=True)],
            field_config(unit="percentunit", extra_overrides=overrides(KPI_LABELS), min_=0, max_=1),
            interval="1h",
        ),
        12,
        8,
    )
    l.add(
        timeseries(
            "LES and EIS over time",
            "Per bucket: Learner Engagement Score (0–100) and External Impact Score (views per share).",
            [ch_target(trend_sql(["engagement_score", "external_impact_score"]), time_series=True)],
            field_config(
                unit="none",
                decimals=2,
                extra_overrides=overrides(KPI_LABELS)
                + [
                    {
                        "matcher": {"id": "byName", "options": "external_impact_score"},
                        "properties": [{"id": "custom.axisPlacement", "value": "right"}],
                    }
                ],
            ),
            interval="1h",
        ),
        12,
        8,
    )
    return dashboard(
        "badgepulse-overview",
        "badgepulse / Performance overview",
        "KPIs of the selected organisation, issuer and badge class: all time, and the selected window against the one before.",
        l,
        "now-30d",
    )


# (title, alias, count label); the SQL of each dimension comes from the
# exporter (measures.json "distributions").
DIMENSIONS = [
    ("Award method", "award_method", "awards"),
    ("Share channel", "share_channel", "shares"),
    ("View source", "view_source", "views"),
    ("Viewer country", "view_country", "views"),
]
DISTRIBUTIONS = {d["dimension"]: d for d in MEASURES["distributions"]}


def dimension_union(alias, keys_rollup, keys_raw, group):
    """`(… UNION ALL …)`: the rollup states of one dimension in the window,
    keyed by `keys_*` plus `value`: the org's whole hours from
    `rollup_hour`, the rest (and an issuer's or badge class's events) from
    `events` with the same states."""
    d = DISTRIBUTIONS[alias]
    points = [FROM, TO]
    return sql(
        "(",
        f"  SELECT {keyed(keys_rollup)}value, events, assertions",
        "  FROM rollup_hour",
        f"  WHERE {ORG_LEVEL} AND {ORG} AND dimension = '{alias}'",
        f"    AND {spans(points, 3600, 'bucket')}",
        "  UNION ALL",
        f"  SELECT {keyed(keys_raw)}{d['value']} AS value, {d['states']}",
        "  FROM events",
        f"  WHERE {indent(SCOPE, 4).strip()} AND type = '{d['event_type']}'",
        f"    AND occurred_at >= {FROM} AND occurred_at < {TO}",
        f"    AND (NOT {ORG_LEVEL} OR {edges(points, 3600)})",
        f"  GROUP BY {keyed(group)}value",
        ")",
    )


def shown(alias):
    return "if(value = '', 'unknown', value)" if alias == "view_country" else "value"


def distribution_sql(alias, count_name):
    per_value = sql(
        f"SELECT {shown(alias)} AS {alias}, {DISTRIBUTIONS[alias]['count']} AS {count_name}",
        "FROM",
        indent(dimension_union(alias, "", "", "")),
        f"GROUP BY {alias}",
    )
    return sql(
        f"SELECT {alias}, {count_name},",
        f"  {count_name} / (SELECT sum({count_name}) FROM (",
        indent(per_value, 4),
        "  )) AS share",
        "FROM (",
        indent(per_value),
        ")",
        f"ORDER BY {count_name} DESC, {alias}",
    )


def distribution_over_time_sql(alias, count_name):
    return sql(
        f"SELECT time, {shown(alias)} AS {alias}, {DISTRIBUTIONS[alias]['count']} AS {count_name}",
        "FROM",
        indent(dimension_union(alias, f"{bucket('bucket')} AS time", f"{bucket('occurred_at')} AS time", "time")),
        f"GROUP BY time, {alias}",
        f"ORDER BY time, {alias}",
    )


def distribution_insights():
    l = Layout()
    for title, alias, count_name in DIMENSIONS:
        l.row(title)
        l.add(
            piechart(
                f"{title}: share of {count_name}",
                f"{count_name.capitalize()} in the window by {title.lower()}.",
                [ch_target(distribution_sql(alias, count_name))],
                count_name,
            ),
            8,
            8,
        )
        l.add(
            table(
                f"{title}: counts",
                f"{count_name.capitalize()} and share of the total by {title.lower()}, as GET /api/v1/distribution?dimension={alias}.",
                [ch_target(distribution_sql(alias, count_name))],
                field_config(extra_overrides=unit_override(["share"], "percentunit", 1)),
            ),
            6,
            8,
        )
        l.add(
            timeseries(
                f"{title} over time",
                f"{count_name.capitalize()} per bucket by {title.lower()}.",
                [ch_target(distribution_over_time_sql(alias, count_name), time_series=True)],
                interval="1h",
                bars=True,
            ),
            10,
            8,
        )
    return dashboard(
        "badgepulse-distribution",
        "badgepulse / Distribution insights",
        "How badges are awarded, where they are shared, where their viewers come from.",
        l,
        "now-30d",
    )


TOP_COLUMNS = [
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
]
TOP_LABELS = {
    "badge_class_id": "Badge class",
    "badge_name": "Name",
    "issuer": "Issuer",
    "awarded": "Awarded",
    "accepted": "Accepted",
    "shared": "Shared",
    "shares": "Shares",
    "views": "Views",
    "unique_viewers": "Unique viewers",
    "acceptance_rate": "Acceptance rate",
    "share_rate": "Share rate",
    "engagement_score": "LES",
    "external_impact_score": "EIS",
    "reach_score": "Reach",
    "performance": "Performance",
    "low_sample": "Low sample",
}


TOP_ORDER = "ORDER BY low_sample, performance DESC, awarded DESC, badge_class_id"


def top_badges_sql(limit):
    cols = ",\n  ".join(c if c not in DERIVED else f"{derived(c)} AS {c}" for c in TOP_COLUMNS)
    return sql(
        "SELECT badge_class_id, if(name = '', badge_class_id, name) AS badge_name, issuer,",
        f"  {cols},",
        "  awarded < 10 AS low_sample",
        "FROM (",
        indent(per_badge_counts_sql()),
        ") AS l ANY LEFT JOIN (",
        f"  SELECT org_id, badge_class_id, name FROM badge_classes FINAL WHERE {ORG}",
        ") AS r USING (org_id, badge_class_id)",
        TOP_ORDER,
        f"LIMIT {limit}",
    )


def top_badges():
    l = Layout()
    rate_overrides = (
        overrides(TOP_LABELS)
        + unit_override(["acceptance_rate", "share_rate"], "percentunit", 1)
        + unit_override(["engagement_score", "reach_score", "performance"], "none", 1)
        + unit_override(["external_impact_score"], "none", 2)
        + [
            {
                "matcher": {"id": "byName", "options": "performance"},
                "properties": [
                    {"id": "custom.cellOptions", "value": {"type": "gauge", "mode": "basic"}},
                    {"id": "min", "value": 0},
                    {"id": "max", "value": 100},
                ],
            },
            {
                "matcher": {"id": "byName", "options": "low_sample"},
                "properties": [
                    {
                        "id": "mappings",
                        "value": [
                            {
                                "type": "value",
                                "options": {
                                    "0": {"text": "", "index": 0},
                                    "1": {"text": "low sample", "color": "orange", "index": 1},
                                },
                            }
                        ],
                    },
                    {"id": "custom.cellOptions", "value": {"type": "color-text"}},
                ],
            },
        ]
    )
    l.add(
        table(
            "Top performing badges",
            "Badge classes ranked by performance = (LES + reach score) / 2 for events in the window. "
            "Badge classes with fewer than 10 awards in the window come after the others, flagged low sample "
            "(GET /api/v1/top-badges).",
            [ch_target(top_badges_sql(100))],
            field_config(extra_overrides=rate_overrides),
        ),
        24,
        12,
    )
    l.add(
        bargauge(
            "Performance, top 10",
            "Performance (0–100) of the ten best badge classes with enough awards.",
            [ch_target(sql("SELECT badge_name, performance", "FROM (", indent(top_badges_sql(10)), ")", TOP_ORDER))],
            field_config(
                unit="none",
                decimals=1,
                min_=0,
                max_=100,
                thresholds={
                    "mode": "absolute",
                    "steps": [{"color": "red", "value": None}, {"color": "yellow", "value": 40}, {"color": "green", "value": 70}],
                },
            ),
            values=True,
            fields="/^performance$/",
        ),
        12,
        10,
    )
    l.add(
        barchart(
            "Lifecycle of the top 10",
            "Distinct assertions awarded, accepted and shared per badge class.",
            [ch_target(sql("SELECT badge_name, awarded, accepted, shared", "FROM (", indent(top_badges_sql(10)), ")", TOP_ORDER))],
            field_config(extra_overrides=overrides(TOP_LABELS), custom={"fillOpacity": 80, "lineWidth": 1, "axisSoftMin": 0}),
            "badge_name",
        ),
        12,
        10,
    )
    return dashboard(
        "badgepulse-top-badges",
        "badgepulse / Top performing badges",
        "Badge classes ranked by performance, with every measure of SPEC §7.",
        l,
        "now-30d",
    )


DRIVER_GROUP = [
    # (alias, aggregate over the badge classes of a group; `{g}` is the group condition)
    ("badge_classes", "countIf({g})"),
    ("awarded", "sumIf(awarded, {g})"),
    ("engagement_score", "if(countIf({g} AND awarded > 0) = 0, NULL, avgIf(engagement_score, {g} AND awarded > 0))"),
    ("reach_score", "if(countIf({g} AND awarded > 0) = 0, NULL, avgIf(reach_score, {g} AND awarded > 0))"),
    ("acceptance_rate", "if(sumIf(awarded, {g}) = 0, NULL, least(1, sumIf(accepted, {g}) / sumIf(awarded, {g})))"),
    ("share_rate", "if(sumIf(accepted, {g}) = 0, NULL, least(1, sumIf(shared, {g}) / sumIf(accepted, {g})))"),
    ("external_impact_score", "if(sumIf(shares, {g}) = 0, NULL, sumIf(views, {g}) / sumIf(shares, {g}))"),
]
LIFT_MEASURES = ["engagement_score", "reach_score", "acceptance_rate", "share_rate", "external_impact_score"]

# The badge classes of the scope that have metadata (were ever upserted; a
# class without metadata has no attributes to judge), with their driver
# attributes and their counts in the window (0 without events).
BADGE_ATTRIBUTES = sql(
    "SELECT badge_class_id, if(name = '', badge_class_id, name) AS badge_name,",
    "  awarded, accepted, shared, shares, views,",
    f"  {derived('engagement_score')} AS engagement_score,",
    f"  {derived('reach_score')} AS reach_score,",
    "  skills_aligned, in_pathway, in_catalog,",
    "  arrayFilter((k, v) -> v = 1, attribute_keys, attribute_values) AS true_attributes",
    "FROM (",
    "  SELECT org_id, badge_class_id, name, skills_aligned, in_pathway, in_catalog, attribute_keys, attribute_values",
    "  FROM badge_classes FINAL",
    f"  WHERE {indent(SCOPE, 4).strip()}",
    ") AS l ANY LEFT JOIN (",
    indent(per_badge_counts_sql()),
    ") AS r USING (org_id, badge_class_id)",
)

ATTRIBUTE_NAMES = sql(
    "arrayConcat(['skills_aligned', 'in_pathway', 'in_catalog'],",
    f"  (SELECT groupUniqArrayArray(attribute_keys) FROM badge_classes FINAL WHERE {ORG} AND {ISSUER} AND {BADGE}))",
)


def drivers_sql():
    groups = []
    for alias, agg in DRIVER_GROUP:
        groups.append(f"{agg.format(g='has_attr')} AS with_{alias}")
        groups.append(f"{agg.format(g='NOT has_attr')} AS without_{alias}")
    lifts = [
        f"if(without_{m} = 0, NULL, with_{m} / without_{m} - 1) AS lift_{m}" for m in LIFT_MEASURES
    ]
    per_attribute = sql(
        "SELECT attribute,",
        indent(",\n".join(groups), 2),
        "FROM (",
        "  SELECT attribute, awarded, accepted, shared, shares, views, engagement_score, reach_score,",
        "    multiIf(attribute = 'skills_aligned', skills_aligned = 1,",
        "            attribute = 'in_pathway', in_pathway = 1,",
        "            attribute = 'in_catalog', in_catalog = 1,",
        "            has(true_attributes, attribute)) AS has_attr",
        "  FROM (",
        indent(BADGE_ATTRIBUTES, 4),
        "  )",
        f"  ARRAY JOIN {indent(ATTRIBUTE_NAMES, 2).strip()} AS attribute",
        ")",
        "GROUP BY attribute",
    )
    cols = ["attribute"] + [f"with_{a}" for a, _ in DRIVER_GROUP] + [f"without_{a}" for a, _ in DRIVER_GROUP]
    return sql(
        "SELECT " + ", ".join(cols) + ",",
        "  " + ",\n  ".join(lifts),
        "FROM (",
        indent(per_attribute),
        ")",
        "ORDER BY attribute",
    )


def performance_drivers():
    l = Layout()
    labels = {"attribute": "Attribute"}
    for alias, _ in DRIVER_GROUP:
        nice = alias.replace("_", " ")
        labels[f"with_{alias}"] = f"With: {nice}"
        labels[f"without_{alias}"] = f"Without: {nice}"
    for m in LIFT_MEASURES:
        labels[f"lift_{m}"] = f"Lift: {m.replace('_', ' ')}"
    rates = [f"{g}_{m}" for g in ("with", "without") for m in ("acceptance_rate", "share_rate")]
    lift_cols = [f"lift_{m}" for m in LIFT_MEASURES]
    l.add(
        text_panel(
            "Each **driver attribute** of a badge class (skills aligned, in a pathway or course, in a catalog or "
            "collection, and every boolean attribute the platform sends) splits the badge classes of the scope that have "
            "metadata in two groups. Scores are means over the group's badge classes with awards in the window; rates "
            "are pooled over the group's events in the window. **Lift** = with ÷ without − 1. The analytics API (`GET /api/v1/drivers`) adds significance tests "
            "and plain-language insights."
        ),
        24,
        3,
    )
    l.add(
        table(
            "Driver attributes: with vs without",
            "Per driver attribute, the badge classes that have it against those that do not.",
            [ch_target(drivers_sql())],
            field_config(
                extra_overrides=overrides(labels)
                + unit_override(rates, "percentunit", 1)
                + unit_override(
                    [f"{g}_{m}" for g in ("with", "without") for m in ("engagement_score", "reach_score")], "none", 1
                )
                + unit_override(["with_external_impact_score", "without_external_impact_score"], "none", 2)
                + unit_override(lift_cols, "percentunit", 1)
            ),
        ),
        24,
        9,
    )
    for measure, title in [("engagement_score", "LES lift by attribute"), ("reach_score", "Reach lift by attribute")]:
        l.add(
            barchart(
                title,
                f"How much higher (or lower) the mean {measure.replace('_', ' ')} is with the attribute than without it.",
                [ch_target(sql(f"SELECT attribute, lift_{measure}", "FROM (", indent(drivers_sql()), ")", "ORDER BY attribute"))],
                field_config(
                    unit="percentunit",
                    decimals=1,
                    extra_overrides=overrides(labels),
                    custom={"fillOpacity": 80, "lineWidth": 1},
                ),
                "attribute",
            ),
            12,
            9,
        )
    class_labels = {
        "badge_class_id": "Badge class",
        "badge_name": "Name",
        "awarded": "Awarded",
        "engagement_score": "LES",
        "reach_score": "Reach",
        "skills_aligned": "Skills aligned",
        "in_pathway": "In pathway",
        "in_catalog": "In catalog",
        "attributes": "Attributes",
    }
    l.add(
        table(
            "Badge classes and their attributes",
            "The badge classes of the scope that have metadata: driver attributes, and awards and scores in the window.",
            [
                ch_target(
                    sql(
                        "SELECT badge_class_id, badge_name, awarded, engagement_score, reach_score,",
                        "  skills_aligned, in_pathway, in_catalog, arrayStringConcat(true_attributes, ', ') AS attributes",
                        "FROM (",
                        indent(BADGE_ATTRIBUTES),
                        ")",
                        "ORDER BY awarded DESC, badge_class_id",
                        "LIMIT 200",
                    )
                )
            ],
            field_config(
                extra_overrides=overrides(class_labels)
                + unit_override(["engagement_score", "reach_score"], "none", 1)
                + [
                    {
                        "matcher": {"id": "byRegexp", "options": "^(skills_aligned|in_pathway|in_catalog)$"},
                        "properties": [
                            {
                                "id": "mappings",
                                "value": [{"type": "value", "options": {"0": {"text": "no", "index": 0}, "1": {"text": "yes", "index": 1}}}],
                            }
                        ],
                    }
                ]
            ),
        ),
        24,
        10,
    )
    return dashboard(
        "badgepulse-drivers",
        "badgepulse / Performance drivers",
        "Which attributes of a badge class go with higher engagement and reach.",
        l,
        "now-90d",
    )


STAGES = [("Awarded", "1"), ("Accepted", "st_accepted"), ("Shared", "st_shared"), ("Viewed", "st_viewed")]


def funnel_sql():
    cols = ",\n  ".join(f"countIf({cond}) AS {stage}" for stage, cond in STAGES)
    return sql(f"SELECT\n  {cols}", "FROM (", indent(COHORT), ")")


def stage_table_sql():
    counts_ = [f"countIf({cond})" for _, cond in STAGES]
    conv = ["1"] + [ratio(counts_[i], counts_[i - 1]) for i in range(1, 4)]
    names = ", ".join(f"'{s}'" for s, _ in STAGES)
    return sql(
        "SELECT stage, assertions, conversion, 1 - conversion AS drop_off",
        "FROM (",
        f"  SELECT [{names}] AS stages,",
        f"    [{', '.join(counts_)}] AS stage_counts,",
        f"    [{', '.join(conv)}] AS conversions",
        "  FROM (",
        indent(COHORT, 4),
        "  )",
        ")",
        "ARRAY JOIN stages AS stage, stage_counts AS assertions, conversions AS conversion",
    )


def conversion_over_time_sql():
    return sql(
        f"SELECT {bucket('t_awarded')} AS time,",
        f"  {ratio('countIf(st_accepted)', 'count()')} AS award_to_accept,",
        f"  {ratio('countIf(st_shared)', 'countIf(st_accepted)')} AS accept_to_share,",
        f"  {ratio('countIf(st_viewed)', 'countIf(st_shared)')} AS share_to_view",
        "FROM (",
        indent(COHORT),
        ")",
        "GROUP BY time",
        "ORDER BY time",
    )


def median_hours_sql():
    # Each over the stage it leads into (SPEC §7.6): award → accept over
    # Accepted, accept → first share over Shared, first share → first view
    # over Viewed (accepted, shared and viewed).
    return sql(
        "SELECT",
        f"  {median_hours('d1')} AS award_to_accept,",
        f"  {median_hours('d2')} AS accept_to_share,",
        f"  {median_hours('d3')} AS share_to_view",
        "FROM (",
        "  SELECT",
        f"    {sorted_seconds('t_awarded', 't_accepted', 'st_accepted')} AS d1,",
        f"    {sorted_seconds('t_accepted', 't_shared', 'st_shared')} AS d2,",
        f"    {sorted_seconds('t_shared', 't_viewed', 'st_viewed')} AS d3",
        "  FROM (",
        indent(COHORT, 4),
        "  )",
        ")",
    )


def lifecycle_and_trends():
    l = Layout()
    l.row("Lifecycle of the badges awarded in the window")
    stage_colors = {"Awarded": "blue", "Accepted": "green", "Shared": "purple", "Viewed": "orange"}
    l.add(
        bargauge(
            "Lifecycle funnel",
            "The assertions first awarded in the window, and how many of them reached each stage; "
            "a stage counts an assertion that has that event and every earlier stage's (GET /api/v1/lifecycle).",
            [ch_target(funnel_sql())],
            field_config(
                extra_overrides=[
                    {
                        "matcher": {"id": "byName", "options": s},
                        "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": c}}],
                    }
                    for s, c in stage_colors.items()
                ],
                min_=0,
            ),
        ),
        12,
        8,
    )
    l.add(
        table(
            "Stage conversion and drop-off",
            "Conversion = count ÷ the previous stage's count; drop-off = 1 − conversion.",
            [ch_target(stage_table_sql())],
            field_config(
                extra_overrides=overrides(
                    {"stage": "Stage", "assertions": "Assertions", "conversion": "Conversion", "drop_off": "Drop-off"}
                )
                + unit_override(["conversion", "drop_off"], "percentunit", 1)
            ),
        ),
        12,
        8,
    )
    conv_labels = {
        "award_to_accept": "Awarded → Accepted",
        "accept_to_share": "Accepted → Shared",
        "share_to_view": "Shared → Viewed",
    }
    l.add(
        timeseries(
            "Stage conversion over time",
            "Per award bucket: the share of the cohort awarded in that bucket that went on to the next stage.",
            [ch_target(conversion_over_time_sql(), time_series=True)],
            field_config(unit="percentunit", extra_overrides=overrides(conv_labels), min_=0, max_=1),
            interval="1h",
        ),
        16,
        8,
    )
    l.add(
        stat(
            "Median time between stages",
            "Median hours from award to acceptance, acceptance to first share, and first share to first view, "
            "for the cohort awarded in the window.",
            [ch_target(median_hours_sql())],
            field_config(unit="h", decimals=1, extra_overrides=overrides(conv_labels)),
        ),
        8,
        8,
    )
    l.row("Trends")
    l.add(
        timeseries(
            "Awarded, accepted, shared, viewed",
            "Per bucket: distinct assertions awarded, accepted, shared, and views; annotations mark program updates.",
            [ch_target(trend_sql(["awarded", "accepted", "shared", "views"]), time_series=True)],
            field_config(extra_overrides=overrides(KPI_LABELS)),
            interval="1h",
            bars=True,
        ),
        24,
        9,
    )
    l.add(
        timeseries(
            "Unique viewers and shares",
            "Per day (or longer bucket): distinct viewers (viewer keys change daily, so each day counts its own) and share events.",
            [ch_target(trend_sql(["unique_viewers", "shares"]), time_series=True)],
            field_config(extra_overrides=overrides({**KPI_LABELS, "shares": "Shares"})),
            interval="1d",
        ),
        12,
        8,
    )
    l.add(
        timeseries(
            "Engagement and reach over time",
            "Per bucket: LES and reach score (0–100).",
            [ch_target(trend_sql(["engagement_score", "reach_score"]), time_series=True)],
            field_config(
                unit="none", decimals=1, extra_overrides=overrides({**KPI_LABELS, "reach_score": "Reach score"}), min_=0, max_=100
            ),
            interval="1h",
        ),
        12,
        8,
    )
    l.add(
        table(
            "Program updates in the window",
            "The annotations of the scope (POST /api/v1/annotations), also shown on the charts.",
            [ch_target(ANNOTATION_SQL)],
            field_config(extra_overrides=overrides({"time": "When", "title": "Title", "text": "Text", "tags": "Scope"})),
        ),
        24,
        6,
    )
    return dashboard(
        "badgepulse-lifecycle",
        "badgepulse / Lifecycle and trends",
        "Where the lifecycle Awarded → Accepted → Shared → Viewed drops off, and how it moves over time.",
        l,
        "now-90d",
    )


RI = "$__rate_interval"


def latency_by_route(title, description, histogram):
    """p50 and p99 of a request-duration histogram, by route."""
    return timeseries(
        title,
        description,
        [
            prom_target(
                f"histogram_quantile({q}, sum by (le, route) (rate({histogram}_bucket[{RI}])))",
                f"p{int(q * 100)} {{{{route}}}}",
                ref,
            )
            for q, ref in [(0.5, "A"), (0.99, "B")]
        ],
        field_config(unit="s"),
    )


def pipeline_health():
    l = Layout()
    jobs = "badgepulse-ingest|badgepulse-aggregator|badgepulse-exporter"
    l.row("Services")
    l.add(
        stat(
            "Targets up",
            "1 when Prometheus can scrape the service's admin listener (alert BadgepulseServiceDown).",
            [prom_target(f'sum by (job) (up{{job=~"{jobs}"}})', "{{job}}")],
            field_config(
                thresholds={"mode": "absolute", "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}]},
                decimals=0,
            ),
            color_mode="background",
        ),
        12,
        4,
    )
    l.add(
        stat(
            "Dead letters in range",
            "Messages the aggregator could not decode and moved to BADGEPULSE_DEAD_LETTERS (alert BadgepulseDeadLetters).",
            [prom_target("sum(increase(badgepulse_aggregator_dead_letters_total[$__range]))", "dead letters")],
            field_config(
                thresholds={"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}]},
                decimals=0,
            ),
            color_mode="background",
        ),
        6,
        4,
    )
    l.add(
        stat(
            "Consumer pending",
            "Messages in the stream not yet delivered to the aggregator, all partitions (alert BadgepulseConsumerLagGrowing).",
            [prom_target("sum(badgepulse_aggregator_consumer_pending)", "pending")],
            field_config(
                thresholds={
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}, {"color": "yellow", "value": 1000}, {"color": "red", "value": 10000}],
                },
                decimals=0,
            ),
        ),
        6,
        4,
    )

    l.add(
        stat(
            "Builds",
            "badgepulse_build_info: the version and git commit each instance runs (commit unknown: built without .git).",
            [prom_target(f'max by (job, instance, version, commit) (badgepulse_build_info{{job=~"{jobs}"}})', "{{job}} {{instance}}: {{version}} {{commit}}")],
            field_config(decimals=0),
            text_mode="name",
            color_mode="none",
        ),
        24,
        4,
    )

    l.row("Processes")
    for title, what, expr, unit in [
        (
            "CPU",
            "CPU time per second (cores busy) of each service process: process_cpu_seconds_total.",
            f'sum by (job, instance) (rate(process_cpu_seconds_total{{job=~"{jobs}"}}[{RI}]))',
            "short",
        ),
        (
            "Resident memory",
            "Resident set size of each service process: process_resident_memory_bytes.",
            f'sum by (job, instance) (process_resident_memory_bytes{{job=~"{jobs}"}})',
            "bytes",
        ),
        (
            "Open file descriptors",
            "Open files and sockets of each service process against its limit: process_open_fds / process_max_fds.",
            f'sum by (job, instance) (process_open_fds{{job=~"{jobs}"}}) / sum by (job, instance) (process_max_fds{{job=~"{jobs}"}})',
            "percentunit",
        ),
    ]:
        l.add(timeseries(title, what, [prom_target(expr, "{{job}} {{instance}}")], field_config(unit=unit)), 8, 8)

    l.row("Ingest")
    l.add(
        timeseries(
            "Requests by route and status",
            "HTTP requests per second.",
            [prom_target(f"sum by (route, status) (rate(badgepulse_ingest_http_requests_total[{RI}]))", "{{route}} {{status}}")],
            field_config(unit="reqps"),
        ),
        8,
        8,
    )
    l.add(
        latency_by_route(
            "Request latency by route",
            "p50 and p99 of the time ingest takes to answer, by route template (alert BadgepulseIngestLatencyHigh above 100 ms).",
            "badgepulse_ingest_http_request_duration_seconds",
        ),
        8,
        8,
    )
    l.add(
        timeseries(
            "Beacon outcomes",
            "Pixel and beacon hits per second by kind and outcome (accepted, bot, bad_signature, invalid, rate_limited, dropped).",
            [prom_target(f"sum by (kind, outcome) (rate(badgepulse_ingest_beacons_total[{RI}]))", "{{kind}} {{outcome}}")],
            field_config(unit="reqps"),
        ),
        8,
        8,
    )
    l.add(
        timeseries(
            "Platform events by outcome",
            "Events per second from POST /v1/events: accepted, duplicate (inside JetStream's window), rejected.",
            [prom_target(f"sum by (outcome) (rate(badgepulse_ingest_events_total[{RI}]))", "{{outcome}}")],
            field_config(unit="short"),
        ),
        8,
        8,
    )
    l.add(
        timeseries(
            "Bots dropped by family",
            "Beacons dropped as bots per second.",
            [prom_target(f"sum by (family) (rate(badgepulse_ingest_bots_total[{RI}]))", "{{family}}")],
            field_config(unit="reqps"),
        ),
        8,
        8,
    )
    l.add(
        timeseries(
            "Publish failures",
            "Failed JetStream publishes per second (alert BadgepulseIngestPublishFailures).",
            [prom_target(f"sum by (kind) (rate(badgepulse_ingest_publish_failures_total[{RI}]))", "{{kind}}")],
            field_config(unit="short"),
        ),
        8,
        8,
    )
    l.add(
        timeseries(
            "Publish latency (publish → PubAck)",
            "p50 and p99 by kind (event, beacon_batch).",
            [
                prom_target(
                    f"histogram_quantile(0.5, sum by (le, kind) (rate(badgepulse_ingest_publish_duration_seconds_bucket[{RI}])))",
                    "p50 {{kind}}",
                    "A",
                ),
                prom_target(
                    f"histogram_quantile(0.99, sum by (le, kind) (rate(badgepulse_ingest_publish_duration_seconds_bucket[{RI}])))",
                    "p99 {{kind}}",
                    "B",
                ),
            ],
            field_config(unit="s"),
        ),
        8,
        8,
    )
    l.add(
        timeseries(
            "Beacon queue",
            "Beacons waiting to be published (a full queue drops beacons, outcome dropped).",
            [prom_target("sum(badgepulse_ingest_buffer_depth)", "queued")],
            field_config(unit="short"),
        ),
        8,
        8,
    )
    l.add(
        timeseries(
            "Beacons per message",
            "p50 and p99 of the micro-batch size; salt fallbacks per second.",
            [
                prom_target(f"histogram_quantile(0.5, sum by (le) (rate(badgepulse_ingest_batch_size_bucket[{RI}])))", "p50", "A"),
                prom_target(f"histogram_quantile(0.99, sum by (le) (rate(badgepulse_ingest_batch_size_bucket[{RI}])))", "p99", "B"),
                prom_target(f"sum(rate(badgepulse_ingest_salt_fallbacks_total[{RI}]))", "salt fallbacks/s", "C"),
            ],
            field_config(unit="short"),
        ),
        8,
        8,
    )

    l.row("Aggregator")
    l.add(
        timeseries(
            "Consumer backlog",
            "Per partition: messages not yet delivered, delivered but not acked, and redelivered.",
            [
                prom_target("sum by (partition) (badgepulse_aggregator_consumer_pending)", "pending p{{partition}}", "A"),
                prom_target("sum by (partition) (badgepulse_aggregator_consumer_ack_pending)", "ack pending p{{partition}}", "B"),
                prom_target("sum by (partition) (badgepulse_aggregator_consumer_redelivered)", "redelivered p{{partition}}", "C"),
            ],
            field_config(unit="short"),
        ),
        12,
        8,
    )
    l.add(
        timeseries(
            "Throughput",
            "Messages processed, rows written to events, duplicates skipped, per second.",
            [
                prom_target(f"sum(rate(badgepulse_aggregator_messages_total[{RI}]))", "messages", "A"),
                prom_target(f"sum(rate(badgepulse_aggregator_events_written_total[{RI}]))", "events written", "B"),
                prom_target(f"sum(rate(badgepulse_aggregator_duplicates_total[{RI}]))", "duplicates", "C"),
                prom_target(f"sum(rate(badgepulse_aggregator_batches_total[{RI}]))", "batches", "D"),
            ],
            field_config(unit="short"),
        ),
        12,
        8,
    )
    l.add(
        timeseries(
            "Flush latency",
            "Time to write one batch to ClickHouse: p50 and p99.",
            [
                prom_target(f"histogram_quantile(0.5, sum by (le) (rate(badgepulse_aggregator_flush_duration_seconds_bucket[{RI}])))", "p50", "A"),
                prom_target(f"histogram_quantile(0.99, sum by (le) (rate(badgepulse_aggregator_flush_duration_seconds_bucket[{RI}])))", "p99", "B"),
            ],
            field_config(unit="s"),
        ),
        8,
        8,
    )
    l.add(
        timeseries(
            "Batch size",
            "Events per batch: p50 and p99.",
            [
                prom_target(f"histogram_quantile(0.5, sum by (le) (rate(badgepulse_aggregator_batch_events_bucket[{RI}])))", "p50", "A"),
                prom_target(f"histogram_quantile(0.99, sum by (le) (rate(badgepulse_aggregator_batch_events_bucket[{RI}])))", "p99", "B"),
            ],
            field_config(unit="short"),
        ),
        8,
        8,
    )
    l.add(
        timeseries(
            "Dead letters and recoveries",
            "Messages moved to the dead-letter stream, and tables recomputed after a partial batch, per second.",
            [
                prom_target(f"sum(rate(badgepulse_aggregator_dead_letters_total[{RI}]))", "dead letters", "A"),
                prom_target(
                    f"sum by (table) (rate(badgepulse_aggregator_recoveries_total[{RI}])) or on() vector(0)", "recovered {{table}}", "B"
                ),
            ],
            field_config(unit="short"),
        ),
        8,
        8,
    )
    l.add(
        timeseries(
            "ClickHouse errors",
            "Failed ClickHouse statements per second: aggregator writes (retried; alert BadgepulseClickHouseInsertErrors) "
            "and exporter queries by query (alert BadgepulseExporterQueryErrors).",
            [
                prom_target(f"sum(rate(badgepulse_aggregator_clickhouse_errors_total[{RI}]))", "aggregator inserts", "A"),
                prom_target(
                    f"sum by (query) (rate(badgepulse_exporter_query_errors_total[{RI}])) or on() vector(0)", "exporter {{query}}", "B"
                ),
                prom_target(f"sum(rate(badgepulse_exporter_refresh_errors_total[{RI}]))", "exporter metric refreshes", "C"),
            ],
            field_config(unit="short"),
        ),
        12,
        8,
    )
    l.add(
        timeseries(
            "NATS errors",
            "Failed JetStream fetches, acks or dead-letter publishes of the aggregator per second.",
            [prom_target(f"sum(rate(badgepulse_aggregator_nats_errors_total[{RI}]))", "nats errors")],
            field_config(unit="short"),
        ),
        12,
        8,
    )

    l.row("Exporter")
    l.add(
        timeseries(
            "API requests by route and status",
            "HTTP responses per second (304: a poll answered Not Modified by its ETag).",
            [prom_target(f"sum by (route, status) (rate(badgepulse_exporter_http_requests_total[{RI}]))", "{{route}} {{status}}")],
            field_config(unit="reqps"),
        ),
        12,
        8,
    )
    l.add(
        latency_by_route(
            "API latency by route",
            "p50 and p99 of the time the exporter takes to answer, by route template (alert BadgepulseExporterLatencyHigh above 5 s).",
            "badgepulse_exporter_http_request_duration_seconds",
        ),
        12,
        8,
    )
    l.add(
        timeseries(
            "Query latency p99",
            "ClickHouse query latency of the exporter by query.",
            [
                prom_target(
                    f"histogram_quantile(0.99, sum by (le, query) (rate(badgepulse_exporter_query_duration_seconds_bucket[{RI}])))",
                    "{{query}}",
                )
            ],
            field_config(unit="s"),
        ),
        8,
        8,
    )
    l.add(
        timeseries(
            "Business metrics age",
            "Seconds since the exporter last refreshed its cached business metrics (alert BadgepulseExporterMetricsStale).",
            [prom_target("time() - max(badgepulse_exporter_last_refresh_timestamp_seconds)", "age")],
            field_config(unit="s"),
        ),
        8,
        8,
    )
    l.add(
        timeseries(
            "API result cache lookups",
            "Lookups of the exporter's result cache per second: hit (answered from memory), stale (a kept answer served while it is recomputed, within exporter.cache_max_staleness_ms), miss (asked ClickHouse), bypass (Cache-Control: no-cache), off (not following the change notices on NATS, so not caching); and background refreshes of kept answers by outcome.",
            [
                prom_target(f"sum by (result) (rate(badgepulse_exporter_cache_lookups_total[{RI}]))", "{{result}}"),
                prom_target(f"sum by (outcome) (rate(badgepulse_exporter_cache_refreshes_total[{RI}]))", "refresh {{outcome}}"),
            ],
            field_config(unit="reqps"),
        ),
        8,
        8,
    )
    l.add(
        timeseries(
            "Badge events on /metrics, all orgs",
            "badgepulse_badge_events_total by event (all time, from the exporter's cache).",
            [prom_target("sum by (event) (badgepulse_badge_events_total)", "{{event}}")],
            field_config(unit="short"),
        ),
        24,
        8,
    )
    return dashboard(
        "badgepulse-pipeline",
        "badgepulse / Pipeline health",
        "Ingest, NATS JetStream, aggregator, ClickHouse and exporter, from the services' Prometheus metrics.",
        l,
        "now-1h",
        annotations=False,
        refresh="30s",
        hide_vars=2,
    )


# --------------------------------------------------------------------------
# Program insights (SPEC §7.7–§7.10)
# --------------------------------------------------------------------------

# Impact: the windows and horizon of GET /api/v1/impact's defaults.
IMPACT_DAYS = 28
IMPACT_HORIZON = 7
# The latest program updates shown.
IMPACT_LATEST = 5
# Benchmark: the exporter's defaults (exporter.min_awarded,
# exporter.benchmark_min_peers), each followed in the SQL by a comment
# naming it.
BENCHMARK_MIN_AWARDED = 10
BENCHMARK_MIN_PEERS = 10
BENCHMARK_MEASURES = ["acceptance_rate", "share_rate", "engagement_score", "external_impact_score", "reach_score"]
COHORT_AGES = 12

# One row per assertion of the scope, with its issuer and badge class (to
# narrow it to an annotation's own scope) and its first award, accept and
# share.
SCOPED_ASSERTIONS = sql(
    "SELECT org_id, issuer_id AS l_issuer, badge_class_id AS l_badge,",
    "  minIfMerge(first_awarded) AS t_awarded,",
    "  minIfMerge(first_accepted) AS t_accepted,",
    "  minIfMerge(first_shared) AS t_shared,",
    "  countIfMerge(awarded) > 0 AS is_awarded,",
    "  countIfMerge(accepted) > 0 AS is_accepted,",
    "  countIfMerge(shares) > 0 AS is_shared",
    "FROM assertion_lifecycle",
    f"WHERE {indent(SCOPE, 2).strip()}",
    "GROUP BY org_id, issuer_id, badge_class_id, assertion_id",
)

# The latest program updates of the scope up to the end of the range (the
# visibility of ANNOTATION_SQL).
LATEST_ANNOTATIONS = sql(
    "SELECT org_id, issuer_id AS u_issuer, badge_class_id AS u_badge, at AS u_at, title AS u_title",
    "FROM annotations",
    "WHERE at < $__toTime",
    f"  AND {ORG}",
    f"  AND (issuer_id = '' OR issuer_id = '${{issuer}}'",
    f"       OR ('${{issuer}}' = '{ALL}' AND ('${{badge_class}}' = '{ALL}' OR badge_class_id = '${{badge_class}}')))",
    f"  AND (badge_class_id = '' OR {BADGE})",
    f"ORDER BY at DESC, id LIMIT {IMPACT_LATEST}",
)


def z_test_p(x1, n1, x2, n2):
    """Two-sided p-value of the pooled two-proportion z-test (NULL when a
    group is empty or the pooled proportion is 0 or 1), as the exporter's."""
    pooled = f"(({x1} + {x2}) / ({n1} + {n2}))"
    return (
        f"if({n1} = 0 OR {n2} = 0 OR {x1} + {x2} = 0 OR {x1} + {x2} = {n1} + {n2}, NULL, "
        f"erfc(abs({x1} / {n1} - {x2} / {n2}) / sqrt({pooled} * (1 - {pooled}) * (1 / {n1} + 1 / {n2})) / sqrt(2)))"
    )


def change(after, before):
    return f"if({before} = 0 OR {before} IS NULL OR {after} IS NULL, NULL, ({after} - {before}) / {before})"


def impact_sql():
    d = IMPACT_DAYS * 86400
    h = IMPACT_HORIZON * 86400
    rates = {
        "acceptance": ("accepted", "awarded"),
        "sharing": ("shared", "accepted"),
    }
    cols = []
    for name, (x, n) in rates.items():
        cols += [
            f"{ratio(f'b_{x}', f'b_{n}')} AS {name}_before",
            f"{ratio(f'a_{x}', f'a_{n}')} AS {name}_after",
            f"{change(ratio(f'a_{x}', f'a_{n}'), ratio(f'b_{x}', f'b_{n}'))} AS {name}_change",
            f"{z_test_p(f'b_{x}', f'b_{n}', f'a_{x}', f'a_{n}')} AS {name}_p",
        ]
    return sql(
        "SELECT u_title AS program_update, u_at AS update_at, b_awarded AS cohort_before, a_awarded AS cohort_after,",
        "  " + ",\n  ".join(cols),
        "FROM (",
        "  SELECT u_title, u_at,",
        "    countIf(in_before) AS b_awarded, countIf(in_before AND acc) AS b_accepted, countIf(in_before AND acc AND shr) AS b_shared,",
        "    countIf(in_after) AS a_awarded, countIf(in_after AND acc) AS a_accepted, countIf(in_after AND acc AND shr) AS a_shared",
        "  FROM (",
        "    SELECT u_title, u_at,",
        f"      is_awarded AND t_awarded >= u_at - {d} AND t_awarded < u_at AND t_awarded <= now() - {h} AS in_before,",
        f"      is_awarded AND t_awarded >= u_at AND t_awarded < u_at + {d} AND t_awarded <= now() - {h} AS in_after,",
        f"      is_accepted AND toInt64(t_accepted) - toInt64(t_awarded) <= {h} AS acc,",
        f"      is_shared AND toInt64(t_shared) - toInt64(t_awarded) <= {h} AS shr",
        "    FROM (",
        indent(SCOPED_ASSERTIONS, 6),
        "    ) AS l",
        "    ALL INNER JOIN (",
        indent(LATEST_ANNOTATIONS, 6),
        "    ) AS u USING (org_id)",
        "    WHERE (u_issuer = '' OR l_issuer = u_issuer) AND (u_badge = '' OR l_badge = u_badge)",
        "  )",
        "  GROUP BY u_title, u_at",
        ")",
        "ORDER BY update_at DESC, program_update",
    )


WEEKDAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def timing_heatmap_sql():
    hours = ",\n  ".join(
        f"{ratio(f'countIf(hour = {h} AND acc)', f'countIf(hour = {h})')} AS h{h:02d}" for h in range(24)
    )
    names = ", ".join(f"'{n}'" for n in WEEKDAY_NAMES)
    return sql(
        f"SELECT [{names}][weekday] AS day, weekday,",
        f"  count() AS awarded,",
        f"  {hours}",
        "FROM (",
        "  SELECT toDayOfWeek(t_awarded) AS weekday, toHour(t_awarded) AS hour, is_accepted AS acc",
        "  FROM (",
        indent(LIFECYCLE_BASE, 4),
        "  )",
        "  WHERE is_awarded AND t_awarded >= $__fromTime AND t_awarded < $__toTime",
        ")",
        "GROUP BY weekday",
        "ORDER BY weekday",
    )


def cohort_triangle_sql():
    ages = []
    for k in range(COHORT_AGES):
        ages.append(
            f"if(addMonths(cohort, {k + 1}) > toDate(now(), 'UTC'), NULL, "
            f"countIf(reached AND reached_month <= addMonths(cohort, {k})) / count()) AS m{k}"
        )
    return sql(
        "SELECT cohort, count() AS size,",
        "  " + ",\n  ".join(ages),
        "FROM (",
        "  SELECT toStartOfMonth(t_awarded) AS cohort, is_accepted AS reached, toStartOfMonth(t_accepted) AS reached_month",
        "  FROM (",
        indent(LIFECYCLE_BASE, 4),
        "  )",
        "  WHERE is_awarded AND t_awarded >= $__fromTime AND t_awarded < $__toTime",
        ")",
        "GROUP BY cohort",
        "ORDER BY cohort",
    )


def benchmark_sql():
    # Per org: the counts of the window and each rate (NULL when
    # undefined), as GET /api/v1/benchmark computes them.
    per_org = sql(
        "SELECT org_id, awarded,",
        "  " + ",\n  ".join(f"{derived(m)} AS {m}" for m in BENCHMARK_MEASURES),
        "FROM (",
        "  SELECT org_id,",
        indent(",\n".join(counts()), 4),
        "  FROM",
        indent(states_union([FROM, TO], "org_id", "org_id", "org_id", every_org=True), 4),
        "  GROUP BY org_id",
        ")",
    )
    min_awarded = f"{BENCHMARK_MIN_AWARDED} /* min_awarded */"
    min_peers = f"{BENCHMARK_MIN_PEERS} /* min_peers */"
    peers = ",\n    ".join(
        f"groupArrayIf(assumeNotNull({m}), awarded >= {min_awarded} AND {m} IS NOT NULL) AS peers_{m}"
        for m in BENCHMARK_MEASURES
    )
    cols = []
    for m in BENCHMARK_MEASURES:
        arr = f"peers_{m}"
        ranked = f"awarded >= {min_awarded} AND {m} IS NOT NULL AND length({arr}) >= {min_peers}"
        cols.append(
            f"if({ranked}, 100 * (arrayCount(x -> x < assumeNotNull({m}), {arr}) + "
            f"0.5 * arrayCount(x -> x = assumeNotNull({m}), {arr})) / length({arr}), NULL) AS {m}_percentile"
        )
        cols.append(f"length({arr}) AS {m}_peers")
    return sql(
        "SELECT org_id, awarded,",
        "  " + ",\n  ".join(cols),
        "FROM (",
        indent(per_org),
        ") AS o",
        "CROSS JOIN (",
        "  SELECT",
        f"    {peers}",
        "  FROM (",
        indent(per_org, 4),
        "  )",
        ") AS p",
        f"WHERE {ORG}",
        "ORDER BY org_id",
    )


def shaded_table(colors, labels, plain, width=None, hidden=()):
    """Field config of a table of shares (0–1) as a heatmap: each cell's
    background from pale to `colors` (at 25, 50 and 75 %); the `plain`
    (column, unit) pairs as ordinary cells; `hidden` columns not shown."""
    custom = {"cellOptions": {"type": "color-background", "mode": "basic"}}
    if width:
        custom["width"] = width
    steps = [{"color": "#f2f2f2", "value": None}] + [
        {"color": c, "value": v} for c, v in zip(colors, [0.25, 0.5, 0.75])
    ]
    return field_config(
        unit="percentunit",
        decimals=0,
        min_=0,
        max_=1,
        thresholds={"mode": "absolute", "steps": steps},
        custom=custom,
        extra_overrides=overrides(labels)
        + [
            {
                "matcher": {"id": "byName", "options": c},
                "properties": [{"id": "custom.cellOptions", "value": {"type": "auto"}}, {"id": "unit", "value": u}],
            }
            for c, u in plain
        ]
        + [{"matcher": {"id": "byName", "options": c}, "properties": [{"id": "custom.hidden", "value": True}]} for c in hidden],
    )


def program_insights():
    l = Layout()
    l.add(
        text_panel(
            "What changed after a program update, when awards are accepted, how each month's awards mature, and where "
            "an org stands among its peers (SPEC §7.7–§7.10). The analytics API answers each for any scope and window, "
            "with every measure, significance test and plain-language insight: `GET /api/v1/impact`, `/timing?tz=…`, "
            "`/cohorts`, `/benchmark`. A change after an update is not proof that the update caused it."
        ),
        24,
        3,
    )
    l.row("Impact of the latest program updates")
    impact_labels = {"program_update": "Program update", "update_at": "At", "cohort_before": "Awards before", "cohort_after": "Awards after"}
    for name, nice in [("acceptance", "Accepted"), ("sharing", "Shared")]:
        impact_labels.update(
            {
                f"{name}_before": f"{nice} within {IMPACT_HORIZON} d: before",
                f"{name}_after": f"{nice} within {IMPACT_HORIZON} d: after",
                f"{name}_change": f"{nice}: change",
                f"{name}_p": f"{nice}: p-value",
            }
        )
    pct = [f"{n}_{w}" for n in ("acceptance", "sharing") for w in ("before", "after", "change")]
    l.add(
        table(
            "Impact of the latest program updates",
            f"For each of the {IMPACT_LATEST} latest annotations of the scope up to the end of the range: the badges first "
            f"awarded in the {IMPACT_DAYS} days before and after it (and at least {IMPACT_HORIZON} days before now), "
            f"the share accepted within {IMPACT_HORIZON} days of the award, and of those the share also shared within "
            f"{IMPACT_HORIZON} days, each with its pooled two-proportion z-test (GET /api/v1/impact; the API adds views per "
            "share, awards and views per day, and insights). The cohort of an annotation is narrowed to its issuer or badge class.",
            [ch_target(impact_sql())],
            field_config(
                extra_overrides=overrides(impact_labels)
                + unit_override(pct, "percentunit", 1)
                + unit_override(["acceptance_p", "sharing_p"], "none", 4)
            ),
        ),
        24,
        7,
    )
    l.row("Timing and cohorts")
    heat_labels = {"day": "Weekday", "awarded": "Awarded"}
    heat_labels.update({f"h{h:02d}": f"{h:02d}" for h in range(24)})
    hour_cols = [f"h{h:02d}" for h in range(24)]
    l.add(
        table(
            "Acceptance by weekday and hour (UTC)",
            "The badges first awarded in the range by the weekday and hour (UTC) of the award: the share accepted by now "
            "(GET /api/v1/timing?tz=UTC cells). For another time zone, ask the API with tz=Europe/Paris and the like.",
            [ch_target(timing_heatmap_sql())],
            shaded_table(
                ["#c6dbef", "#6baed6", "#2171b5"],
                heat_labels,
                [("day", "string"), ("awarded", "short")],
                width=44,
                hidden=["weekday"],
            ),
        ),
        24,
        8,
    )
    tri_labels = {"cohort": "Cohort (month of award)", "size": "Awarded"}
    tri_labels.update({f"m{k}": f"+{k}" for k in range(COHORT_AGES)})
    l.add(
        table(
            "Cohort triangle: share accepted by month since the award",
            f"The badges first awarded in the range, by month of award (UTC): the share accepted by the end of each month "
            f"after it (+0 is the award's month; empty while that month runs; the first {COHORT_AGES} shown). "
            "GET /api/v1/cohorts has every age, weeks, and the shared and viewed stages.",
            [ch_target(cohort_triangle_sql())],
            shaded_table(
                ["#c7e9c0", "#74c476", "#238b45"],
                tri_labels,
                [("cohort", "dateTimeAsIsoNoDateIfToday"), ("size", "short")],
            ),
        ),
        24,
        8,
    )
    l.row("Peer benchmark")
    bench_labels = {"org_id": "Organisation", "awarded": "Awarded"}
    for m in BENCHMARK_MEASURES:
        nice = KPI_LABELS.get(m, m.replace("_", " ").capitalize())
        bench_labels[f"{m}_percentile"] = f"{nice}: percentile"
        bench_labels[f"{m}_peers"] = f"{nice}: peers"
    l.add(
        table(
            "Each org's percentile among the orgs",
            f"Per org (the issuer and badge class variables do not apply): its percentile rank on each rate over the range "
            f"among the orgs with at least {BENCHMARK_MIN_AWARDED} awards and a value, and how many such peers there are; "
            f"empty with fewer than {BENCHMARK_MIN_PEERS} peers (the exporter's defaults of min_awarded and "
            "benchmark_min_peers). GET /api/v1/benchmark adds the quartiles, and ranks issuers too.",
            [ch_target(benchmark_sql())],
            field_config(
                decimals=1,
                extra_overrides=overrides(bench_labels)
                + unit_override([f"{m}_percentile" for m in BENCHMARK_MEASURES], "none", 1)
                + unit_override([f"{m}_peers" for m in BENCHMARK_MEASURES] + ["awarded"], "short", 0),
            ),
        ),
        24,
        7,
    )
    return dashboard(
        "badgepulse-insights",
        "badgepulse / Program insights",
        "The impact of program updates, acceptance by weekday and hour, award cohorts, and each org among its peers.",
        l,
        "now-90d",
    )


BUILDERS = {
    "performance-overview.json": performance_overview,
    "distribution-insights.json": distribution_insights,
    "top-badges.json": top_badges,
    "performance-drivers.json": performance_drivers,
    "lifecycle-and-trends.json": lifecycle_and_trends,
    "program-insights.json": program_insights,
    "pipeline-health.json": pipeline_health,
}


def render(builder):
    return json.dumps(builder(), indent=2, ensure_ascii=False) + "\n"


def main(argv):
    check = "--check" in argv[1:]
    stale = []
    DASHBOARDS.mkdir(parents=True, exist_ok=True)
    for name, builder in BUILDERS.items():
        path = DASHBOARDS / name
        text = render(builder)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            if check:
                stale.append(name)
            else:
                path.write_text(text, encoding="utf-8")
    expected = set(BUILDERS)
    extra = sorted(p.name for p in DASHBOARDS.glob("*.json") if p.name not in expected)
    if check and (stale or extra):
        for name in stale:
            print(f"grafana/dashboards/{name} is stale: run python3 grafana/generate.py", file=sys.stderr)
        for name in extra:
            print(f"grafana/dashboards/{name} is not generated by grafana/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
