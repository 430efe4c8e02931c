//! What the process logs, kept in memory for tests that check a log line (a lockout logged,
//! a secret never in it).

use std::io;
use std::sync::{Arc, Mutex, OnceLock};

/// The process-wide log buffer: [`LogCapture::install`] sets a global tracing subscriber
/// writing to it (once per test binary; later calls share it).
#[derive(Clone)]
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
}

static CAPTURE: OnceLock<LogCapture> = OnceLock::new();

impl LogCapture {
    /// Installs the capture at `info` level and above (plain text, no colours).
    pub fn install() -> LogCapture {
        CAPTURE
            .get_or_init(|| {
                let capture = LogCapture { buffer: Arc::new(Mutex::new(Vec::new())) };
                let writer = capture.clone();
                tracing_subscriber::fmt()
                    .with_max_level(tracing::Level::INFO)
                    .with_ansi(false)
                    .with_writer(move || writer.clone())
                    .try_init()
                    .expect("no other global tracing subscriber in this test binary");
                capture
            })
            .clone()
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }
}

impl io::Write for LogCapture {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
