//! One server per data directory.
//!
//! Two servers on one directory would share the database but not their
//! in-memory catalogs: each would serve what it alone was told, and a script
//! created through one would be missing from the other. An exclusive `flock`
//! on `picloud.lock`, held for the life of the process, makes the second one
//! refuse to start instead. The kernel drops the lock when the process ends,
//! however it ends, so a `kill -9` leaves nothing stale behind.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;

use anyhow::{Context as _, bail};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

const LOCK_FILE: &str = "picloud.lock";

/// Held while the server runs; dropping it releases the directory.
pub struct DataDirLock {
    _file: Flock<File>,
}

/// Creates `dir` (mode 0700) if needed and takes its lock, or explains who
/// holds it.
pub fn lock(dir: &Path) -> anyhow::Result<DataDirLock> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another picloud".to_owned()
            } else {
                format!("another picloud (pid {holder})")
            };
            bail!(
                "{who} is already using the data directory {}; give each server its own \
                 PICLOUD_DATA_DIR (or --data-dir)",
                dir.display()
            );
        }
        Err((_, e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    };
    // Who holds it, for the message above; the lock is what counts.
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{}", std::process::id()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_ends() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        let err = lock(dir.path()).err().unwrap().to_string();
        assert!(err.contains("already using the data directory"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        lock(dir.path()).unwrap();
    }
}
