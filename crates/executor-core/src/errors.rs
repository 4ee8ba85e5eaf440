//! Turning Rhai errors into outcomes and short, safe messages.
//!
//! Invariants:
//! - Every message is at most [`MAX_MESSAGE_BYTES`] bytes (cut at a char
//!   boundary, with `…`), and is produced through a writer that stops at
//!   that size, so formatting a huge or self-referencing thrown value costs
//!   no more than the cap (feasibility note E8).
//! - Messages name the script's own positions and values, never host file
//!   paths, Rust type names or panics; Rhai's internal `ErrorSystem` becomes
//!   a generic text.

use std::fmt::{self, Write};

use rhai::{EvalAltResult, ParseError};
use shared::{CompileError, Limits, Outcome};

/// The longest error message an invocation reports.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Formats `value` into at most [`MAX_MESSAGE_BYTES`] bytes.
pub fn capped_message(value: &dyn fmt::Display) -> String {
    let mut out = CappedString {
        text: String::new(),
        full: false,
    };
    // An error here only means the cap was reached.
    let _ = write!(out, "{value}");
    if out.full {
        out.text.push('…');
    }
    out.text
}

struct CappedString {
    text: String,
    full: bool,
}

impl Write for CappedString {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MAX_MESSAGE_BYTES - self.text.len();
        if s.len() <= room {
            self.text.push_str(s);
            return Ok(());
        }
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.text.push_str(&s[..cut]);
        self.full = true;
        Err(fmt::Error)
    }
}

/// The outcome and message of a script that failed with `err`.
pub fn classify(err: &EvalAltResult, limits: &Limits) -> (Outcome, String) {
    let inner = err.unwrap_inner();
    let position = inner.position();
    let at = if position.is_none() {
        String::new()
    } else {
        format!(" ({position})")
    };
    match inner {
        EvalAltResult::ErrorTooManyOperations(..) => (
            Outcome::OperationLimit,
            format!("operation limit ({}) exceeded", limits.operations),
        ),
        EvalAltResult::ErrorStackOverflow(..) => (
            Outcome::ScriptError,
            format!("call depth limit ({}) exceeded{at}", limits.call_depth),
        ),
        EvalAltResult::ErrorDataTooLarge(what, ..) => (
            Outcome::MemoryLimit,
            format!("{}{at}", size_limit_message(what, limits)),
        ),
        EvalAltResult::ErrorTooManyVariables(..) => (
            Outcome::ScriptError,
            format!("variable limit ({}) exceeded{at}", limits.variables),
        ),
        EvalAltResult::ErrorTooManyModules(..) | EvalAltResult::ErrorModuleNotFound(..) => (
            Outcome::ScriptError,
            format!("modules are not available to scripts{at}"),
        ),
        EvalAltResult::ErrorSystem(..) => (
            Outcome::ScriptError,
            format!("internal error in a builtin function{at}"),
        ),
        // Only reached when the budget did not record the trip (it always
        // does); the runtime checks the budget first.
        EvalAltResult::ErrorTerminated(..) => {
            (Outcome::ScriptError, format!("script terminated{at}"))
        }
        _ => (Outcome::ScriptError, capped_message(err)),
    }
}

/// Names the per-value size limit Rhai (or a size-checked builtin) refused.
pub fn size_limit_message(what: &str, limits: &Limits) -> String {
    let what_lower = what.to_ascii_lowercase();
    if what_lower.contains("string") {
        format!("string size limit ({} bytes) exceeded", limits.string_bytes)
    } else if what_lower.contains("array") || what_lower.contains("blob") {
        format!(
            "array/BLOB size limit ({} items) exceeded",
            limits.array_len
        )
    } else if what_lower.contains("map") {
        format!(
            "object map size limit ({} entries) exceeded",
            limits.map_len
        )
    } else {
        capped_message(&format_args!("size limit exceeded: {what}"))
    }
}

/// A compile error with the position the parser reported.
pub fn compile_error(err: &ParseError) -> CompileError {
    let position = err.position();
    CompileError {
        message: capped_message(&err.err_type()),
        line: position.line().and_then(|l| u32::try_from(l).ok()),
        column: position.position().and_then(|c| u32::try_from(c).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhai::Position;

    #[test]
    fn messages_are_capped() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let message = capped_message(&long);
        assert!(message.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
        assert!(message.ends_with('…'));
        assert_eq!(capped_message(&"short"), "short");
    }

    #[test]
    fn limits_are_named() {
        let limits = Limits::DEFAULTS;
        let (outcome, message) = classify(
            &EvalAltResult::ErrorStackOverflow(Position::new(3, 1)),
            &limits,
        );
        assert_eq!(outcome, Outcome::ScriptError);
        assert_eq!(
            message,
            "call depth limit (64) exceeded (line 3, position 1)"
        );
        let (outcome, message) = classify(
            &EvalAltResult::ErrorDataTooLarge("Length of string".into(), Position::NONE),
            &limits,
        );
        assert_eq!(outcome, Outcome::MemoryLimit);
        assert_eq!(message, "string size limit (1048576 bytes) exceeded");
    }

    #[test]
    fn wrapped_errors_are_classified_by_their_cause() {
        let inner = EvalAltResult::ErrorTooManyOperations(Position::NONE);
        let wrapped = EvalAltResult::ErrorInFunctionCall(
            "f".into(),
            String::new(),
            Box::new(inner),
            Position::NONE,
        );
        assert_eq!(
            classify(&wrapped, &Limits::DEFAULTS).0,
            Outcome::OperationLimit
        );
    }
}
