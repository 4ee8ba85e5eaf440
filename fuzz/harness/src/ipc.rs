//! Target `ipc_frames`: arbitrary bytes on a worker socket, in both
//! directions, and on the zygote control socket.
//!
//! The bytes are read as a stream of frames three ways (split from a buffer,
//! the worker's blocking reader fed in small pieces, the pool's async
//! reader); every payload is decoded as what the worker decodes
//! ([`ToWorker`]) and what the pool decodes ([`FromWorker`]). A prefix of up
//! to [`MAX_CONTROL_BYTES`] is decoded as a control datagram in both
//! directions. Checked: nothing panics; a decoded message re-encodes and
//! decodes to itself; with the counting allocator on, reading and decoding
//! allocates in proportion to the bytes received ([`allocation_bound`]) and
//! never more than the cap of the channel.

use std::io::Read;

use executor_core::heap;
use sandbox::codec::{
    CodecError, FrameReader, MAX_FRAME_BYTES, decode_payload, encode_frame, read_frame,
    read_frame_async, split_frame,
};
use sandbox::protocol::{FromWorker, MAX_CONTROL_BYTES, ToWorker, ZygoteReply, ZygoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A reader that hands out at most `step` bytes per call, like a socket.
struct Pieces<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Runs one input; panics when an invariant breaks.
pub fn frames(data: &[u8]) {
    let counting = heap::counting_enabled();
    let base = heap::live_bytes();
    heap::reset_peak();

    // The whole input as a stream of frames, split from one buffer.
    let mut rest = data;
    let mut split = Vec::new();
    let split_end = loop {
        match split_frame(rest, MAX_FRAME_BYTES) {
            Ok((payload, used)) => {
                both_directions(payload);
                split.push(payload);
                rest = &rest[used..];
            }
            Err(e) => break e.to_string(),
        }
    };

    // The buffered reader both sides use, fed in pieces and as one stream:
    // the same frames, in order, and the same end as splitting.
    let step = usize::from(data.last().copied().unwrap_or(1) % 13) + 1;
    let mut reader = FrameReader::new();
    let mut pieces = Pieces { data, step };
    for expected in &split {
        let got = reader.read_frame(&mut pieces, MAX_FRAME_BYTES);
        assert_eq!(got.ok(), Some(*expected), "buffered reader lost a frame");
    }
    let end = reader
        .read_frame(&mut pieces, MAX_FRAME_BYTES)
        .map(<[u8]>::len);
    assert_eq!(end.map_err(|e| e.to_string()), Err(split_end.clone()));
    assert!(
        reader.capacity() <= data.len() + 2 * 64 * 1024,
        "buffered reader over-allocated"
    );
    drop(reader);
    let mut reader = FrameReader::new();
    let mut stream = data;
    for expected in &split {
        let got = crate::ready(reader.read_frame_async(&mut stream, MAX_FRAME_BYTES));
        assert_eq!(
            got.ok(),
            Some(*expected),
            "async buffered reader lost a frame"
        );
    }
    let end = crate::ready(reader.read_frame_async(&mut stream, MAX_FRAME_BYTES)).map(<[u8]>::len);
    assert_eq!(end.map_err(|e| e.to_string()), Err(split_end));
    drop(reader);

    // The worker's blocking reader, fed in pieces.
    let step = usize::from(data.first().copied().unwrap_or(1) % 7) + 1;
    let mut reader = Pieces { data, step };
    let mut buf = Vec::new();
    loop {
        // The buffer is reused, as the worker reuses it: it may keep the
        // capacity of an earlier frame, but a refused one must not grow it.
        let before = buf.capacity();
        match read_frame(&mut reader, &mut buf, MAX_FRAME_BYTES) {
            Ok(()) => assert!(buf.len() <= MAX_FRAME_BYTES, "frame above the cap"),
            Err(CodecError::TooLarge { len, cap }) => {
                assert!(len > cap, "refused a frame within the cap");
                assert_eq!(buf.capacity(), before, "a refused frame grew the buffer");
                break;
            }
            Err(_) => break,
        }
        both_directions(&buf);
    }

    // The pool's async reader.
    let mut stream = data;
    loop {
        let read = crate::ready(read_frame_async(&mut stream, &mut buf, MAX_FRAME_BYTES));
        if read.is_err() {
            break;
        }
        both_directions(&buf);
    }
    drop(buf);
    if counting {
        let used = heap::peak_bytes().saturating_sub(base);
        let bound = allocation_bound(data.len());
        assert!(
            used <= bound,
            "reading and decoding {} bytes of frames allocated {used} bytes, above {bound} \
             (8 times the input plus 2 MiB, and never past the {MAX_FRAME_BYTES}-byte frame cap)",
            data.len()
        );
    }

    // A control datagram (what `control::recv` hands to `decode_payload`).
    let base = heap::live_bytes();
    heap::reset_peak();
    let datagram = &data[..data.len().min(MAX_CONTROL_BYTES)];
    round_trip::<ZygoteRequest>(datagram);
    round_trip::<ZygoteReply>(datagram);
    if counting {
        let used = heap::peak_bytes().saturating_sub(base);
        assert!(
            used <= MAX_CONTROL_BYTES as u64,
            "decoding a {}-byte control datagram allocated {used} bytes, above the {MAX_CONTROL_BYTES}-byte cap",
            datagram.len()
        );
    }
}

/// What reading and decoding `len` bytes of frames may allocate at its
/// peak: proportional to what arrived (the reader's buffer grows by
/// doubling, a decoded message holds its strings, the check re-encodes it),
/// plus room for the lists a message may hold, and never more than the cap.
pub fn allocation_bound(len: usize) -> u64 {
    let len = len as u64;
    len.saturating_mul(8)
        .saturating_add(2 * 1024 * 1024)
        .min(MAX_FRAME_BYTES as u64)
}

fn both_directions(payload: &[u8]) {
    round_trip::<ToWorker>(payload);
    round_trip::<FromWorker>(payload);
}

/// Decodes `payload` as `T`; a message that decodes must survive a trip
/// through the encoder unchanged.
fn round_trip<T>(payload: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(msg) = decode_payload::<T>(payload) else {
        return;
    };
    let mut frame = Vec::new();
    encode_frame(&msg, &mut frame, MAX_FRAME_BYTES)
        .unwrap_or_else(|e| panic!("a decoded message does not encode: {e}"));
    let (again, used) = split_frame(&frame, MAX_FRAME_BYTES)
        .unwrap_or_else(|e| panic!("an encoded frame does not split: {e}"));
    assert_eq!(used, frame.len());
    let back = decode_payload::<T>(again)
        .unwrap_or_else(|e| panic!("a re-encoded message does not decode: {e}"));
    assert_eq!(back, msg, "a message changed on its way through the codec");
}

/// Encoded frames of real messages in both directions, and bare control
/// datagrams, for seeding the corpus.
pub fn seed_frames() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut frame = Vec::new();
    for msg in &to_worker_seeds() {
        if encode_frame(msg, &mut frame, MAX_FRAME_BYTES).is_ok() {
            out.push(frame.clone());
        }
    }
    for msg in &from_worker_seeds() {
        if encode_frame(msg, &mut frame, MAX_FRAME_BYTES).is_ok() {
            out.push(frame.clone());
        }
    }
    // Control datagrams are bare payloads: no length prefix.
    for msg in &control_request_seeds() {
        if encode_frame(msg, &mut frame, MAX_FRAME_BYTES).is_ok() {
            out.push(frame[sandbox::codec::HEADER_LEN..].to_vec());
        }
    }
    for msg in &control_reply_seeds() {
        if encode_frame(msg, &mut frame, MAX_FRAME_BYTES).is_ok() {
            out.push(frame[sandbox::codec::HEADER_LEN..].to_vec());
        }
    }
    out
}

