//! Layer 2: no root, no capabilities.
//!
//! Invariants after [`apply`]: when the process started as root, its real,
//! effective and saved uid and gid are the worker account's (never 0), it
//! has no supplementary groups and (given `CAP_SETPCAP`) an empty bounding
//! set; in every case its permitted, effective, inheritable and ambient
//! capability sets are empty. The account is resolved before fork
//! ([`WorkerIdentity::resolve`]), because looking it up reads files.

use nix::errno::Errno;
use nix::unistd::{Gid, Group, Uid, User};
use serde::{Deserialize, Serialize};

use super::{Applied, ConfineError, ConfinementPlan, Layer, LayerStatus};

const LAYER: Layer = Layer::Privileges;

/// The unprivileged account a worker runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerIdentity {
    pub uid: u32,
    pub gid: u32,
}

impl WorkerIdentity {
    pub const DEFAULT_USER: &'static str = "nobody";
    pub const DEFAULT_GROUP: &'static str = "nogroup";

    /// Resolves `user`, `user:group`, `uid` or `uid:gid` (`None` means
    /// `nobody:nogroup`, or nobody's own group where `nogroup` does not
    /// exist). Without a group the user's primary group is used. Root (uid
    /// or gid 0) is refused.
    pub fn resolve(spec: Option<&str>) -> Result<Self, ConfineError> {
        let (user, group) = match spec.map(str::trim) {
            None | Some("") => (Self::DEFAULT_USER, Some(Self::DEFAULT_GROUP)),
            Some(spec) => match spec.split_once(':') {
                Some((user, group)) => (user, Some(group)),
                None => (spec, None),
            },
        };
        let err = |reason| ConfineError::WorkerUser {
            spec: spec
                .unwrap_or(Self::DEFAULT_USER)
                .chars()
                .take(64)
                .collect(),
            reason,
        };
        let (uid, primary_gid) = lookup_user(user).map_err(err)?;
        let gid = match group {
            Some(group) => match lookup_group(group) {
                Ok(gid) => gid,
                // Distributions without `nogroup` give nobody its own group.
                Err(_) if spec.is_none() => {
                    primary_gid.ok_or_else(|| err("no group `nogroup` and no primary group"))?
                }
                Err(reason) => return Err(err(reason)),
            },
            None => primary_gid.ok_or_else(|| err("a numeric uid needs a `:gid`"))?,
        };
        if uid == 0 || gid == 0 {
            return Err(err("workers must not run as root"));
        }
        Ok(Self { uid, gid })
    }
}

fn lookup_user(user: &str) -> Result<(u32, Option<u32>), &'static str> {
    if let Ok(uid) = user.parse::<u32>() {
        let primary = User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.gid.as_raw());
        return Ok((uid, primary));
    }
    match User::from_name(user) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), Some(u.gid.as_raw()))),
        Ok(None) => Err("no such user"),
        Err(_) => Err("the user database could not be read"),
    }
}

fn lookup_group(group: &str) -> Result<u32, &'static str> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err("no such group"),
        Err(_) => Err("the group database could not be read"),
    }
}

pub(super) fn apply(plan: &ConfinementPlan) -> Result<Applied, ConfineError> {
    let status = if let Some(id) = plan.identity {
        if !bounding_set_is_empty() {
            drop_bounding_set()?;
        }
        switch_identity(id)?;
        LayerStatus::Applied
    } else if nix::unistd::geteuid().is_root() {
        // A plan built by a non-root process but applied by root cannot know
        // whom to become.
        return Err(ConfineError::NotInEffect {
            layer: LAYER,
            what: "running as root but the plan has no worker identity",
        });
    } else {
        LayerStatus::NotNeeded
    };
    clear_capabilities()?;
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    Ok(Applied {
        status,
        detail: Some(format!("uid {uid} gid {gid}, no capabilities")),
    })
}

/// Empties the capability bounding set of a process that forks workers, so
/// each worker inherits it empty and its privileges layer only checks it:
/// one drop is a credential change, and a worker would otherwise pay about
/// forty of them. The bounding set limits only what `execve` can grant;
/// the caller keeps the capabilities it holds (the zygote still needs
/// `CAP_SETUID` to hand workers their identity).
pub(crate) fn drop_bounding_set_for_children() -> Result<(), ConfineError> {
    drop_bounding_set()
}

/// Whether no capability is left in the bounding set (reading it changes
/// no credentials, unlike dropping).
fn bounding_set_is_empty() -> bool {
    for cap in 0..=63 {
        // SAFETY: prctl with integer arguments only.
        match unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) } {
            0 => {}
            // Past the last capability this kernel knows.
            r if r < 0 => return Errno::last() == Errno::EINVAL,
            _ => return false,
        }
    }
    true
}

fn drop_bounding_set() -> Result<(), ConfineError> {
    for cap in 0..=63 {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            // EINVAL: past the last capability this kernel knows. EPERM: no
            // CAP_SETPCAP (some container runtimes); the uid switch below
            // still empties every set, and no_new_privs keeps exec from
            // refilling them.
            return match Errno::last() {
                Errno::EINVAL | Errno::EPERM => Ok(()),
                errno => Err(ConfineError::sys(LAYER, "prctl(PR_CAPBSET_DROP)", errno)),
            };
        }
    }
    Ok(())
}

