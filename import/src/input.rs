//! The input files: which format each one is, and reading SPEC §3 events
//! from NDJSON and CSV into [`Item`]s, one per record, in file order.
//!
//! Every record becomes exactly one item: an event to send, or a [`Reject`]
//! naming its file and line. How much is checked here is a [`Check`]: JSON
//! syntax in a normal run (ingest validates each event), the contract's
//! own validation with `--dry-run` (the same messages ingest gives).
//! Open Badges files are read by `openbadges.rs`. Nothing here sends.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use badgepulse_contract::event::{raw_event_id, validate_platform_event};
use chrono::Utc;
use serde_json::{Map, Value};

/// A record's place: the input's index (in the order given) and its line
/// (1-based; for CSV the line where the record starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    pub file: usize,
    pub line: u64,
}

/// A record that will not be stored, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub origin: Origin,
    pub event_id: Option<String>,
    pub error: String,
}

/// What one record of the input gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An event to send: its JSON text, and its `event_id` when known
    /// (an NDJSON line checked for syntax only is not parsed further).
    Event {
        origin: Origin,
        event_id: Option<String>,
        json: Vec<u8>,
    },
    Reject(Reject),
}

impl Item {
    pub fn reject(origin: Origin, event_id: Option<String>, error: impl Into<String>) -> Item {
        Item::Reject(Reject {
            origin,
            event_id,
            error: error.into(),
        })
    }
}

/// How records are checked before they are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// What a request needs: JSON. Ingest validates each event with the
    /// same contract code, and its per-event rejections go to the rejects
    /// file with their file and line. The normal run: the contract's
    /// validation costs as much CPU as the rest of the importer.
    Syntax,
    /// The contract's validation, as ingest would run it now
    /// (`--dry-run`: every reject known without sending).
    Contract,
}

impl Check {
    /// The item of an event object built from a record (CSV, Open Badges).
    pub fn object(self, origin: Origin, event: &Value) -> Item {
        match self {
            Check::Syntax => Item::Event {
                origin,
                event_id: raw_event_id(event),
                json: event.to_string().into_bytes(),
            },
            Check::Contract => match validate_platform_event(event, Utc::now()) {
                Ok(e) => Item::Event {
                    origin,
                    event_id: Some(e.event_id),
                    json: event.to_string().into_bytes(),
                },
                Err(err) => Item::reject(origin, raw_event_id(event), err.to_string()),
            },
        }
    }

    /// The item of one NDJSON line (trimmed, not blank), sent as written.
    pub fn line(self, origin: Origin, text: &[u8]) -> Item {
        // Syntax first in both modes, so that both give the same message.
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(text) {
            return Item::reject(origin, None, format!("line: not valid JSON: {e}"));
        }
        match self {
            Check::Syntax => Item::Event {
                origin,
                event_id: None,
                json: text.to_vec(),
            },
            Check::Contract => match serde_json::from_slice::<Value>(text) {
                Ok(v) => match validate_platform_event(&v, Utc::now()) {
                    Ok(e) => Item::Event {
                        origin,
                        event_id: Some(e.event_id),
                        json: text.to_vec(),
                    },
                    Err(err) => Item::reject(origin, raw_event_id(&v), err.to_string()),
                },
                Err(e) => Item::reject(origin, None, format!("line: not valid JSON: {e}")),
            },
        }
    }
}

/// The format of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// SPEC §3 events, one JSON object per line.
    Ndjson,
    /// SPEC §3 events, a header row naming the fields.
    Csv,
    /// Open Badges 2.0 (Assertion, BadgeClass, Issuer) and 3.0
    /// (OpenBadgeCredential) JSON: one object, an array, or one per line.
    Openbadges,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
            Format::Openbadges => "openbadges",
        }
    }
}

/// An input file with its format.
#[derive(Debug, Clone)]
pub struct Input {
    pub path: PathBuf,
    pub format: Format,
}

/// Errors that stop the run before or while reading (not a bad record).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    /// The run stopped taking batches (it ended or failed elsewhere).
    #[error("the run stopped")]
    Stopped,
}

