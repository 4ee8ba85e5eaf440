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

/// Bytes asked of the socket per read when a frame's size does not call for
/// more: a whole ordinary frame, header and payload, in one system call.
const READ_CHUNK: usize = 16 * 1024;

/// A buffered frame reader for one connection: each read asks the socket for
/// as much as is there (so a frame usually costs one system call, not two),
/// and bytes past the current frame are kept for the next call rather than
/// lost. The caps are those of [`read_frame`]: the announced length is
/// checked before the buffer grows for it, and the buffer grows by at most
/// 64 KiB beyond the bytes that have actually arrived.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Bytes of the frame returned last, consumed at the next call.
    returned: usize,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the frame returned last (the next read does so too); a buffer
    /// grown past 1 MiB for it is freed when nothing else is held.
    pub fn consume_returned(&mut self) {
        self.start += std::mem::take(&mut self.returned);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            // A huge one-off frame's buffer does not live as long as the peer.
            if self.buf.len() > 1024 * 1024 {
                self.buf = Vec::new();
            }
        }
    }

    /// The length of the complete frame at the front, if it has arrived.
    fn complete(&self, cap: usize) -> Result<Option<usize>, CodecError> {
        let avail = &self.buf[self.start..self.end];
        let Some(header) = avail.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let total = HEADER_LEN + payload_len(*header, cap)?;
        Ok((avail.len() >= total).then_some(total))
    }

    /// Makes room for the next read and returns where it may write.
    fn spare(&mut self, cap: usize) -> Result<&mut [u8], CodecError> {
        let avail = self.end - self.start;
        let missing = match self.buf[self.start..self.end].first_chunk::<HEADER_LEN>() {
            Some(header) => HEADER_LEN + payload_len(*header, cap)? - avail,
            None => HEADER_LEN - avail,
        };
        let want = missing.clamp(READ_CHUNK, EAGER_RESERVE);
        if self.start > 0 && self.end + want > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = avail;
        }
        if self.buf.len() < self.end + want {
            self.buf.resize(self.end + want, 0);
        }
        Ok(&mut self.buf[self.end..self.end + want])
    }

    fn frame(&mut self, total: usize) -> &[u8] {
        self.returned = total;
        &self.buf[self.start + HEADER_LEN..self.start + total]
    }

    fn at_eof(&self) -> CodecError {
        if self.start == self.end {
            CodecError::Closed
        } else {
            CodecError::Truncated
        }
    }

    /// The next frame's payload from a blocking reader.
    pub fn read_frame<R: Read>(&mut self, reader: &mut R, cap: usize) -> Result<&[u8], CodecError> {
        self.consume_returned();
        loop {
            if let Some(total) = self.complete(cap)? {
                return Ok(self.frame(total));
            }
            let spare = self.spare(cap)?;
            match reader.read(spare) {
                Ok(0) => return Err(self.at_eof()),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next frame's payload from an async reader.
    pub async fn read_frame_async<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        cap: usize,
    ) -> Result<&[u8], CodecError> {
        self.consume_returned();
        loop {
            if let Some(total) = self.complete(cap)? {
                return Ok(self.frame(total));
            }
            let spare = self.spare(cap)?;
            match reader.read(spare).await? {
                0 => return Err(self.at_eof()),
                n => self.end += n,
            }
        }
    }

    /// Bytes held for frames not yet returned.
    pub fn buffered(&self) -> usize {
        self.end - self.start - self.returned
    }

    /// The buffer's size: what the reader holds in memory.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
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

    /// 200 random messages written as frames, back to back, into one end
    /// of a socket pair by a task; the messages and the other end.
    fn sent_over_a_socket(
        seed: u64,
    ) -> (
        Vec<Msg>,
        tokio::net::UnixStream,
        tokio::task::JoinHandle<()>,
    ) {
        let (mut a, b) = tokio::net::UnixStream::pair().unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let msgs: Vec<Msg> = (0..200).map(|_| random_msg(&mut rng)).collect();
        let sent = msgs.clone();
        let writer = tokio::spawn(async move {
            let mut frame = Vec::new();
            for m in &sent {
                encode_frame(m, &mut frame, MAX_FRAME_BYTES).unwrap();
                write_frame_async(&mut a, &frame).await.unwrap();
            }
        });
        (msgs, b, writer)
    }

    #[tokio::test]
    async fn frames_stream_back_to_back_over_a_real_socket() {
        let (msgs, mut b, writer) = sent_over_a_socket(7);
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

    /// A reader that hands out its bytes in random-sized pieces, as a stream
    /// socket may.
    struct Dribble<'a> {
        bytes: &'a [u8],
        rng: StdRng,
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self
                .rng
                .random_range(1..=out.len().max(1))
                .min(self.bytes.len())
                .min(out.len());
            out[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn the_buffered_reader_returns_back_to_back_frames_in_any_pieces() {
        let mut rng = StdRng::seed_from_u64(0xf4a3e);
        let msgs: Vec<Msg> = (0..500).map(|_| random_msg(&mut rng)).collect();
        let mut stream = Vec::new();
        let mut frame = Vec::new();
        for m in &msgs {
            encode_frame(m, &mut frame, MAX_FRAME_BYTES).unwrap();
            stream.extend_from_slice(&frame);
        }
        for seed in 0..4 {
            let mut dribble = Dribble {
                bytes: &stream,
                rng: StdRng::seed_from_u64(seed),
            };
            let mut reader = FrameReader::new();
            for m in &msgs {
                let payload = reader.read_frame(&mut dribble, MAX_FRAME_BYTES).unwrap();
                assert_eq!(&decode_payload::<Msg>(payload).unwrap(), m);
            }
            let end = reader.read_frame(&mut dribble, MAX_FRAME_BYTES);
            assert!(matches!(end, Err(CodecError::Closed)), "{end:?}");
        }
    }

    #[test]
    fn the_buffered_reader_agrees_with_the_plain_one_on_every_cut_and_on_garbage() {
        let mut frame = Vec::new();
        encode_frame(&Msg::Blob(vec![7; 300]), &mut frame, MAX_FRAME_BYTES).unwrap();
        let same = |bytes: &[u8], cap: usize| {
            let mut buf = Vec::new();
            let plain = read_frame(&mut &bytes[..], &mut buf, cap).map(|()| buf);
            let mut reader = FrameReader::new();
            let buffered = reader.read_frame(&mut &bytes[..], cap).map(<[u8]>::to_vec);
            match (plain, buffered) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("plain {a:?}, buffered {b:?}"),
            }
        };
        for cut in 0..=frame.len() {
            same(&frame[..cut], MAX_FRAME_BYTES);
            same(&frame[..cut], 100);
        }
        let mut rng = StdRng::seed_from_u64(4);
        for _ in 0..5_000 {
            let mut junk = vec![0u8; rng.random_range(0..64)];
            rng.fill_bytes(&mut junk);
            same(&junk, 1 << 20);
        }
    }

    #[test]
    fn the_buffered_reader_refuses_big_frames_early_and_grows_only_with_the_bytes() {
        let header = u32::MAX.to_le_bytes();
        let mut reader = FrameReader::new();
        let err = reader
            .read_frame(&mut &header[..], MAX_FRAME_BYTES)
            .unwrap_err();
        assert!(matches!(err, CodecError::TooLarge { .. }), "{err:?}");
        assert!(reader.capacity() <= READ_CHUNK, "{}", reader.capacity());

        let mut bytes = u32::try_from(MAX_FRAME_BYTES)
            .unwrap()
            .to_le_bytes()
            .to_vec();
        bytes.extend_from_slice(&[0u8; 10]);
        let mut reader = FrameReader::new();
        let err = reader
            .read_frame(&mut bytes.as_slice(), MAX_FRAME_BYTES)
            .unwrap_err();
        assert!(matches!(err, CodecError::Truncated), "{err:?}");
        assert!(
            reader.capacity() <= 2 * EAGER_RESERVE,
            "{}",
            reader.capacity()
        );
    }

    #[tokio::test]
    async fn the_buffered_reader_streams_frames_over_a_real_socket() {
        let (msgs, mut b, writer) = sent_over_a_socket(8);
        let mut reader = FrameReader::new();
        for m in &msgs {
            let payload = reader
                .read_frame_async(&mut b, MAX_FRAME_BYTES)
                .await
                .unwrap();
            assert_eq!(&decode_payload::<Msg>(payload).unwrap(), m);
        }
        writer.await.unwrap();
        let end = reader.read_frame_async(&mut b, MAX_FRAME_BYTES).await;
        assert!(matches!(end, Err(CodecError::Closed)), "{end:?}");
        assert_eq!(reader.buffered(), 0);
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
