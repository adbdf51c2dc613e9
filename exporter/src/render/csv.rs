//! CSV exports of the tabular endpoints (`format=csv`, SPEC §8): a
//! [`Table`] of typed cells written as RFC 4180 text.
//!
//! Rules (see `docs/metrics.md`):
//! - a header row, CRLF line ends, fields with a comma, quote, CR or LF
//!   quoted with inner quotes doubled;
//! - formula injection: a *text* cell starting with `=`, `+`, `-`, `@`,
//!   tab or CR is prefixed with `'` so spreadsheets show it as text.
//!   Numeric cells are written as numbers and never prefixed (a change of
//!   `-0.25` stays a number); they cannot carry a formula;
//! - null is the empty field; booleans are `true`/`false`.
//!
//! Pure functions only; no HTTP here.

use crate::model::measures::Value;

/// One field of a CSV row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Count(u64),
    Number(f64),
    Bool(bool),
    Null,
}

impl Cell {
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    /// A number, or null.
    pub fn opt(v: Option<f64>) -> Cell {
        v.map_or(Cell::Null, Cell::Number)
    }

    /// A text cell, or null.
    pub fn opt_text(v: Option<&str>) -> Cell {
        v.map_or(Cell::Null, Cell::text)
    }
}

impl From<Option<Value>> for Cell {
    fn from(v: Option<Value>) -> Cell {
        match v {
            Some(Value::Count(n)) => Cell::Count(n),
            Some(Value::Ratio(r)) => Cell::Number(r),
            None => Cell::Null,
        }
    }
}

/// A header and rows of cells.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row, which must have one cell per header column.
    pub fn push(&mut self, row: Vec<Cell>) {
        assert_eq!(row.len(), self.header.len(), "CSV row width");
        self.rows.push(row);
    }

    /// The RFC 4180 text.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let header: Vec<Cell> = self.header.iter().map(Cell::text).collect();
        write_row(&mut out, &header);
        for row in &self.rows {
            write_row(&mut out, row);
        }
        out
    }
}

/// A response body that can be exported as CSV.
pub trait Tabular {
    /// File name stem for `Content-Disposition`, e.g. `distribution`.
    fn csv_name(&self) -> &'static str;
    fn table(&self) -> Table;
}

fn write_row(out: &mut String, row: &[Cell]) {
    for (n, cell) in row.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        match cell {
            Cell::Text(s) => write_text(out, s),
            Cell::Count(v) => out.push_str(&v.to_string()),
            Cell::Number(v) if v.is_finite() => out.push_str(&v.to_string()),
            Cell::Number(_) | Cell::Null => {}
            Cell::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }
    out.push_str("\r\n");
}

/// Whether a spreadsheet could read `s` as a formula.
pub fn is_formula_like(s: &str) -> bool {
    matches!(
        s.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    )
}

/// `s` neutralised against formula injection and quoted as needed.
fn write_text(out: &mut String, s: &str) {
    let prefix = if is_formula_like(s) { "'" } else { "" };
    if s.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(prefix);
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(prefix);
        out.push_str(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_rfc4180() {
        let mut t = Table::new(["value", "count", "share"]);
        t.push(vec![
            Cell::text("linkedin"),
            Cell::Count(3),
            Cell::Number(0.75),
        ]);
        t.push(vec![Cell::text("a,b \"c\"\nd"), Cell::Count(1), Cell::Null]);
        t.push(vec![Cell::text(""), Cell::Count(0), Cell::Bool(true)]);
        assert_eq!(
            t.to_csv(),
            "value,count,share\r\nlinkedin,3,0.75\r\n\"a,b \"\"c\"\"\nd\",1,\r\n,0,true\r\n"
        );
    }

    #[test]
    fn neutralises_formulas_in_text_only() {
        let mut t = Table::new(["title", "change"]);
        for s in ["=1+2", "+33", "-2", "@SUM(A1)", "\tx", "\rx"] {
            t.push(vec![Cell::text(s), Cell::Number(-0.25)]);
        }
        t.push(vec![Cell::text("=HYPERLINK(\"x\",\"y\")"), Cell::Count(5)]);
        t.push(vec![Cell::text("plain - text"), Cell::Number(60.0)]);
        assert_eq!(
            t.to_csv(),
            "title,change\r\n'=1+2,-0.25\r\n'+33,-0.25\r\n'-2,-0.25\r\n'@SUM(A1),-0.25\r\n'\tx,-0.25\r\n\"'\rx\",-0.25\r\n\
             \"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\",5\r\nplain - text,60\r\n"
        );
    }

    #[test]
    fn numbers_round_trip() {
        let mut t = Table::new(["x"]);
        for v in [1.0 / 3.0, 66.666_666_666_666_67, 1e-7, f64::NAN] {
            t.push(vec![Cell::Number(v)]);
        }
        let csv = t.to_csv();
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines[1].parse::<f64>().unwrap(), 1.0 / 3.0);
        assert_eq!(lines[2].parse::<f64>().unwrap(), 66.666_666_666_666_67);
        assert_eq!(lines[3].parse::<f64>().unwrap(), 1e-7);
        assert_eq!(lines[4], "", "non-finite numbers are null");
        assert_eq!(Cell::from(Some(Value::Count(4))), Cell::Count(4));
        assert_eq!(Cell::from(None), Cell::Null);
    }
}