impl InputError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        InputError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The format of `path`: `.csv` is CSV; otherwise the first line is read,
/// and a JSON object whose `type` is a SPEC §3 type (`badge.…`,
/// `badge_class.…`) makes the file NDJSON events; anything else is Open
/// Badges.
pub fn detect_format(path: &Path) -> Result<Format, InputError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if ext.as_deref() == Some("csv") {
        return Ok(Format::Csv);
    }
    let file = File::open(path).map_err(|e| InputError::io(path, e))?;
    let mut first = Vec::new();
    let mut reader = BufReader::new(file);
    loop {
        first.clear();
        let n = reader
            .by_ref()
            .take(1 << 20)
            .read_until(b'\n', &mut first)
            .map_err(|e| InputError::io(path, e))?;
        if n == 0 || !first.iter().all(u8::is_ascii_whitespace) {
            break;
        }
    }
    let is_event = serde_json::from_slice::<Value>(&first)
        .ok()
        .and_then(|v| v.get("type")?.as_str().map(str::to_owned))
        .is_some_and(|t| t.starts_with("badge.") || t.starts_with("badge_class."));
    Ok(if is_event {
        Format::Ndjson
    } else {
        Format::Openbadges
    })
}

/// Reads an NDJSON file of events, calling `emit` with one item per
/// non-blank line.
pub fn read_ndjson(
    input: &Input,
    file_index: usize,
    check: Check,
    emit: &mut dyn FnMut(Item) -> Result<(), InputError>,
) -> Result<(), InputError> {
    let path = &input.path;
    let file = File::open(path).map_err(|e| InputError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::with_capacity(1024);
    let mut line = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| InputError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        let text = buf.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let origin = Origin {
            file: file_index,
            line,
        };
        emit(check.line(origin, text))?;
    }
}

/// The number of records an NDJSON file holds, for the progress bar: its
/// lines (blank lines too: an estimate that costs one vectorised scan).
pub fn count_ndjson(path: &Path) -> Result<u64, InputError> {
    let file = File::open(path).map_err(|e| InputError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut count = 0u64;
    let mut last = b'\n';
    loop {
        let chunk = reader.fill_buf().map_err(|e| InputError::io(path, e))?;
        let Some(&end) = chunk.last() else {
            return Ok(count + u64::from(last != b'\n'));
        };
        count += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        last = end;
        let n = chunk.len();
        reader.consume(n);
    }
}

/// The SPEC §3 fields a CSV column may name.
const CSV_COLUMNS: &[&str] = &[
    "event_id",
    "type",
    "occurred_at",
    "org_id",
    "issuer_id",
    "badge_class_id",
    "assertion_id",
    "award_method",
    "channel",
    "source",
    "country",
    "name",
    "skills",
    "pathways",
    "courses",
    "catalogs",
    "collections",
    "attributes",
];

/// Columns holding lists, `;`-separated.
const CSV_LISTS: &[&str] = &["skills", "pathways", "courses", "catalogs", "collections"];

fn csv_reader(path: &Path) -> Result<csv::Reader<File>, InputError> {
    let file = File::open(path).map_err(|e| InputError::io(path, e))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(file))
}

/// The header row of a CSV file, checked: every column a SPEC §3 field,
/// none twice.
fn csv_header(path: &Path, reader: &mut csv::Reader<File>) -> Result<Vec<String>, InputError> {
    let invalid = |message: String| InputError::Invalid {
        path: path.display().to_string(),
        message,
    };
    let header = reader
        .headers()
        .map_err(|e| invalid(format!("header row: {e}")))?;
    let columns: Vec<String> = header.iter().map(str::to_owned).collect();
    for (i, c) in columns.iter().enumerate() {
        if !CSV_COLUMNS.contains(&c.as_str()) {
            return Err(invalid(format!(
                "header row: unknown column {c:?} (expected SPEC §3 fields: {})",
                CSV_COLUMNS.join(", ")
            )));
        }
        if columns[..i].contains(c) {
            return Err(invalid(format!("header row: column {c:?} appears twice")));
        }
    }
    Ok(columns)
}

