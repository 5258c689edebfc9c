//! Test support: formatted log output captured in memory, in the text format harp writes
//! (`super::Lines`), so a test can assert what a span or the request context adds to each line.
//! One copy for every module's log tests.

use parking_lot::Mutex;
use std::io;
use std::sync::Arc;
use tracing::subscriber::DefaultGuard;

/// Everything logged on this thread while its guard lives.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Starts capturing this thread's log lines (plain text, no colours) until the guard drops.
    pub(crate) fn start() -> (Captured, DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .event_format(super::Lines::text(
                tracing_subscriber::fmt::format().with_ansi(false),
            ))
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    /// The lines written so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
