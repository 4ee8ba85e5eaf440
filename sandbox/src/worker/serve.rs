//! The worker's request loop: one frame in, one invocation, one frame out.
//!
//! Invariants: every answer names the invocation it answers; the loop holds
//! at most one invocation; its buffers are reused across invocations; a
//! frame it cannot decode, or one out of order, ends the worker.

use std::num::NonZeroUsize;

use executor_core::{CompiledScript, ScriptRuntime};
use interprocess::os::unix::uds_local_socket::Stream;
use shared::{InvocationId, InvocationOutput, Outcome};

use super::cache::AstCache;
use crate::codec::{
    CodecError, FrameReader, MAX_FRAME_BYTES, decode_payload, encode_frame, write_frame,
};
use crate::error::SandboxError;
use crate::protocol::{FromWorker, PROTOCOL_VERSION, ToWorker};

/// Compiled scripts one worker keeps.
pub(crate) const CACHE_ENTRIES: usize = 64;
/// Total source bytes behind them.
const CACHE_SOURCE_BYTES: usize = 8 * 1024 * 1024;

struct Channel {
    stream: Stream,
    reader: FrameReader,
    outbuf: Vec<u8>,
}

impl Channel {
    fn send(&mut self, msg: &FromWorker) -> Result<(), SandboxError> {
        encode_frame(msg, &mut self.outbuf, MAX_FRAME_BYTES)?;
        write_frame(&mut &self.stream, &self.outbuf)?;
        Ok(())
    }

    /// The next message, or `None` when the pool closed the socket.
    fn recv(&mut self) -> Result<Option<ToWorker>, SandboxError> {
        if self.reader.buffered() == 0 {
            wait_readable(&self.stream);
        }
        match self.reader.read_frame(&mut &self.stream, MAX_FRAME_BYTES) {
            Ok(payload) => Ok(Some(decode_payload(payload)?)),
            Err(CodecError::Closed) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

pub(super) fn serve(stream: Stream, runtime: &mut ScriptRuntime) -> Result<(), SandboxError> {
    let mut channel = Channel {
        stream,
        reader: FrameReader::new(),
        outbuf: Vec::new(),
    };
    let mut cache: AstCache<CompiledScript> = AstCache::new(
        NonZeroUsize::new(CACHE_ENTRIES).expect("nonzero constant"),
        CACHE_SOURCE_BYTES,
    );
    channel.send(&FromWorker::Hello {
        pid: std::process::id(),
        protocol: PROTOCOL_VERSION,
    })?;
    while let Some(msg) = channel.recv()? {
        match msg {
            ToWorker::Run {
                invocation,
                script,
                limits,
                source,
                request,
            } => {
                let output = if let Some(compiled) = cache.get(&script, |c| c.compiled_for(&limits))
                {
                    let mut output = runtime.run(compiled, &request, &limits);
                    output.stats.cache_hit = true;
                    output
                } else {
                    let source = match source {
                        Some(s) => s,
                        None => fetch_source(&mut channel, invocation)?,
                    };
                    match runtime.compile(&source, &limits) {
                        Ok(compiled) => {
                            let mut output = runtime.run(&compiled, &request, &limits);
                            output.stats.cache_hit = false;
                            cache.insert(script, compiled, source.len());
                            output
                        }
                        Err(e) => InvocationOutput::failed(Outcome::CompileError, e.to_string()),
                    }
                };
                let retire = runtime.is_poisoned();
                channel.send(&done(invocation, output, retire))?;
                if retire {
                    // A panic was caught inside the runtime: end, do not serve on.
                    return Ok(());
                }
            }
            ToWorker::Compile {
                invocation,
                source,
                limits,
            } => {
                let result = runtime.compile(&source, &limits).map(drop);
                channel.send(&FromWorker::Compiled { invocation, result })?;
                if runtime.is_poisoned() {
                    return Ok(());
                }
            }
            ToWorker::Source { .. } => {
                return Err(SandboxError::Control(
                    "source sent without being asked".into(),
                ));
            }
        }
    }
    Ok(())
}

fn fetch_source(channel: &mut Channel, invocation: InvocationId) -> Result<String, SandboxError> {
    channel.send(&FromWorker::NeedSource { invocation })?;
    match channel.recv()? {
        Some(ToWorker::Source {
            invocation: answered,
            source,
        }) if answered == invocation => Ok(source),
        _ => Err(SandboxError::Control(
            "expected the source of the current invocation".into(),
        )),
    }
}

fn done(invocation: InvocationId, output: InvocationOutput, retire: bool) -> FromWorker {
    FromWorker::Done {
        invocation,
        output,
        cpu_total_us: process_cpu_us(),
        retire,
    }
}

/// The worker's lifetime CPU (user + system), as `RLIMIT_CPU` counts it.
fn process_cpu_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a local timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &raw mut ts) } != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0) / 1000)
}

/// Blocks until the socket has data (or closed). A reader blocked in `recv`
/// on a stream socket is also woken whenever the pool consumes one of this
/// worker's answers (the kernel signals write space on the same wait queue);
/// a `poll` waiter is woken only for input, which saves a context switch per
/// invocation. Errors fall through to the `recv`, which reports them.
fn wait_readable(stream: &Stream) {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    let mut fds = [libc::pollfd {
        fd: stream.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: one valid pollfd, no timeout, no signal mask.
    let _ = unsafe { libc::ppoll(fds.as_mut_ptr(), 1, std::ptr::null(), std::ptr::null()) };
}
