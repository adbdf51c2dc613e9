//! Progress on stderr: an indicatif bar (records done, events/s, ETA) when
//! stderr is a terminal, otherwise a plain log line every 10 seconds.
//! Logs go through [`LogWriter`], which lifts the bar while a line is
//! written so the two never garble each other.

use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

const LINE_EVERY: Duration = Duration::from_secs(10);

pub struct Progress {
    bar: ProgressBar,
    terminal: bool,
    total: u64,
    start: Instant,
    start_pos: u64,
    last_line: Instant,
}

impl Progress {
    /// `bar` is drawn when `terminal`; `pos` records are done already (a
    /// resumed run), of `total`.
    pub fn new(bar: ProgressBar, terminal: bool, total: u64, pos: u64) -> Progress {
        if terminal {
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {elapsed_precise} [{wide_bar}] {human_pos}/{human_len} records, {msg}, ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_length(total.max(pos));
            bar.set_position(pos);
            bar.reset_eta();
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        Progress {
            bar,
            terminal,
            total,
            start: Instant::now(),
            start_pos: pos,
            last_line: Instant::now(),
        }
    }

    /// `pos` records are done.
    pub fn set(&mut self, pos: u64) {
        if self.terminal {
            if pos > self.total {
                self.total = pos;
                self.bar.set_length(pos);
            }
            self.bar.set_position(pos);
            self.bar
                .set_message(format!("{:.0} records/s", self.rate(pos)));
        } else if self.last_line.elapsed() >= LINE_EVERY {
            self.last_line = Instant::now();
            let rate = self.rate(pos);
            let eta =
                (rate > 0.0).then(|| (self.total.saturating_sub(pos) as f64 / rate).round() as u64);
            tracing::info!(
                done = pos,
                total = self.total,
                rate = rate.round() as u64,
                eta_secs = eta,
                "progress"
            );
        }
    }

    /// Records per second in this run.
    pub fn rate(&self, pos: u64) -> f64 {
        let secs = self.start.elapsed().as_secs_f64();
        if secs > 0.0 {
            pos.saturating_sub(self.start_pos) as f64 / secs
        } else {
            0.0
        }
    }

    pub fn finish(&self) {
        if self.terminal {
            self.bar.finish_and_clear();
        }
    }
}

/// A `tracing` writer to stderr that suspends the progress bar while it
/// writes a line.
#[derive(Clone)]
pub struct LogWriter(pub ProgressBar);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = SuspendWriter;

    fn make_writer(&'a self) -> SuspendWriter {
        SuspendWriter {
            bar: self.0.clone(),
            buf: Vec::new(),
        }
    }
}

/// One log event's bytes, written to stderr on drop with the bar lifted.
pub struct SuspendWriter {
    bar: ProgressBar,
    buf: Vec<u8>,
}

impl Write for SuspendWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SuspendWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            self.bar.suspend(|| {
                let _ = std::io::stderr().write_all(&buf);
            });
        }
    }
}