fn switch_identity(id: WorkerIdentity) -> Result<(), ConfineError> {
    let (uid, gid) = (Uid::from_raw(id.uid), Gid::from_raw(id.gid));
    nix::unistd::setgroups(&[]).map_err(|e| ConfineError::sys(LAYER, "setgroups", e))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| ConfineError::sys(LAYER, "setresgid", e))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| ConfineError::sys(LAYER, "setresuid", e))?;
    let uids = nix::unistd::getresuid().map_err(|e| ConfineError::sys(LAYER, "getresuid", e))?;
    let gids = nix::unistd::getresgid().map_err(|e| ConfineError::sys(LAYER, "getresgid", e))?;
    let groups = nix::unistd::getgroups().map_err(|e| ConfineError::sys(LAYER, "getgroups", e))?;
    if [uids.real, uids.effective, uids.saved] != [uid; 3]
        || [gids.real, gids.effective, gids.saved] != [gid; 3]
        || !groups.is_empty()
    {
        return Err(ConfineError::NotInEffect {
            layer: LAYER,
            what: "uid, gid or groups did not change",
        });
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

fn clear_capabilities() -> Result<(), ConfineError> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    // EINVAL: a kernel without ambient capabilities (before 4.3).
    if rc != 0 && Errno::last() != Errno::EINVAL {
        return Err(ConfineError::last(LAYER, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)"));
    }
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let empty = [CapData::default(); 2];
    // SAFETY: header and data have the layout of the v3 capset ABI.
    if unsafe { libc::syscall(libc::SYS_capset, &raw mut header, empty.as_ptr()) } != 0 {
        return Err(ConfineError::last(LAYER, "capset"));
    }
    let mut now = [CapData {
        effective: u32::MAX,
        permitted: u32::MAX,
        inheritable: u32::MAX,
    }; 2];
    // SAFETY: as above; capget writes two CapData.
    if unsafe { libc::syscall(libc::SYS_capget, &raw mut header, now.as_mut_ptr()) } != 0 {
        return Err(ConfineError::last(LAYER, "capget"));
    }
    if now != empty {
        return Err(ConfineError::NotInEffect {
            layer: LAYER,
            what: "capabilities remain after capset",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_nobody_and_never_root() {
        let id = WorkerIdentity::resolve(None).unwrap();
        assert_ne!(id.uid, 0);
        assert_ne!(id.gid, 0);
        let nobody = User::from_name("nobody").unwrap().unwrap();
        assert_eq!(id.uid, nobody.uid.as_raw());
    }

    #[test]
    fn parses_names_and_numbers() {
        assert_eq!(
            WorkerIdentity::resolve(Some("12345:23456")).unwrap(),
            WorkerIdentity {
                uid: 12345,
                gid: 23456
            }
        );
        let nobody = User::from_name("nobody").unwrap().unwrap();
        assert_eq!(
            WorkerIdentity::resolve(Some("nobody")).unwrap().gid,
            nobody.gid.as_raw()
        );
    }

    #[test]
    fn refuses_root_and_unknown_names() {
        assert!(WorkerIdentity::resolve(Some("root")).is_err());
        assert!(WorkerIdentity::resolve(Some("0:1")).is_err());
        assert!(WorkerIdentity::resolve(Some("1:0")).is_err());
        assert!(WorkerIdentity::resolve(Some("no-such-user-picloud")).is_err());
        assert!(WorkerIdentity::resolve(Some("nobody:no-such-group-picloud")).is_err());
        // A numeric uid with no passwd entry has no primary group to fall back on.
        assert!(WorkerIdentity::resolve(Some("54321")).is_err());
    }

    /// What the zygote does once (empty its bounding set) reaches every
    /// worker it forks, whose privileges layer then finds nothing to drop.
    #[test]
    fn a_prepared_parent_hands_its_children_an_empty_bounding_set() {
        use nix::sys::wait::{WaitStatus, waitpid};
        use nix::unistd::{ForkResult, fork};
        if !nix::unistd::geteuid().is_root() || bounding_set_is_empty() {
            eprintln!("skipped: needs root with a non-empty bounding set");
            return;
        }
        let exit_code = |child| match waitpid(child, None).unwrap() {
            WaitStatus::Exited(_, code) => code,
            other => panic!("{other:?}"),
        };
        // SAFETY: the children only call prctl, fork, waitpid and _exit.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let mut code = 1;
                if drop_bounding_set_for_children().is_ok() && bounding_set_is_empty() {
                    // SAFETY: as above.
                    code = match unsafe { fork() } {
                        Ok(ForkResult::Child) => unsafe {
                            libc::_exit(if bounding_set_is_empty() { 0 } else { 2 })
                        },
                        Ok(ForkResult::Parent { child }) => exit_code(child),
                        Err(_) => 3,
                    };
                }
                // SAFETY: ends the forked test child without running the harness's atexit.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => assert_eq!(exit_code(child), 0),
        }
        assert!(
            !bounding_set_is_empty(),
            "the test process itself is untouched"
        );
    }
}