/// One CSV record as a SPEC §3 event object: empty cells are absent
/// fields, list fields are split on `;`, `attributes` is
/// `key=true;key2=false`.
pub fn csv_event(columns: &[String], record: &csv::StringRecord) -> Result<Value, String> {
    let mut obj = Map::new();
    for (column, cell) in columns.iter().zip(record.iter()) {
        if cell.is_empty() {
            continue;
        }
        let value = if CSV_LISTS.contains(&column.as_str()) {
            Value::Array(
                cell.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            )
        } else if column == "attributes" {
            let mut attributes = Map::new();
            for pair in cell.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                let (key, value) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("attributes: {pair:?} is not key=true or key=false"))?;
                let value = match value.trim() {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(format!(
                            "attributes.{}: {other:?} is not true or false",
                            key.trim()
                        ))
                    }
                };
                attributes.insert(key.trim().to_owned(), Value::Bool(value));
            }
            Value::Object(attributes)
        } else {
            Value::String(cell.to_owned())
        };
        obj.insert(column.clone(), value);
    }
    Ok(Value::Object(obj))
}

/// Reads a CSV file of events, calling `emit` with one item per record.
pub fn read_csv(
    input: &Input,
    file_index: usize,
    check: Check,
    emit: &mut dyn FnMut(Item) -> Result<(), InputError>,
) -> Result<(), InputError> {
    let path = &input.path;
    let mut reader = csv_reader(path)?;
    let columns = csv_header(path, &mut reader)?;
    let mut record = csv::StringRecord::new();
    loop {
        let line_before = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let origin = Origin {
                    file: file_index,
                    line: record.position().map_or(line_before, |p| p.line()),
                };
                let id = columns
                    .iter()
                    .position(|c| c == "event_id")
                    .and_then(|i| record.get(i))
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned);
                let item = match csv_event(&columns, &record) {
                    Ok(event) => check.object(origin, &event),
                    Err(e) => Item::reject(origin, id.filter(|s| s.len() <= 64), e),
                };
                emit(item)?;
            }
            Err(e) => {
                if let csv::ErrorKind::Io(io) = e.kind() {
                    return Err(InputError::Invalid {
                        path: path.display().to_string(),
                        message: io.to_string(),
                    });
                }
                let line = e.position().map_or(line_before, |p| p.line());
                emit(Item::reject(
                    Origin {
                        file: file_index,
                        line,
                    },
                    None,
                    format!("record: {e}"),
                ))?;
            }
        }
    }
}

