//! A deadline for the parser, enforced through Rhai's token hook.
//!
//! Rhai's parser has no progress hook of its own, but it pulls tokens one
//! at a time and calls the engine's token mapper on each, and its known
//! superlinear spots (variable lookups through a long scope, duplicate
//! parameter checks) do their work per token. The clock is read every
//! [`TOKENS_PER_CLOCK_CHECK`] tokens; past the deadline every further token
//! becomes a lexer error, so the parser stops at the next token it reads.
//!
//! Invariants: [`CompileClock::start`] arms it before a compile and
//! [`CompileClock::stop`] disarms it after; once expired it stays expired
//! until the next start, and the runtime reports an expired compile as a
//! time-limit error whatever the parser returned.

use std::cell::Cell;
use std::time::{Duration, Instant};

use rhai::{LexError, Token};

/// Tokens between two reads of the clock.
pub const TOKENS_PER_CLOCK_CHECK: u32 = 64;

#[derive(Debug, Default)]
pub struct CompileClock {
    deadline: Cell<Option<Instant>>,
    countdown: Cell<u32>,
    expired: Cell<bool>,
}

impl CompileClock {
    pub fn start(&self, budget: Duration) {
        self.deadline.set(Instant::now().checked_add(budget));
        self.countdown.set(TOKENS_PER_CLOCK_CHECK);
        self.expired.set(false);
    }

    pub fn stop(&self) {
        self.deadline.set(None);
    }

    pub fn expired(&self) -> bool {
        self.expired.get()
    }

    /// The token hook: passes tokens through until the deadline.
    pub fn on_token(&self, token: Token) -> Token {
        if self.expired.get() {
            return expired_token();
        }
        let Some(deadline) = self.deadline.get() else {
            return token;
        };
        let countdown = self.countdown.get();
        if countdown > 0 {
            self.countdown.set(countdown - 1);
            return token;
        }
        self.countdown.set(TOKENS_PER_CLOCK_CHECK);
        if Instant::now() >= deadline {
            self.expired.set(true);
            return expired_token();
        }
        token
    }
}

fn expired_token() -> Token {
    Token::LexError(Box::new(LexError::Runtime(
        "compile time limit exceeded".to_owned(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_tokens_until_the_deadline_then_errors() {
        let clock = CompileClock::default();
        assert_eq!(clock.on_token(Token::Comma), Token::Comma);
        clock.start(Duration::ZERO);
        let mut seen = 0;
        while !matches!(clock.on_token(Token::Comma), Token::LexError(_)) {
            seen += 1;
            assert!(seen <= TOKENS_PER_CLOCK_CHECK);
        }
        assert!(clock.expired());
        clock.start(Duration::from_mins(1));
        assert!(!clock.expired());
        assert_eq!(clock.on_token(Token::Comma), Token::Comma);
    }
}
