//! The data directory: its layout, its lock and its format marker.
//!
//! ```text
//! <data-dir>/
//!   keel.lock            flock(2)ed by the running server; a second process fails fast
//!   member/
//!     keel-format        "keel-data-dir <version>\n": the layout version of this directory
//!     wal/               write-ahead log segments (engine/FORMAT.md)
//!     snap/              checkpoints of the store (engine/FORMAT.md)
//! ```
//!
//! A directory written by upstream etcd (it has `member/snap/db`) or by a newer Keel is
//! refused with an error, never overwritten.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The data directory layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_FILE: &str = "keel-format";
const FORMAT_PREFIX: &str = "keel-data-dir ";

/// Why a data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Another process holds the lock.
    #[error(
        "data dir {0} is in use by another process (lock file {0}/keel.lock is held); \
         stop that process or choose another --data-dir"
    )]
    Locked(PathBuf),
    /// The directory belongs to upstream etcd.
    #[error(
        "data dir {0} holds an etcd bbolt database (member/snap/db), which keel cannot read; \
         restore a snapshot into a new keel data dir instead"
    )]
    ForeignEtcd(PathBuf),
    /// The directory was written by a newer or unknown format.
    #[error("data dir {path} has format {found:?}; this keel reads version {FORMAT_VERSION} only")]
    UnknownFormat {
        /// The directory.
        path: PathBuf,
        /// The marker found.
        found: String,
    },
    /// The directory has files but no format marker.
    #[error("data dir {0} is not empty and has no keel format marker (member/keel-format); refusing to use it")]
    NotKeel(PathBuf),
    /// An I/O error on the directory.
    #[error("data dir {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// An opened, locked data directory. The lock is held until this value is dropped.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    _lock: File,
    /// True when the directory was created empty by this open.
    pub fresh: bool,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl DataDir {
    /// Opens (creating if needed) and locks the data directory at `root`.
    pub fn open(root: &Path) -> Result<DataDir, DataDirError> {
        fs::create_dir_all(root).map_err(io_error(root))?;
        let lock_path = root.join("keel.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        // SAFETY: flock is called on a file descriptor owned by `lock`, alive for the call.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(DataDirError::Locked(root.to_path_buf()));
            }
            return Err(DataDirError::Io {
                path: lock_path,
                source: error,
            });
        }

        let member = root.join("member");
        if member.join("snap").join("db").exists() {
            return Err(DataDirError::ForeignEtcd(root.to_path_buf()));
        }
        let marker = member.join(FORMAT_FILE);
        let fresh = match fs::read_to_string(&marker) {
            Ok(text) => {
                let version = text
                    .strip_prefix(FORMAT_PREFIX)
                    .and_then(|v| v.trim().parse::<u32>().ok());
                if version != Some(FORMAT_VERSION) {
                    return Err(DataDirError::UnknownFormat {
                        path: root.to_path_buf(),
                        found: text.trim().to_string(),
                    });
                }
                false
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let has_other_files = fs::read_dir(root)
                    .map_err(io_error(root))?
                    .filter_map(Result::ok)
                    .any(|entry| entry.file_name() != "keel.lock");
                if has_other_files {
                    return Err(DataDirError::NotKeel(root.to_path_buf()));
                }
                for dir in [member.join("wal"), member.join("snap")] {
                    fs::create_dir_all(&dir).map_err(io_error(&dir))?;
                }
                let temp = member.join(format!("{FORMAT_FILE}.tmp"));
                let mut file = File::create(&temp).map_err(io_error(&temp))?;
                writeln!(file, "{FORMAT_PREFIX}{FORMAT_VERSION}").map_err(io_error(&temp))?;
                file.sync_all().map_err(io_error(&temp))?;
                fs::rename(&temp, &marker).map_err(io_error(&marker))?;
                File::open(&member)
                    .and_then(|d| d.sync_all())
                    .map_err(io_error(&member))?;
                true
            }
            Err(error) => {
                return Err(DataDirError::Io {
                    path: marker,
                    source: error,
                })
            }
        };
        Ok(DataDir {
            root: root.to_path_buf(),
            _lock: lock,
            fresh,
        })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the WAL segments live.
    pub fn wal_dir(&self) -> PathBuf {
        self.root.join("member").join("wal")
    }

    /// Where checkpoints live.
    pub fn snap_dir(&self) -> PathBuf {
        self.root.join("member").join("snap")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "keel-datadir-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn second_open_is_refused_while_locked() {
        let dir = temp_dir("lock");
        let first = DataDir::open(&dir).unwrap();
        assert!(first.fresh);
        let error = DataDir::open(&dir).unwrap_err();
        assert!(matches!(error, DataDirError::Locked(_)), "{error}");
        drop(first);
        let again = DataDir::open(&dir).unwrap();
        assert!(!again.fresh);
        drop(again);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn foreign_and_newer_dirs_are_refused() {
        let dir = temp_dir("foreign");
        fs::create_dir_all(dir.join("member/snap")).unwrap();
        fs::write(dir.join("member/snap/db"), b"bolt").unwrap();
        assert!(matches!(
            DataDir::open(&dir).unwrap_err(),
            DataDirError::ForeignEtcd(_)
        ));
        fs::remove_dir_all(&dir).unwrap();

        let dir = temp_dir("newer");
        fs::create_dir_all(dir.join("member")).unwrap();
        fs::write(dir.join("member/keel-format"), "keel-data-dir 99\n").unwrap();
        assert!(matches!(
            DataDir::open(&dir).unwrap_err(),
            DataDirError::UnknownFormat { .. }
        ));
        fs::remove_dir_all(&dir).unwrap();

        let dir = temp_dir("other");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("precious.txt"), "data").unwrap();
        assert!(matches!(
            DataDir::open(&dir).unwrap_err(),
            DataDirError::NotKeel(_)
        ));
        assert_eq!(
            fs::read_to_string(dir.join("precious.txt")).unwrap(),
            "data"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
