//! The tracing subscriber of every service and its `[log]` section.
//!
//! Logs go to stderr, always: stdout belongs to the subcommands that print
//! something (`sign-url`, `print-schema`, `print-measures`, …). Each line is
//! text, or with `format = "json"` one JSON object: `timestamp` (RFC 3339,
//! UTC), `level`, `target`, `message`, the event's own fields beside them,
//! and the spans it happened in (`span`, `spans`).
//!
//! Which events are written: `RUST_LOG` when it is set (a filter
//! directive such as `info,badgepulse_aggregator=debug`), else
//! `log.level` (from the file or `BADGEPULSE__LOG__LEVEL`), else `info`.
//!
//! Must not: write to stdout.

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// The environment variable that, when set, wins over `log.level`.
pub const RUST_LOG: &str = "RUST_LOG";

/// `[log]`: how the service logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (human-readable lines) or `json` (one object per line, for log
    /// pipelines).
    pub format: LogFormat,
    /// A tracing filter directive: `info`, `warn`,
    /// `info,badgepulse_exporter=debug`, … `RUST_LOG`, when set, wins.
    pub level: String,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), String> {
        EnvFilter::try_new(&self.level)
            .map(drop)
            .map_err(|e| format!("log.level {:?}: {e}", self.level))
    }

    /// The filter: `rust_log` (the variable's value) when given, else
    /// `level`. An error names the one at fault.
    fn filter(&self, rust_log: Option<&str>) -> Result<EnvFilter, String> {
        match rust_log {
            Some(directives) => EnvFilter::try_new(directives)
                .map_err(|e| format!("{RUST_LOG} {directives:?}: {e}")),
            None => EnvFilter::try_new(&self.level)
                .map_err(|e| format!("log.level {:?}: {e}", self.level)),
        }
    }
}

/// The subscriber `config` describes, writing to `writer`.
fn subscriber<W>(
    config: &LogConfig,
    rust_log: Option<&str>,
    writer: W,
    ansi: bool,
) -> Result<Box<dyn tracing::Subscriber + Send + Sync>, String>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = config.filter(rust_log)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    Ok(match config.format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
    })
}

/// Installs the subscriber; call once, first thing in `main` once the
/// config is read (before it: [`init_default`]).
pub fn init(config: &LogConfig) -> Result<(), String> {
    let rust_log = std::env::var(RUST_LOG).ok().filter(|v| !v.is_empty());
    let ansi = std::io::stderr().is_terminal();
    subscriber(config, rust_log.as_deref(), std::io::stderr, ansi)?
        .try_init()
        .map_err(|e| format!("installing the log subscriber: {e}"))
}

/// [`init`] with the defaults, for commands that read no config file.
pub fn init_default() -> Result<(), String> {
    init(&LogConfig::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::{Arc, Mutex};

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    fn logged(config: &LogConfig, rust_log: Option<&str>, log: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let subscriber = subscriber(config, rust_log, buffer.clone(), false).unwrap();
        tracing::subscriber::with_default(subscriber, log);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_lines_carry_timestamp_level_target_message_and_fields() {
        let json = LogConfig {
            format: LogFormat::Json,
            ..LogConfig::default()
        };
        let out = logged(&json, None, || {
            tracing::info!(batch = 3, partition = "p1", "flushed");
            tracing::debug!("not at info");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "flushed");
        assert_eq!(v["batch"], 3);
        assert_eq!(v["partition"], "p1");
        assert_eq!(v["target"], module_path!());
        let ts = v["timestamp"].as_str().unwrap();
        assert!(chrono_like_rfc3339(ts), "timestamp {ts:?} is not RFC 3339");
    }

    /// `YYYY-MM-DDTHH:MM:SS…Z`.
    fn chrono_like_rfc3339(ts: &str) -> bool {
        let b = ts.as_bytes();
        b.len() >= 20
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && ts.ends_with('Z')
    }

    #[test]
    fn rust_log_wins_over_the_level() {
        let warn = LogConfig {
            level: "warn".into(),
            ..LogConfig::default()
        };
        let log = || {
            tracing::info!("info line");
            tracing::warn!("warn line");
        };
        let by_level = logged(&warn, None, log);
        assert!(!by_level.contains("info line") && by_level.contains("warn line"));
        let by_env = logged(&warn, Some("info"), log);
        assert!(by_env.contains("info line") && by_env.contains("warn line"));
        assert!(
            !by_env.contains('\u{1b}'),
            "no colour codes when not a terminal"
        );
    }

    #[test]
    fn bad_filters_name_their_source() {
        let bad = LogConfig {
            level: "info,badgepulse=loud".into(),
            ..LogConfig::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("log.level"));
        let err = LogConfig::default()
            .filter(Some("info,badgepulse=loud"))
            .unwrap_err();
        assert!(err.starts_with(RUST_LOG), "{err}");
    }
}
