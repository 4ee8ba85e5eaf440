//! The invocation's log: what `print`, `debug` and `log` write.
//!
//! Invariants: the kept lines total at most the cap in bytes, and there are
//! at most [`MAX_LOG_LINES`] of them (an empty line costs no bytes but is
//! still a `String` in the worker, in the frame to the pool and in the
//! record); the first line that does not fit is kept as a prefix cut at a
//! character boundary (or, past the line count, dropped), and everything
//! after it is dropped and counted. When anything was
//! dropped, [`LogBuffer::finish`] appends exactly one marker line
//! `[log truncated: N bytes dropped]` (the marker itself is not counted
//! against the cap).

pub use shared::invocation::MAX_LOG_LINES;

/// Lines written during one invocation, capped in bytes and in lines.
#[derive(Debug, Default)]
pub struct LogBuffer {
    lines: Vec<String>,
    kept_bytes: usize,
    cap: usize,
    dropped_bytes: u64,
    truncated: bool,
}

/// The finished log of one invocation.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FinishedLog {
    pub lines: Vec<String>,
    pub truncated: bool,
    /// Bytes of the kept lines (the marker excluded).
    pub bytes: u64,
}

impl LogBuffer {
    /// Empties the buffer for a new invocation with a cap of `cap_bytes`.
    pub fn reset(&mut self, cap_bytes: u64) {
        self.lines.clear();
        self.kept_bytes = 0;
        self.cap = usize::try_from(cap_bytes).unwrap_or(usize::MAX);
        self.dropped_bytes = 0;
        self.truncated = false;
    }

    /// Appends one line, or counts it as dropped once the cap is reached.
    pub fn push(&mut self, line: &str) {
        if self.truncated {
            self.dropped_bytes = self.dropped_bytes.saturating_add(line.len() as u64);
            return;
        }
        if self.lines.len() == MAX_LOG_LINES {
            self.truncated = true;
            self.dropped_bytes = line.len() as u64;
            return;
        }
        let room = self.cap - self.kept_bytes;
        if line.len() <= room {
            self.kept_bytes += line.len();
            self.lines.push(line.to_owned());
            return;
        }
        self.truncated = true;
        let mut cut = room;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut > 0 {
            self.kept_bytes += cut;
            self.lines.push(line[..cut].to_owned());
        }
        self.dropped_bytes = (line.len() - cut) as u64;
    }

    /// Takes the lines out, adding the truncation marker when needed.
    pub fn finish(&mut self) -> FinishedLog {
        let mut lines = std::mem::take(&mut self.lines);
        if self.truncated {
            lines.push(format!(
                "[log truncated: {} bytes dropped]",
                self.dropped_bytes
            ));
        }
        FinishedLog {
            lines,
            truncated: self.truncated,
            bytes: self.kept_bytes as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_lines_under_the_cap() {
        let mut log = LogBuffer::default();
        log.reset(10);
        log.push("hello");
        log.push("world");
        let out = log.finish();
        assert_eq!(out.lines, ["hello", "world"]);
        assert!(!out.truncated);
        assert_eq!(out.bytes, 10);
    }

    #[test]
    fn cuts_at_a_char_boundary_and_marks_once() {
        let mut log = LogBuffer::default();
        log.reset(4);
        log.push("ab");
        log.push("éé"); // 4 bytes; only 2 fit, and 'é' is 2 bytes
        log.push("more");
        let out = log.finish();
        assert_eq!(out.lines, ["ab", "é", "[log truncated: 6 bytes dropped]"]);
        assert!(out.truncated);
        assert_eq!(out.bytes, 4);
    }

    #[test]
    fn empty_lines_are_capped_by_count() {
        let mut log = LogBuffer::default();
        log.reset(100);
        for _ in 0..MAX_LOG_LINES + 5 {
            log.push("");
        }
        log.push("xy");
        let out = log.finish();
        assert_eq!(out.lines.len(), MAX_LOG_LINES + 1);
        assert_eq!(out.lines[MAX_LOG_LINES], "[log truncated: 2 bytes dropped]");
        assert!(out.truncated);
    }

    #[test]
    fn reset_clears_the_previous_invocation() {
        let mut log = LogBuffer::default();
        log.reset(1);
        log.push("long line");
        log.reset(100);
        log.push("x");
        assert_eq!(log.finish().lines, ["x"]);
    }
}
