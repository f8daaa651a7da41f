//! How `conn run` and `conn copy` show a fan-out: the [`Printer`] handler (lines prefixed as
//! they arrive, one host passed through, files per host, JSON lines, the progress bar), and
//! what is printed once every host is done (gathered groups, `-L`, `--diff`, the summary).

mod color;
mod diff;
mod files;
mod gathered;
mod json;
mod summary;

use std::io::{self, Write};

use conn_core::StreamKind;
use conn_fleet::{Handler, Host, HostEnd};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use color::Palette;
pub use diff::write_diff;
pub use files::Files;
pub use gathered::{write_gathered, write_sorted};
pub use json::to_json;
pub use summary::{exit_code, write_summary};

/// What is printed while the hosts run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Live {
    /// One host, its bytes passed through to ours as they come, unprefixed.
    PassThrough,
    /// Each line as it arrives, prefixed `host: ` (unless `prefix` is off), for the streams
    /// that are not gathered.
    Lines {
        /// Stream stdout lines.
        stdout: bool,
        /// Stream stderr lines.
        stderr: bool,
    },
}

/// A line to print about a host.
pub type Say = Box<dyn Fn(&Host) -> String + Sync>;

/// The handler of a fan-out: prints while hosts run, and counts them on the progress bar.
pub struct Printer {
    live: Live,
    prefix: bool,
    palette: Palette,
    files: Option<Files>,
    json: bool,
    bar: ProgressBar,
    /// What to say when a host ends well (`conn copy`'s "copied …").
    on_success: Option<Say>,
}

impl Printer {
    /// A printer for `hosts` hosts.
    pub fn new(live: Live, prefix: bool, palette: Palette, hosts: usize, progress: bool) -> Self {
        Printer {
            live,
            prefix,
            palette,
            files: None,
            json: false,
            bar: progress_bar(hosts, progress),
            on_success: None,
        }
    }

    /// Also writes each host's stdout and stderr to files (`--outdir`, `--errdir`).
    pub fn files(mut self, files: Option<Files>) -> Self {
        self.files = files;
        self
    }

    /// Prints each host's JSON line as it ends (`--json`).
    pub fn json(mut self, yes: bool) -> Self {
        self.json = yes;
        self
    }

    /// Prints this line on stdout for each host that succeeds.
    pub fn on_success(mut self, say: Say) -> Self {
        self.on_success = Some(say);
        self
    }

    /// Takes the progress bar off the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Writes `bytes` to our stdout or stderr whole, the progress bar stepping aside. A closed
    /// stream (`conn run … | head`) drops them, never the command.
    fn write(&self, stream: StreamKind, bytes: &[u8]) {
        self.bar.suspend(|| {
            let _ = match stream {
                StreamKind::Stdout => io::stdout().lock().write_all(bytes),
                StreamKind::Stderr => io::stderr().lock().write_all(bytes),
            };
        });
    }
}

impl Handler for Printer {
    fn output(&self, host: &Host, stream: StreamKind, bytes: &[u8]) {
        if self.live == Live::PassThrough {
            self.write(stream, bytes);
        }
        if let Some(files) = &self.files {
            files.write(host, stream, bytes);
        }
    }

    fn line(&self, host: &Host, stream: StreamKind, line: &[u8]) {
        let wanted = match (self.live, stream) {
            (Live::Lines { stdout, .. }, StreamKind::Stdout) => stdout,
            (Live::Lines { stderr, .. }, StreamKind::Stderr) => stderr,
            (Live::PassThrough, _) => false,
        };
        if !wanted {
            return;
        }
        let mut out = Vec::with_capacity(host.name.len() + line.len() + 16);
        self.palette.line(
            &mut out,
            self.prefix.then_some(host.name.as_str()),
            stream,
            line,
        );
        self.write(stream, &out);
    }

    fn retrying(&self, host: &Host) {
        if let Some(files) = &self.files {
            files.restart(host);
        }
    }

    fn end(&self, end: &HostEnd) {
        if let Some(files) = &self.files {
            files.close(&end.host);
        }
        if self.json {
            let line = to_json(end).to_string() + "\n";
            self.write(StreamKind::Stdout, line.as_bytes());
        }
        if end.is_success()
            && let Some(say) = &self.on_success
        {
            self.write(StreamKind::Stdout, (say(&end.host) + "\n").as_bytes());
        }
        self.bar.inc(1);
        if !end.is_success() {
            self.bar.set_message(", some failed");
        }
    }
}

fn progress_bar(hosts: usize, wanted: bool) -> ProgressBar {
    use std::io::IsTerminal;
    if !wanted || hosts < 2 || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} hosts done{msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    let bar = ProgressBar::with_draw_target(Some(hosts as u64), ProgressDrawTarget::stderr())
        .with_style(style);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
