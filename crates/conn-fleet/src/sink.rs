//! One host's output on its way: to the handler raw and as lines, and to its gathered copy.

use std::io;

use conn_core::{OutputSink, StreamKind};

use crate::gather::{Gather, Gathered};
use crate::handler::Handler;
use crate::lines::Lines;
use crate::outcome::Host;

/// The [`OutputSink`] of one host's commands.
pub(crate) struct HostSink<'a> {
    host: &'a Host,
    handler: &'a dyn Handler,
    lines: [Lines; 2],
    gathered: Option<Gathered>,
    /// A spill file that could not be written: the gathered copy is incomplete.
    pub(crate) gather_error: Option<io::Error>,
}

impl<'a> HostSink<'a> {
    pub(crate) fn new(host: &'a Host, handler: &'a dyn Handler, gather: Option<Gather>) -> Self {
        HostSink {
            host,
            handler,
            lines: [Lines::default(), Lines::default()],
            gathered: gather.map(Gathered::new),
            gather_error: None,
        }
    }

    /// Hands out the last lines without a newline; returns the gathered output.
    pub(crate) fn finish(mut self) -> Option<Gathered> {
        for (i, stream) in [StreamKind::Stdout, StreamKind::Stderr]
            .into_iter()
            .enumerate()
        {
            let (host, handler) = (self.host, self.handler);
            self.lines[i].finish(&mut |line| handler.line(host, stream, line));
        }
        self.gathered
    }
}

impl OutputSink for HostSink<'_> {
    fn output(&mut self, stream: StreamKind, bytes: &[u8]) {
        let (host, handler) = (self.host, self.handler);
        handler.output(host, stream, bytes);
        let i = match stream {
            StreamKind::Stdout => 0,
            StreamKind::Stderr => 1,
        };
        self.lines[i].feed(bytes, &mut |line| handler.line(host, stream, line));
        if let Some(g) = &mut self.gathered {
            let kept = match stream {
                StreamKind::Stdout => &mut g.stdout,
                StreamKind::Stderr => &mut g.stderr,
            };
            if let Err(e) = kept.push(bytes) {
                self.gather_error.get_or_insert(e);
            }
        }
    }

    fn new_attempt(&mut self) {
        for lines in &mut self.lines {
            lines.clear();
        }
        if let Some(g) = &mut self.gathered {
            g.stdout.clear();
            g.stderr.clear();
        }
        self.handler.retrying(self.host);
    }
}
