//! One invocation: what goes into an executor and what comes out.
//!
//! [`ScriptRequest`], [`ScriptResponse`] and [`InvocationOutput`] cross the
//! worker boundary, so everything in them that a worker produces must be
//! treated as hostile by whoever reads it: sizes are capped at decode time
//! and nothing in an output may affect another invocation.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{InvocationId, ScriptId};
use crate::outcome::Outcome;
use crate::script::ScriptRef;

/// The most log lines an invocation keeps (its truncation marker aside).
pub const MAX_LOG_LINES: usize = 10_000;

/// The most name/value pairs a decoded list holds (route params, query,
/// request and response headers): far above what the orchestrator and the
/// executor let through (32 segments, 512 query pairs, the HTTP server's
/// header limit, 64 response headers).
pub const MAX_DECODED_PAIRS: usize = 4096;

/// Decodes a list of at most `N` items. A list item costs 24 or 48 bytes of
/// memory for as little as one byte of `postcard`, and serde reserves up to
/// 1 MiB for whatever length a list announces, so an uncapped list lets a
/// worker's frame make the pool allocate many times the frame (and past the
/// frame cap); capped lists bound that by `N`.
fn capped_vec<'de, D, T, const N: usize>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Capped<T, const N: usize>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>, const N: usize> serde::de::Visitor<'de> for Capped<T, N> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a list of at most {N} items")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let announced = seq.size_hint().unwrap_or(0);
            if announced > N {
                return Err(serde::de::Error::invalid_length(announced, &self));
            }
            let mut out = Vec::with_capacity(announced);
            while let Some(item) = seq.next_element()? {
                if out.len() == N {
                    return Err(serde::de::Error::invalid_length(N + 1, &self));
                }
                out.push(item);
            }
            Ok(out)
        }
    }

    d.deserialize_seq(Capped::<T, N>(std::marker::PhantomData))
}

fn capped_pairs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    capped_vec::<D, (String, String), MAX_DECODED_PAIRS>(d)
}

/// Log lines plus the truncation marker.
fn capped_log<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    capped_vec::<D, String, { MAX_LOG_LINES + 1 }>(d)
}

/// The request a script sees as its `request` variable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptRequest {
    /// Upper-case HTTP method.
    pub method: String,
    /// The request path as received (without the query string).
    pub path: String,
    /// Named route segments (`request.params`).
    #[serde(deserialize_with = "capped_pairs")]
    pub params: Vec<(String, String)>,
    /// Decoded query pairs, in order; the script sees the last of duplicates.
    #[serde(deserialize_with = "capped_pairs")]
    pub query: Vec<(String, String)>,
    /// Lower-case header names; repeated headers joined with `, `.
    #[serde(deserialize_with = "capped_pairs")]
    pub headers: Vec<(String, String)>,
    /// The body, already checked to be UTF-8.
    pub body: String,
    /// The content type is JSON and the body was checked to parse as JSON;
    /// the executor fills `request.json` from it.
    pub body_is_json: bool,
}

/// What a script answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptResponse {
    pub status: u16,
    /// Validated header names (lower-case) and values.
    #[serde(deserialize_with = "capped_pairs")]
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Measurements of one invocation, taken where they happen.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationStats {
    /// Time spent waiting for a worker.
    pub queue_wait_us: u64,
    /// Wall time of the run itself.
    pub wall_us: u64,
    /// CPU time the worker spent on this invocation.
    pub cpu_us: u64,
    /// Rhai operations, counted by the executor (callbacks included).
    pub operations: u64,
    /// Highest live heap during the invocation, above the worker's baseline.
    pub peak_heap_bytes: u64,
    pub response_bytes: u64,
    pub log_bytes: u64,
    /// The worker process that ran it, when it ran in one.
    pub worker_pid: Option<u32>,
    /// How many invocations that worker had served, this one included.
    pub worker_invocations: u64,
    /// The compiled script was already cached in the worker.
    pub cache_hit: bool,
}

/// A compile failure, with the position when the compiler gave one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    pub message: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

/// One invocation to run.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub id: InvocationId,
    pub script: Arc<ScriptRef>,
    pub request: ScriptRequest,
}

/// Everything an executor reports about one invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationOutput {
    pub outcome: Outcome,
    /// Present exactly when `outcome` is [`Outcome::Ok`].
    pub response: Option<ScriptResponse>,
    /// A short, host-detail-free message when the invocation failed.
    pub error: Option<String>,
    /// Captured `print`/`debug`/`log` lines, capped by the log limit and
    /// [`MAX_LOG_LINES`].
    #[serde(deserialize_with = "capped_log")]
    pub logs: Vec<String>,
    /// The log limit cut the log short.
    pub logs_truncated: bool,
    pub stats: InvocationStats,
}

// The outcome table is macro-generated, so `#[derive(Default)]` cannot mark a variant.
#[allow(clippy::derivable_impls)]
impl Default for Outcome {
    fn default() -> Self {
        Outcome::Ok
    }
}

impl InvocationOutput {
    /// An output for an invocation that failed before or outside the script.
    pub fn failed(outcome: Outcome, error: impl Into<String>) -> Self {
        Self {
            outcome,
            error: Some(error.into()),
            ..Self::default()
        }
    }
}

/// The record of one finished invocation, as kept by the manager.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationRecord {
    pub id: InvocationId,
    pub script_id: ScriptId,
    pub script_version: u32,
    /// The route pattern that matched, when invoked through `/exec/*`.
    pub route: Option<String>,
    pub method: String,
    pub path: String,
    pub started_at: DateTime<Utc>,
    /// The HTTP status the client received.
    pub status: u16,
    pub outcome: Outcome,
    pub error: Option<String>,
    pub stats: InvocationStats,
    pub logs: Vec<String>,
    pub logs_truncated: bool,
    /// Log lines dropped by the record pipeline under overload.
    pub logs_shed: u32,
    pub client_addr: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_lists_are_capped() {
        let lines = |n: usize| {
            let output = InvocationOutput {
                logs: vec![String::new(); n],
                ..InvocationOutput::default()
            };
            serde_json::to_string(&output).unwrap()
        };
        assert!(serde_json::from_str::<InvocationOutput>(&lines(MAX_LOG_LINES + 1)).is_ok());
        let err = serde_json::from_str::<InvocationOutput>(&lines(MAX_LOG_LINES + 2)).unwrap_err();
        assert!(err.to_string().contains("at most 10001 items"), "{err}");

        let pairs = |n: usize| {
            let request = ScriptRequest {
                headers: vec![(String::new(), String::new()); n],
                ..ScriptRequest::default()
            };
            serde_json::to_string(&request).unwrap()
        };
        assert!(serde_json::from_str::<ScriptRequest>(&pairs(MAX_DECODED_PAIRS)).is_ok());
        assert!(serde_json::from_str::<ScriptRequest>(&pairs(MAX_DECODED_PAIRS + 1)).is_err());
    }
}
