//! Progress of long work: a bar on a terminal, JSON status lines with `--json`, nothing
//! otherwise. It only reads the shared counters.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::task::JoinHandle;
use zaibei_archive::progress::Counters;

use crate::output;

/// A running progress display.
pub struct Progress {
    task: Option<JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

#[derive(Serialize)]
struct Status<'a> {
    message_type: &'static str,
    action: &'a str,
    seconds_elapsed: f64,
    files_done: u64,
    dirs_done: u64,
    bytes_done: u64,
    bytes_seen: u64,
    errors: u64,
}

impl Progress {
    /// Starts showing `counters` for `action` (`backup`, `restore`...).
    pub fn start(action: &'static str, counters: Arc<Counters>, json: bool, quiet: bool) -> Self {
        let start = Instant::now();
        if json {
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let written = output::json_line(&Status {
                        message_type: "status",
                        action,
                        seconds_elapsed: start.elapsed().as_secs_f64(),
                        files_done: Counters::get(&counters.files),
                        dirs_done: Counters::get(&counters.dirs),
                        bytes_done: Counters::get(&counters.bytes),
                        bytes_seen: Counters::get(&counters.bytes_seen),
                        errors: Counters::get(&counters.errors),
                    });
                    if written.is_err() {
                        return;
                    }
                }
            });
            return Progress {
                task: Some(task),
                bar: None,
            };
        }
        if quiet || !std::io::stderr().is_terminal() {
            return Progress {
                task: None,
                bar: None,
            };
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        let b2 = bar.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let secs = start.elapsed().as_secs_f64().max(0.001);
                let done = Counters::get(&counters.bytes);
                b2.set_message(format!(
                    "{action}: {} files, {} dirs, {} processed of {} ({}/s){}",
                    Counters::get(&counters.files),
                    Counters::get(&counters.dirs),
                    output::bytes(done),
                    output::bytes(Counters::get(&counters.bytes_seen)),
                    output::bytes((done as f64 / secs) as u64),
                    match Counters::get(&counters.errors) {
                        0 => String::new(),
                        n => format!(", {n} errors"),
                    }
                ));
            }
        });
        Progress {
            task: Some(task),
            bar: Some(bar),
        }
    }

    /// Stops the display.
    pub fn finish(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
