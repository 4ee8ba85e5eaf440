//! The messages of both channels: pool ↔ worker (stream socket, framed by
//! [`crate::codec`]) and pool ↔ zygote (one `SOCK_SEQPACKET` datagram per
//! message, file descriptors attached with `SCM_RIGHTS`).
//!
//! Invariants:
//! - every pool ↔ worker message after `Hello` names its invocation, and the
//!   pool drops (and kills) a worker whose answer names another one;
//! - the pool encodes with the borrowed mirror types ([`ToWorkerRef`]) so a
//!   16 MiB request body is never cloned; they serialize exactly like the owned
//!   [`ToWorker`] the worker decodes (checked by a test);
//! - nothing here trusts a peer: sizes are bounded by the codec caps.

use serde::{Deserialize, Serialize};
use shared::{CompileError, InvocationId, InvocationOutput, Limits, ScriptId, ScriptRequest};

/// Bumped whenever a message changes shape; the worker's `Hello` carries it.
pub const PROTOCOL_VERSION: u32 = 1;

/// The descriptor a worker's socket sits on, after its fd hygiene.
pub const WORKER_SOCKET_FD: i32 = 3;

/// The descriptor the zygote's control socket sits on.
pub const ZYGOTE_CONTROL_FD: i32 = 3;

/// Largest datagram on the zygote control socket.
pub const MAX_CONTROL_BYTES: usize = 64 * 1024;

/// A compiled script in a worker's cache: scripts are immutable per version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ScriptKey {
    pub id: ScriptId,
    pub version: u32,
}

/// Pool → worker, as the worker decodes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Run one invocation. `source` is present when the pool believes the
    /// worker lacks the script; otherwise the worker asks with `NeedSource`.
    Run {
        invocation: InvocationId,
        script: ScriptKey,
        limits: Limits,
        source: Option<String>,
        request: ScriptRequest,
    },
    /// The answer to `NeedSource`.
    Source {
        invocation: InvocationId,
        source: String,
    },
    /// Compile untrusted source and report the first error.
    Compile {
        invocation: InvocationId,
        source: String,
        limits: Limits,
    },
}

/// Pool → worker, as the pool encodes it (borrowed; same wire form as [`ToWorker`]).
#[derive(Debug, Serialize)]
pub enum ToWorkerRef<'a> {
    Run {
        invocation: InvocationId,
        script: ScriptKey,
        limits: &'a Limits,
        source: Option<&'a str>,
        request: &'a ScriptRequest,
    },
    Source {
        invocation: InvocationId,
        source: &'a str,
    },
    Compile {
        invocation: InvocationId,
        source: &'a str,
        limits: &'a Limits,
    },
}

/// Worker → pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// First frame of every worker, sent after confinement.
    Hello { pid: u32, protocol: u32 },
    /// The script is not in the worker's cache and no source came with it.
    NeedSource { invocation: InvocationId },
    /// The invocation ended; `cpu_total_us` is the worker's lifetime CPU so
    /// far, which the pool uses to recycle it before `RLIMIT_CPU` fires;
    /// `retire` says the worker is ending itself (its runtime caught a panic).
    Done {
        invocation: InvocationId,
        output: InvocationOutput,
        cpu_total_us: u64,
        retire: bool,
    },
    /// The answer to `Compile`.
    Compiled {
        invocation: InvocationId,
        result: Result<(), CompileError>,
    },
}

/// Settings the zygote needs once, sent as the first control message (its
/// environment is empty, so nothing reaches it any other way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZygoteInit {
    /// The counting allocator's hard cap in every worker.
    pub heap_hard_cap_bytes: u64,
    /// Apply the confinement layers in each worker (off only in tests that say why).
    pub confine: bool,
    /// Layers the kernel cannot give are reported instead of refused.
    pub allow_weak_sandbox: bool,
    /// The account workers drop to when the server runs as root.
    pub worker_user: Option<String>,
    /// Lifetime CPU seconds of a worker (the `RLIMIT_CPU` backstop).
    pub worker_cpu_limit_secs: u64,
    /// `RLIMIT_AS` of a worker: the backstop behind the heap cap.
    pub worker_address_space_bytes: u64,
    /// Pin each worker to the least-loaded CPU (`PICLOUD_CPU_PINNING`).
    pub pin_workers: bool,
}

