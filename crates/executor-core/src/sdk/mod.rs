//! The functions PiCloud adds to Rhai for scripts, and the builtins it
//! replaces or removes.
//!
//! Invariants:
//! - Every function here is total on hostile input: a wrong type, bad
//!   encoding or oversized result is a script error, never a panic.
//! - A function whose result can be larger than its input computes the
//!   result's size first and refuses it when it would pass the engine's
//!   per-value limits (`string_bytes`, `array_len`), so it never allocates
//!   more than one maximal value.
//! - Nothing here performs I/O. At run time the SDK needs only
//!   `clock_gettime` (`now()`, vDSO) and memory; `uuid()` draws from a
//!   userspace CSPRNG seeded from the OS when the runtime is built and
//!   re-seeded by [`crate::ScriptRuntime::reseed`].

mod encoding;
mod guards;
mod misc;

use rhai::{Dynamic, Engine, EvalAltResult, NativeCallContext, Position};

pub use misc::{Rng, RngSeedError};

/// Registers the SDK and the builtin overrides into `engine`.
pub fn register(engine: &mut Engine, rng: &Rng) {
    encoding::register(engine);
    guards::register(engine);
    misc::register(engine, rng);
}

/// A catchable script error with `message`.
#[allow(
    clippy::unnecessary_box_returns,
    reason = "Rhai's error type is always boxed"
)]
pub(crate) fn script_error(message: impl Into<String>) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(Dynamic::from(message.into()), Position::NONE).into()
}

/// Rhai's own "value too large" error, so the runtime reports the limit.
#[allow(
    clippy::unnecessary_box_returns,
    reason = "Rhai's error type is always boxed"
)]
pub(crate) fn too_large(what: &str) -> Box<EvalAltResult> {
    EvalAltResult::ErrorDataTooLarge(what.to_owned(), Position::NONE).into()
}

/// The engine's string limit in bytes (`usize::MAX` when unset).
pub(crate) fn max_string(ctx: &NativeCallContext) -> usize {
    match ctx.engine().max_string_size() {
        0 => usize::MAX,
        n => n,
    }
}

/// The engine's array/BLOB limit in items (`usize::MAX` when unset).
pub(crate) fn max_array(ctx: &NativeCallContext) -> usize {
    match ctx.engine().max_array_size() {
        0 => usize::MAX,
        n => n,
    }
}

/// Refuses a string result of `len` bytes above the string limit.
pub(crate) fn check_string_len(
    ctx: &NativeCallContext,
    len: usize,
) -> Result<(), Box<EvalAltResult>> {
    if len > max_string(ctx) {
        Err(too_large("Length of string"))
    } else {
        Ok(())
    }
}

/// Refuses an array or BLOB result of `len` items above the array limit.
pub(crate) fn check_array_len(
    ctx: &NativeCallContext,
    len: usize,
) -> Result<(), Box<EvalAltResult>> {
    if len > max_array(ctx) {
        Err(too_large("Size of array/BLOB"))
    } else {
        Ok(())
    }
}

/// The bytes of a string or BLOB argument (copied: the value may be shared).
pub(crate) fn bytes_of(function: &str, value: &Dynamic) -> Result<Vec<u8>, Box<EvalAltResult>> {
    if let Ok(text) = value.as_immutable_string_ref() {
        return Ok(text.as_bytes().to_vec());
    }
    if let Ok(blob) = value.as_blob_ref() {
        return Ok(blob.to_vec());
    }
    Err(script_error(format!(
        "{function}: expected a string or BLOB, got a value of type `{}`",
        value.type_name()
    )))
}
