//! The zygote control channel: one `SOCK_SEQPACKET` datagram per message,
//! `postcard`-encoded, with file descriptors attached by `SCM_RIGHTS`.
//!
//! Invariants: a datagram is at most [`MAX_CONTROL_BYTES`]; a truncated
//! datagram or unexpected descriptors are errors, and received descriptors
//! are close-on-exec (`MSG_CMSG_CLOEXEC`) and owned, so none can leak into a
//! later zygote or worker.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Serialize, de::DeserializeOwned};

use crate::codec::decode_payload;
use crate::error::SandboxError;
use crate::protocol::MAX_CONTROL_BYTES;

/// The most descriptors one message carries.
pub const MAX_FDS: usize = 3;

/// Sends one message with `fds` attached. `MSG_NOSIGNAL`: a dead peer is an
/// error, not a `SIGPIPE`.
pub fn send<T: Serialize>(fd: BorrowedFd<'_>, msg: &T, fds: &[RawFd]) -> Result<(), SandboxError> {
    let bytes = postcard::to_stdvec(msg).map_err(|e| SandboxError::Control(e.to_string()))?;
    if bytes.len() > MAX_CONTROL_BYTES {
        return Err(SandboxError::Control("control message too large".into()));
    }
    let iov = [IoSlice::new(&bytes)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(fd.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// What one `recv` produced.
#[derive(Debug)]
pub enum Received<T> {
    Message(T, Vec<OwnedFd>),
    /// The peer closed its end.
    Closed,
}

/// Receives one message. With a non-blocking socket and nothing queued this
/// returns `Err(Sys(EAGAIN))`.
pub fn recv<T: DeserializeOwned>(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
) -> Result<Received<T>, SandboxError> {
    let mut cmsg_space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (len, truncated, fds) = {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = loop {
            match recvmsg::<()>(
                fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg_space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) => break m,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        };
        let mut fds = Vec::new();
        for cmsg in msg
            .cmsgs()
            .map_err(|e| SandboxError::Control(e.to_string()))?
        {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                // SAFETY: the kernel just installed these descriptors for us
                // (SCM_RIGHTS); nothing else owns them.
                fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
            }
        }
        let truncated = msg
            .flags
            .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
        (msg.bytes, truncated, fds)
    };
    if truncated {
        return Err(SandboxError::Control("control message truncated".into()));
    }
    if len == 0 && fds.is_empty() {
        return Ok(Received::Closed);
    }
    let msg = decode_payload(&buf[..len]).map_err(|e| SandboxError::Control(e.to_string()))?;
    Ok(Received::Message(msg, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ZygoteReply, ZygoteRequest};
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn messages_and_descriptors_cross_a_seqpacket_pair() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        send(
            a.as_fd(),
            &ZygoteReply::Spawned {
                seq: 7,
                pid: 99,
                pidfd: false,
            },
            &[w.as_raw_fd()],
        )
        .unwrap();
        drop(w);
        let mut buf = vec![0; MAX_CONTROL_BYTES];
        let Received::Message(msg, mut fds) = recv::<ZygoteReply>(b.as_fd(), &mut buf).unwrap()
        else {
            panic!("expected a message");
        };
        assert_eq!(
            msg,
            ZygoteReply::Spawned {
                seq: 7,
                pid: 99,
                pidfd: false
            }
        );
        assert_eq!(fds.len(), 1);
        let flags = nix::fcntl::fcntl(fds[0].as_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(
            flags & libc::FD_CLOEXEC,
            0,
            "received descriptors are close-on-exec"
        );
        let mut passed = std::fs::File::from(fds.remove(0));
        passed.write_all(b"through").unwrap();
        drop(passed);
        let mut got = String::new();
        std::fs::File::from(r).read_to_string(&mut got).unwrap();
        assert_eq!(got, "through");

        send(a.as_fd(), &ZygoteRequest::Spawn { seq: 1 }, &[]).unwrap();
        assert!(matches!(
            recv::<ZygoteRequest>(b.as_fd(), &mut buf).unwrap(),
            Received::Message(ZygoteRequest::Spawn { seq: 1 }, _)
        ));
        drop(a);
        assert!(matches!(
            recv::<ZygoteRequest>(b.as_fd(), &mut buf).unwrap(),
            Received::Closed
        ));
    }

    #[test]
    fn garbage_datagrams_are_errors() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        nix::unistd::write(&a, &[0xff, 0xff, 0xff]).unwrap();
        let mut buf = vec![0; MAX_CONTROL_BYTES];
        assert!(recv::<ZygoteReply>(b.as_fd(), &mut buf).is_err());
        // Larger than the receive buffer: truncated, refused.
        nix::unistd::write(&a, &[0u8; 64]).unwrap();
        let mut small = [0u8; 8];
        assert!(recv::<ZygoteReply>(b.as_fd(), &mut small).is_err());
    }
}
