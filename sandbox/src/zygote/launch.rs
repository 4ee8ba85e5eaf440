//! Starting the zygote process from the (multi-threaded) server.
//!
//! No `fork` happens in the server: the zygote is a fresh `exec` of the host
//! binary via `std::process::Command`, whose `pre_exec` only calls
//! async-signal-safe functions (`setsid`, `dup2`, `fcntl`,
//! `setrlimit`).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};

use super::ZYGOTE_ARG;
use crate::error::SandboxError;
use crate::protocol::ZYGOTE_CONTROL_FD;

/// Stack for the zygote's main thread, inherited by every worker: deep but
/// allowed Rhai recursion runs there.
const ZYGOTE_STACK_BYTES: libc::rlim_t = 256 * 1024 * 1024;

/// A started zygote: the child process and the server's end of its control socket.
pub(crate) struct Launched {
    pub child: Child,
    pub control: OwnedFd,
}

/// Starts `executable` as a zygote.
pub(crate) fn launch(executable: &Path) -> Result<Launched, SandboxError> {
    let (server_end, zygote_end) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let zygote_fd = zygote_end.as_raw_fd();
    let mut command = Command::new(executable);
    command
        .arg(ZYGOTE_ARG)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // SAFETY: the closure runs between fork and exec in the child and calls
    // only async-signal-safe libc functions on values captured by copy.
    unsafe {
        command.pre_exec(move || {
            // A session of its own: Ctrl-C in a terminal signals the whole
            // foreground process group, and the zygote (with every worker,
            // through their parent-death signal) must outlive the server's
            // graceful shutdown, which ends it through its control socket.
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if zygote_fd == ZYGOTE_CONTROL_FD {
                // dup2 onto itself would keep close-on-exec set.
                if libc::fcntl(zygote_fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(zygote_fd, ZYGOTE_CONTROL_FD) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            let mut current = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_STACK, &raw mut current) == 0 {
                // Never ask past the hard limit: raising it needs a capability.
                let wanted = libc::rlimit {
                    rlim_cur: ZYGOTE_STACK_BYTES.min(current.rlim_max),
                    rlim_max: current.rlim_max,
                };
                libc::setrlimit(libc::RLIMIT_STACK, &raw const wanted);
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| SandboxError::ZygoteStart(format!("{}: {e}", executable.display())))?;
    drop(zygote_end);
    Ok(Launched {
        child,
        control: server_end,
    })
}