fn to_worker_seeds() -> Vec<ToWorker> {
    use shared::{InvocationId, Limits, ScriptId};
    let invocation = InvocationId::new();
    let script = sandbox::protocol::ScriptKey {
        id: ScriptId::new(),
        version: 2,
    };
    let request = shared::ScriptRequest {
        method: "POST".into(),
        path: "/exec/hooks/1".into(),
        params: vec![("id".into(), "1".into())],
        query: vec![("q".into(), "é".into())],
        headers: vec![("content-type".into(), "application/json".into())],
        body: "{\"n\": 1}".into(),
        body_is_json: true,
    };
    vec![
        ToWorker::Run {
            invocation,
            script,
            limits: Limits::DEFAULTS,
            source: Some("response(200, request.body)".into()),
            request: request.clone(),
        },
        ToWorker::Run {
            invocation,
            script,
            limits: Limits::MAXIMA,
            source: None,
            request,
        },
        ToWorker::Source {
            invocation,
            source: "40 + 2".into(),
        },
        ToWorker::Compile {
            invocation,
            source: "fn f(x) { x }".into(),
            limits: Limits::DEFAULTS,
        },
    ]
}

fn from_worker_seeds() -> Vec<FromWorker> {
    use shared::{CompileError, InvocationId, InvocationOutput, Outcome};
    let invocation = InvocationId::new();
    let mut ok = InvocationOutput::failed(Outcome::Ok, "");
    ok.error = None;
    ok.response = Some(shared::ScriptResponse {
        status: 200,
        headers: vec![("x-a".into(), "b".into())],
        body: b"hello".to_vec(),
    });
    ok.logs = vec!["[info] hi".into()];
    vec![
        FromWorker::Hello {
            pid: 7,
            protocol: sandbox::protocol::PROTOCOL_VERSION,
        },
        FromWorker::NeedSource { invocation },
        FromWorker::Done {
            invocation,
            output: ok,
            cpu_total_us: 12,
            retire: false,
        },
        FromWorker::Done {
            invocation,
            output: InvocationOutput::failed(Outcome::ScriptError, "boom"),
            cpu_total_us: 1,
            retire: true,
        },
        FromWorker::Compiled {
            invocation,
            result: Err(CompileError {
                message: "bad".into(),
                line: Some(1),
                column: Some(2),
            }),
        },
    ]
}

fn control_request_seeds() -> Vec<ZygoteRequest> {
    vec![
        ZygoteRequest::Init(sandbox::protocol::ZygoteInit {
            heap_hard_cap_bytes: 1 << 30,
            confine: true,
            allow_weak_sandbox: false,
            worker_user: Some("nobody".into()),
            worker_cpu_limit_secs: 600,
            worker_address_space_bytes: 1 << 31,
            pin_workers: true,
        }),
        ZygoteRequest::Spawn { seq: 3 },
    ]
}

fn control_reply_seeds() -> Vec<ZygoteReply> {
    vec![
        ZygoteReply::Ready {
            pid: 1,
            protocol: 1,
        },
        ZygoteReply::Spawned {
            seq: 3,
            pid: 9,
            pidfd: true,
        },
        ZygoteReply::SpawnFailed { seq: 4, errno: 11 },
        ZygoteReply::Exited {
            pid: 9,
            status: 31,
            cpu_us: 5,
        },
    ]
}
