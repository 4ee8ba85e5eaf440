//! Length-prefixed `postcard` frames: the only way bytes cross a worker socket.
//!
//! A frame is a little-endian `u32` payload length followed by that many bytes
//! of `postcard`. Invariants, on both sides of the socket:
//! - the announced length is checked against the caller's cap *before* any
//!   buffer grows; then at most 64 KiB is reserved up front and the buffer
//!   grows only as bytes actually arrive, so a peer cannot make the reader
//!   allocate much more than it sends (nor ever more than the cap);
//! - decoding never panics and refuses trailing bytes, so a frame has exactly
//!   one meaning;
//! - an encoder that would exceed the cap fails instead of sending, so an
//!   honest peer never trips the other side's check.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// The hard cap on a frame payload, both directions. It sits above the
/// largest legitimate frame: a 16 MiB request body or response body (the
/// operator maxima) plus a 1 MiB log and the headers around them.
pub const MAX_FRAME_BYTES: usize = 24 * 1024 * 1024;

/// Capacity reserved for a frame before its bytes arrive: enough for every
/// ordinary frame in one read, small enough that an announced-but-unsent
/// frame costs a peer nothing worth having.
const EAGER_RESERVE: usize = 64 * 1024;

/// Why a frame could not be read, written, encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the cap of {cap} bytes")]
    TooLarge { len: usize, cap: usize },
    #[error("the peer closed the connection")]
    Closed,
    #[error("the peer closed the connection in the middle of a frame")]
    Truncated,
    #[error("undecodable frame: {0}")]
    Decode(postcard::Error),
    #[error("frame has {0} trailing bytes after its message")]
    TrailingBytes(usize),
    #[error("message cannot be encoded: {0}")]
    Encode(postcard::Error),
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

/// Encodes `msg` as one frame into `buf` (cleared first; its capacity is
/// reused so a steady stream of frames does not allocate).
pub fn encode_frame<T: Serialize + ?Sized>(
    msg: &T,
    buf: &mut Vec<u8>,
    cap: usize,
) -> Result<(), CodecError> {
    let mut out = std::mem::take(buf);
    out.clear();
    out.extend_from_slice(&[0; HEADER_LEN]);
    let mut out = postcard::to_extend(msg, out).map_err(CodecError::Encode)?;
    let len = out.len() - HEADER_LEN;
    if len > cap {
        return Err(CodecError::TooLarge { len, cap });
    }
    let prefix = u32::try_from(len).map_err(|_| CodecError::TooLarge { len, cap })?;
    out[..HEADER_LEN].copy_from_slice(&prefix.to_le_bytes());
    *buf = out;
    Ok(())
}

/// The payload length a header announces, if it is within `cap`.
pub fn payload_len(header: [u8; HEADER_LEN], cap: usize) -> Result<usize, CodecError> {
    let len = usize::try_from(u32::from_le_bytes(header)).unwrap_or(usize::MAX);
    if len > cap {
        return Err(CodecError::TooLarge { len, cap });
    }
    Ok(len)
}

/// Decodes one message that must fill `payload` exactly.
pub fn decode_payload<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, CodecError> {
    let (msg, rest) = postcard::take_from_bytes(payload).map_err(CodecError::Decode)?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes(rest.len()));
    }
    Ok(msg)
}

/// Splits the first complete frame off `bytes`: its payload and the bytes it
/// used. `Truncated` means `bytes` ends inside the frame.
pub fn split_frame(bytes: &[u8], cap: usize) -> Result<(&[u8], usize), CodecError> {
    let Some((header, rest)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(if bytes.is_empty() {
            CodecError::Closed
        } else {
            CodecError::Truncated
        });
    };
    let len = payload_len(*header, cap)?;
    let payload = rest.get(..len).ok_or(CodecError::Truncated)?;
    Ok((payload, HEADER_LEN + len))
}

/// Reads one frame's payload into `buf` from a blocking reader.
pub fn read_frame<R: Read>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> Result<(), CodecError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match reader.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Err(CodecError::Closed),
            Ok(0) => return Err(CodecError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = payload_len(header, cap)?;
    buf.clear();
    buf.reserve(len.min(EAGER_RESERVE));
    let read = reader.take(len as u64).read_to_end(buf)?;
    if read < len {
        return Err(CodecError::Truncated);
    }
    Ok(())
}