/// The number of records of a CSV file, for the progress bar.
pub fn count_csv(path: &Path) -> Result<u64, InputError> {
    let mut reader = csv_reader(path)?;
    let mut record = csv::ByteRecord::new();
    let mut n = 0u64;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => n += 1,
            Ok(false) => return Ok(n),
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                return Err(InputError::Invalid {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })
            }
            Err(_) => n += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(input: &Input, check: Check) -> Vec<Item> {
        let mut items = Vec::new();
        let read = match input.format {
            Format::Ndjson => read_ndjson,
            Format::Csv => read_csv,
            Format::Openbadges => unreachable!(),
        };
        read(input, 0, check, &mut |i| {
            items.push(i);
            Ok(())
        })
        .unwrap();
        items
    }

    fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::File::create(&p)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        p
    }

    #[test]
    fn ndjson_lines_are_checked_and_numbered() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(
            &dir,
            "h.ndjson",
            concat!(
                r#"{"event_id":"e1","type":"badge.shared","occurred_at":"2025-01-01T00:00:00Z","org_id":"o","issuer_id":"i","badge_class_id":"b","assertion_id":"a"}"#,
                "\n\n",
                "{not json\n",
                r#"{"event_id":"e2","type":"badge.shared","occurred_at":"2025-01-01T00:00:00Z","org_id":"o","issuer_id":"i","badge_class_id":"b","assertion_id":"a","channel":"myspace"}"#,
                "\n"
            ),
        );
        assert_eq!(detect_format(&path).unwrap(), Format::Ndjson);
        assert_eq!(count_ndjson(&path).unwrap(), 4, "lines, the blank one too");
        let input = Input {
            path,
            format: Format::Ndjson,
        };
        // A normal run checks syntax; ingest judges the rest.
        let items = collect(&input, Check::Syntax);
        assert_eq!(items.len(), 3);
        let Item::Event {
            origin,
            event_id,
            json,
        } = &items[2]
        else {
            panic!("{:?}", items[2])
        };
        assert_eq!((origin.line, event_id), (4, &None));
        assert!(json.starts_with(b"{\"event_id\":\"e2\""));
        let Item::Reject(r) = &items[1] else {
            panic!("{:?}", items[1])
        };
        assert_eq!((r.origin.line, r.event_id.as_deref()), (3, None));
        // A dry run checks with the contract, as ingest would.
        let items = collect(&input, Check::Contract);
        assert_eq!(items.len(), 3);
        match &items[0] {
            Item::Event {
                origin, event_id, ..
            } => {
                assert_eq!(origin.line, 1);
                assert_eq!(event_id.as_deref(), Some("e1"));
            }
            other => panic!("{other:?}"),
        }
        let Item::Reject(r) = &items[1] else {
            panic!("{:?}", items[1])
        };
        assert_eq!((r.origin.line, r.event_id.as_deref()), (3, None));
        assert!(r.error.starts_with("line: not valid JSON"), "{}", r.error);
        let Item::Reject(r) = &items[2] else {
            panic!("{:?}", items[2])
        };
        assert_eq!((r.origin.line, r.event_id.as_deref()), (4, Some("e2")));
        assert!(r.error.starts_with("channel: unknown value"), "{}", r.error);
    }

    #[test]
    fn csv_lists_and_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(
            &dir,
            "classes.csv",
            "event_id,type,occurred_at,org_id,issuer_id,badge_class_id,name,skills,attributes\n\
             u1,badge_class.upserted,2025-01-01T00:00:00Z,o,i,b,\"Rust, advanced\",rust; async ;,has_video=true;peer_reviewed=false\n\
             u2,badge_class.upserted,2025-01-01T00:00:00Z,o,i,b,Bad,,has_video=yes\n\
             u3,badge_class.upserted,2025-01-01T00:00:00Z,o,i\n",
        );
        assert_eq!(detect_format(&path).unwrap(), Format::Csv);
        assert_eq!(count_csv(&path).unwrap(), 3);
        let items = collect(
            &Input {
                path,
                format: Format::Csv,
            },
            Check::Syntax,
        );
        let Item::Event { json, .. } = &items[0] else {
            panic!("{:?}", items[0])
        };
        let v: Value = serde_json::from_slice(json).unwrap();
        assert_eq!(v["name"], "Rust, advanced");
        assert_eq!(v["skills"], serde_json::json!(["rust", "async"]));
        assert_eq!(
            v["attributes"],
            serde_json::json!({"has_video": true, "peer_reviewed": false})
        );
        let Item::Reject(r) = &items[1] else {
            panic!("{:?}", items[1])
        };
        assert_eq!((r.origin.line, r.event_id.as_deref()), (3, Some("u2")));
        assert!(r.error.starts_with("attributes.has_video"), "{}", r.error);
        let Item::Reject(r) = &items[2] else {
            panic!("{:?}", items[2])
        };
        assert_eq!(r.origin.line, 4);
        assert!(r.error.starts_with("record:"), "{}", r.error);
    }

    #[test]
    fn csv_unknown_column_stops_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(&dir, "bad.csv", "event_id,colour\ne1,red\n");
        let err = read_csv(
            &Input {
                path,
                format: Format::Csv,
            },
            0,
            Check::Syntax,
            &mut |_| Ok(()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"colour\""), "{err}");
    }

    #[test]
    fn json_files_that_are_not_events_are_open_badges() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(&dir, "a.json", "{\n  \"type\": \"Assertion\"\n}\n");
        assert_eq!(detect_format(&p).unwrap(), Format::Openbadges);
        let p = file(&dir, "b.jsonl", "{\"type\":\"BadgeClass\"}\n");
        assert_eq!(detect_format(&p).unwrap(), Format::Openbadges);
    }
}
