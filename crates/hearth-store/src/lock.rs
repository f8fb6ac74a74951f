//! One pull (or removal) of a name at a time, across processes.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::name::ModelName;
use crate::StoreError;

/// Holds `<store>/locks/<name>.lock` locked (`flock`) until dropped. The
/// file records the holder's pid for the "in progress" message. The kernel
/// drops the lock when the process dies, so a crashed pull leaves no stale
/// lock. Lock files are never deleted: deleting one while another process
/// waits on it would let two holders in.
pub(crate) struct NameLock {
    _file: File,
}

impl NameLock {
    /// Takes the lock for `name`, or fails at once with
    /// [`StoreError::PullInProgress`] if another pull holds it.
    pub fn acquire(dir: &Path, name: &ModelName) -> Result<NameLock, StoreError> {
        std::fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
        let path = dir.join(format!("{name}.lock"));
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(StoreError::io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut s = String::new();
                let _ = file.read_to_string(&mut s);
                return Err(StoreError::PullInProgress {
                    name: name.to_string(),
                    pid: s.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(StoreError::io(&path)(e)),
        }
        let pid = std::process::id().to_string();
        let _ = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()));
        Ok(NameLock { _file: file })
    }
}