/// Writes an encoded frame to a blocking writer.
pub fn write_frame<W: Write>(writer: &mut W, frame: &[u8]) -> Result<(), CodecError> {
    writer.write_all(frame)?;
    Ok(())
}

/// Reads one frame's payload into `buf` from an async reader.
pub async fn read_frame_async<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> Result<(), CodecError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match reader.read(&mut header[got..]).await? {
            0 if got == 0 => return Err(CodecError::Closed),
            0 => return Err(CodecError::Truncated),
            n => got += n,
        }
    }
    let len = payload_len(header, cap)?;
    buf.clear();
    buf.reserve(len.min(EAGER_RESERVE));
    let read = (&mut *reader).take(len as u64).read_to_end(buf).await?;
    if read < len {
        return Err(CodecError::Truncated);
    }
    Ok(())
}

/// Writes an encoded frame to an async writer.
pub async fn write_frame_async<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &[u8],
) -> Result<(), CodecError> {
    writer.write_all(frame).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Msg {
        Ping(u64),
        Text {
            id: u32,
            body: String,
            tags: Vec<(String, String)>,
        },
        Blob(Vec<u8>),
        Maybe(Option<i64>, bool),
    }

    fn random_string(rng: &mut StdRng, max: usize) -> String {
        let len = rng.random_range(0..=max);
        (0..len).map(|_| rng.random::<char>()).collect()
    }

    fn random_msg(rng: &mut StdRng) -> Msg {
        match rng.random_range(0..4) {
            0 => Msg::Ping(rng.random()),
            1 => Msg::Text {
                id: rng.random(),
                body: random_string(rng, 300),
                tags: (0..rng.random_range(0..5))
                    .map(|_| (random_string(rng, 10), random_string(rng, 10)))
                    .collect(),
            },
            2 => {
                let mut blob = vec![0; rng.random_range(0..2000)];
                rng.fill_bytes(&mut blob);
                Msg::Blob(blob)
            }
            _ => Msg::Maybe(rng.random::<bool>().then(|| rng.random()), rng.random()),
        }
    }

    #[test]
    fn random_messages_round_trip_through_every_reader() {
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let mut frame = Vec::new();
        for _ in 0..2000 {
            let msg = random_msg(&mut rng);
            encode_frame(&msg, &mut frame, MAX_FRAME_BYTES).unwrap();
            let (payload, used) = split_frame(&frame, MAX_FRAME_BYTES).unwrap();
            assert_eq!(used, frame.len());
            assert_eq!(decode_payload::<Msg>(payload).unwrap(), msg);

            let mut buf = Vec::new();
            read_frame(&mut frame.as_slice(), &mut buf, MAX_FRAME_BYTES).unwrap();
            assert_eq!(decode_payload::<Msg>(&buf).unwrap(), msg);
        }
    }

    #[tokio::test]
    async fn frames_stream_back_to_back_over_a_real_socket() {
        let (mut a, mut b) = tokio::net::UnixStream::pair().unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let msgs: Vec<Msg> = (0..200).map(|_| random_msg(&mut rng)).collect();
        let sent = msgs.clone();
        let writer = tokio::spawn(async move {
            let mut frame = Vec::new();
            for m in &sent {
                encode_frame(m, &mut frame, MAX_FRAME_BYTES).unwrap();
                write_frame_async(&mut a, &frame).await.unwrap();
            }
        });
        let mut buf = Vec::new();
        for m in &msgs {
            read_frame_async(&mut b, &mut buf, MAX_FRAME_BYTES)
                .await
                .unwrap();
            assert_eq!(&decode_payload::<Msg>(&buf).unwrap(), m);
        }
        writer.await.unwrap();
        let end = read_frame_async(&mut b, &mut buf, MAX_FRAME_BYTES).await;
        assert!(matches!(end, Err(CodecError::Closed)), "{end:?}");
    }

    #[test]
    fn every_truncation_is_reported_not_panicked() {
        let mut frame = Vec::new();
        let msg = Msg::Text {
            id: 9,
            body: "hello".repeat(20),
            tags: vec![("a".into(), "b".into())],
        };
        encode_frame(&msg, &mut frame, MAX_FRAME_BYTES).unwrap();
        for cut in 0..frame.len() {
            let part = &frame[..cut];
            let expected_closed = cut == 0;
            let mut buf = Vec::new();
            let sync = read_frame(&mut &part[..], &mut buf, MAX_FRAME_BYTES);
            let split = split_frame(part, MAX_FRAME_BYTES);
            if expected_closed {
                assert!(matches!(sync, Err(CodecError::Closed)));
                assert!(matches!(split, Err(CodecError::Closed)));
            } else {
                assert!(
                    matches!(sync, Err(CodecError::Truncated)),
                    "cut {cut}: {sync:?}"
                );
                assert!(matches!(split, Err(CodecError::Truncated)), "cut {cut}");
            }
        }
        // A payload cut short inside the postcard body (with an honest header) fails to decode.
        let payload = &frame[HEADER_LEN..];
        for cut in 0..payload.len() {
            assert!(decode_payload::<Msg>(&payload[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn oversized_frames_are_refused_before_allocating() {
        // The header announces 4 GiB - 1; nothing behind it.
        let header = u32::MAX.to_le_bytes();
        let mut buf = Vec::new();
        let err = read_frame(&mut &header[..], &mut buf, MAX_FRAME_BYTES).unwrap_err();
        assert!(matches!(err, CodecError::TooLarge { len, .. } if len == u32::MAX as usize));
        assert_eq!(
            buf.capacity(),
            0,
            "nothing may be allocated for a refused frame"
        );

        // One byte over a small cap is refused; exactly the cap is fine.
        let mut frame = Vec::new();
        encode_frame(&Msg::Blob(vec![1; 100]), &mut frame, MAX_FRAME_BYTES).unwrap();
        let len = frame.len() - HEADER_LEN;
        assert!(split_frame(&frame, len).is_ok());
        assert!(matches!(
            split_frame(&frame, len - 1),
            Err(CodecError::TooLarge { .. })
        ));
        assert!(matches!(
            encode_frame(&Msg::Blob(vec![1; 100]), &mut frame, len - 1),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn an_announced_but_unsent_frame_costs_little_memory() {
        let mut bytes = u32::try_from(MAX_FRAME_BYTES)
            .unwrap()
            .to_le_bytes()
            .to_vec();
        bytes.extend_from_slice(&[0u8; 10]);
        let mut buf = Vec::new();
        let err = read_frame(&mut bytes.as_slice(), &mut buf, MAX_FRAME_BYTES).unwrap_err();
        assert!(matches!(err, CodecError::Truncated));
        assert!(buf.capacity() <= 2 * EAGER_RESERVE, "{}", buf.capacity());
    }

    #[test]
    fn a_header_that_lies_about_a_short_body_is_truncated_not_padded() {
        let mut bytes = 1000u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 10]);
        let mut buf = Vec::new();
        let err = read_frame(&mut bytes.as_slice(), &mut buf, MAX_FRAME_BYTES).unwrap_err();
        assert!(matches!(err, CodecError::Truncated));
        assert!(buf.len() <= 10);
    }

    #[test]
    fn random_garbage_never_panics_and_trailing_bytes_are_refused() {
        let mut rng = StdRng::seed_from_u64(99);
        for _ in 0..20_000 {
            let mut junk = vec![0u8; rng.random_range(0..64)];
            rng.fill_bytes(&mut junk);
            let _ = decode_payload::<Msg>(&junk);
            let _ = split_frame(&junk, 1 << 20);
            let mut buf = Vec::new();
            let _ = read_frame(&mut junk.as_slice(), &mut buf, 1 << 20);
        }
        let mut frame = Vec::new();
        encode_frame(&Msg::Ping(5), &mut frame, MAX_FRAME_BYTES).unwrap();
        let mut payload = frame[HEADER_LEN..].to_vec();
        payload.push(0);
        assert!(matches!(
            decode_payload::<Msg>(&payload),
            Err(CodecError::TrailingBytes(1))
        ));
    }
}