/// Pool → zygote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZygoteRequest {
    Init(ZygoteInit),
    /// Fork one worker; the answer carries the same `seq`.
    Spawn {
        seq: u64,
    },
}

/// Zygote → pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZygoteReply {
    /// The zygote built its runtime and takes `Spawn` requests.
    Ready { pid: u32, protocol: u32 },
    /// A worker was forked. Attached: its socket's pool end, the read end of
    /// its stderr pipe and, when `pidfd` is set, a pidfd for race-free signals.
    Spawned { seq: u64, pid: u32, pidfd: bool },
    /// `fork` (or making its sockets) failed with this errno.
    SpawnFailed { seq: u64, errno: i32 },
    /// The zygote reaped a worker: raw wait status and the CPU it used.
    Exited { pid: u32, status: i32, cpu_us: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{MAX_FRAME_BYTES, decode_payload, encode_frame, split_frame};

    fn request() -> ScriptRequest {
        ScriptRequest {
            method: "POST".into(),
            path: "/exec/x".into(),
            params: vec![("a".into(), "1".into())],
            query: vec![("q".into(), "é".into())],
            headers: vec![("content-type".into(), "application/json".into())],
            body: "{\"n\": 1}".into(),
            body_is_json: true,
        }
    }

    #[test]
    fn borrowed_messages_decode_as_the_owned_ones() {
        let invocation = InvocationId::new();
        let script = ScriptKey {
            id: ScriptId::new(),
            version: 3,
        };
        let limits = Limits::DEFAULTS;
        let req = request();
        let pairs = [
            (
                ToWorkerRef::Run {
                    invocation,
                    script,
                    limits: &limits,
                    source: Some("40 + 2"),
                    request: &req,
                },
                ToWorker::Run {
                    invocation,
                    script,
                    limits,
                    source: Some("40 + 2".into()),
                    request: req.clone(),
                },
            ),
            (
                ToWorkerRef::Run {
                    invocation,
                    script,
                    limits: &limits,
                    source: None,
                    request: &req,
                },
                ToWorker::Run {
                    invocation,
                    script,
                    limits,
                    source: None,
                    request: req.clone(),
                },
            ),
            (
                ToWorkerRef::Source {
                    invocation,
                    source: "x",
                },
                ToWorker::Source {
                    invocation,
                    source: "x".into(),
                },
            ),
            (
                ToWorkerRef::Compile {
                    invocation,
                    source: "let",
                    limits: &limits,
                },
                ToWorker::Compile {
                    invocation,
                    source: "let".into(),
                    limits,
                },
            ),
        ];
        let mut frame = Vec::new();
        for (borrowed, owned) in pairs {
            encode_frame(&borrowed, &mut frame, MAX_FRAME_BYTES).unwrap();
            let (payload, _) = split_frame(&frame, MAX_FRAME_BYTES).unwrap();
            assert_eq!(decode_payload::<ToWorker>(payload).unwrap(), owned);
        }
    }

    #[test]
    fn worker_messages_round_trip() {
        let invocation = InvocationId::new();
        let msgs = [
            FromWorker::Hello {
                pid: 42,
                protocol: PROTOCOL_VERSION,
            },
            FromWorker::NeedSource { invocation },
            FromWorker::Done {
                invocation,
                output: InvocationOutput::failed(shared::Outcome::ScriptError, "boom"),
                cpu_total_us: 17,
                retire: false,
            },
            FromWorker::Compiled {
                invocation,
                result: Err(CompileError {
                    message: "bad".into(),
                    line: Some(1),
                    column: Some(2),
                }),
            },
        ];
        let mut frame = Vec::new();
        for msg in msgs {
            encode_frame(&msg, &mut frame, MAX_FRAME_BYTES).unwrap();
            let (payload, _) = split_frame(&frame, MAX_FRAME_BYTES).unwrap();
            assert_eq!(decode_payload::<FromWorker>(payload).unwrap(), msg);
        }
    }
}
