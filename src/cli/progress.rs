//! Progress on stderr for long runs, shown only when stderr is a terminal: in a pipeline or a
//! CI log the output stays exactly the results.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// One status line, rewritten in place and erased at the end.
pub struct Progress {
    enabled: bool,
    started: Instant,
    shown: bool,
}

impl Progress {
    /// Progress on stderr when it is a terminal and `SUBORG_NO_PROGRESS` is not set.
    pub fn stderr() -> Self {
        Self::new(
            std::io::stderr().is_terminal() && std::env::var_os("SUBORG_NO_PROGRESS").is_none(),
        )
    }

    /// Progress that is shown only when `enabled`.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            started: Instant::now(),
            shown: false,
        }
    }

    /// The line for `what`, with the time since the start.
    pub fn line(&self, what: &str) -> String {
        format!("[{:>5.1}s] {what}", self.started.elapsed().as_secs_f64())
    }

    /// Shows what is being done now.
    pub fn step(&mut self, what: &str) {
        if !self.enabled {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}", self.line(what));
        let _ = err.flush();
        self.shown = true;
    }

    /// Erases the line, before the results are printed.
    pub fn finish(&mut self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_elapsed_time_and_a_disabled_progress_prints_nothing() {
        let mut p = Progress::new(false);
        assert!(
            p.line("checking 10 objects")
                .ends_with("s] checking 10 objects")
        );
        assert!(p.line("x").starts_with("[  0.0s]"));
        p.step("reading");
        assert!(!p.shown);
    }
}
