//! A small async file abstraction for the storage engine.
//!
//! The engine runs on one glommio executor thread, so nothing here is `Send`. Two
//! implementations share the [`Disk`] and [`File`] traits:
//!
//! * [`GlommioDisk`]: the real one, on glommio's `DmaFile` (io_uring, O_DIRECT).
//! * [`SimDisk`]: an in-memory simulator driven by a seed. It keeps durable and unsynced bytes
//!   apart, loses unsynced data on [`SimDisk::crash`], may tear the last write at a 512-byte
//!   sector boundary, and injects EIO and ENOSPC.
//!
//! Writes must be aligned to [`BLOCK_SIZE`] in both offset and length, because O_DIRECT
//! refuses anything else; both implementations enforce it so that the simulator catches a
//! misaligned write long before a real disk does.
#![allow(async_fn_in_trait)]

mod glommio_disk;
mod sim;
mod write_thread;

pub use glommio_disk::{GlommioBuf, GlommioDisk, GlommioFile, InlineWrites};
pub use sim::{SeededRng, SimDisk, SimFile};

/// The alignment, in bytes, of every write's offset and length (O_DIRECT on a 4 KiB-block file
/// system).
pub const BLOCK_SIZE: usize = 4096;

/// The unit, in bytes, that the disk is assumed to write atomically: a torn write keeps a
/// prefix of whole sectors.
pub const SECTOR_SIZE: usize = 512;

/// Linux `EIO`.
pub const EIO: i32 = 5;
/// Linux `ENOSPC`.
pub const ENOSPC: i32 = 28;

/// Errors of the io layer.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// A write whose offset or length is not a multiple of [`BLOCK_SIZE`] (EINVAL under
    /// O_DIRECT). This is a bug in the caller, never a disk problem.
    #[error("misaligned write at offset {offset}, length {len}: O_DIRECT needs multiples of 4096")]
    Misaligned {
        /// The requested offset.
        offset: u64,
        /// The requested length.
        len: usize,
    },
    /// The named file does not exist.
    #[error("file not found: {name}")]
    NotFound {
        /// The file name within the disk's directory.
        name: String,
    },
    /// An error from the operating system (or one injected by the simulator).
    #[error("{op} {name}: {source}")]
    Os {
        /// The operation that failed, e.g. "write", "fdatasync".
        op: &'static str,
        /// The file (or directory) the operation was on.
        name: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl IoError {
    /// Builds an [`IoError::Os`] from a raw errno.
    pub fn from_errno(op: &'static str, name: &str, errno: i32) -> Self {
        IoError::Os {
            op,
            name: name.to_string(),
            source: std::io::Error::from_raw_os_error(errno),
        }
    }

    /// The raw errno, if this error came from the operating system (or the simulator).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            IoError::Os { source, .. } => source.raw_os_error(),
            IoError::Misaligned { .. } => Some(22),
            IoError::NotFound { .. } => Some(2),
        }
    }
}

/// Result alias of the io layer.
pub type IoResult<T> = Result<T, IoError>;

/// How to open a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Create the file if missing and truncate it to zero length if present.
    pub create: bool,
    /// Open for writing as well as reading.
    pub write: bool,
    /// Open with O_DSYNC: every write is durable when it returns, as if followed by a sync.
    pub dsync: bool,
}

impl OpenOptions {
    /// Read-only access to an existing file.
    pub fn read() -> Self {
        OpenOptions::default()
    }
    /// Read and write access to an existing file.
    pub fn read_write() -> Self {
        OpenOptions {
            write: true,
            ..OpenOptions::default()
        }
    }
    /// Create (or truncate) a file for reading and writing.
    pub fn create() -> Self {
        OpenOptions {
            create: true,
            write: true,
            dsync: false,
        }
    }
    /// The same options with O_DSYNC set as given.
    pub fn with_dsync(self, dsync: bool) -> Self {
        OpenOptions { dsync, ..self }
    }
}

/// One open file.
// `len` is an async stat of a file, not a collection length; an `is_empty` would add nothing.
#[allow(clippy::len_without_is_empty)]
pub trait File {
    /// A write buffer suitable for this file (aligned for O_DIRECT on the real disk).
    type Buf: AsRef<[u8]> + AsMut<[u8]>;

    /// Allocates a zeroed write buffer of `len` bytes.
    fn alloc_buf(&self, len: usize) -> Self::Buf;

    /// Reads up to `len` bytes at `offset`; the result is shorter only at the end of the file.
    /// Reads need no alignment.
    async fn read_at(&self, offset: u64, len: usize) -> IoResult<Vec<u8>>;

    /// Writes the whole buffer at `offset`. Offset and length must be multiples of
    /// [`BLOCK_SIZE`]. Not durable until [`File::sync`] returns, unless opened with O_DSYNC.
    async fn write_at(&self, offset: u64, buf: Self::Buf) -> IoResult<()>;

    /// Makes every completed write durable (fdatasync).
    async fn sync(&self) -> IoResult<()>;

    /// The file's current length in bytes.
    async fn len(&self) -> IoResult<u64>;

    /// Reserves space so the file is `len` bytes long (fallocate), without writing. The new
    /// range reads as zeros. Not durable until synced.
    async fn allocate(&self, len: u64) -> IoResult<()>;

    /// Extends the file to `len` bytes (a multiple of [`BLOCK_SIZE`]) by writing zeros, so that
    /// later writes land in allocated, already-written blocks. Not durable until synced.
    async fn zero_fill(&self, len: u64) -> IoResult<()>;

    /// Closes the file.
    async fn close(self) -> IoResult<()>;
}

/// A directory of files: the namespace the WAL and checkpoints live in.
pub trait Disk {
    /// The file type of this disk.
    type File: File;

    /// Opens (or with [`OpenOptions::create`], creates) the file `name` in this directory.
    async fn open(&self, name: &str, options: OpenOptions) -> IoResult<Self::File>;

    /// Lists the names of the files in this directory, sorted.
    async fn list(&self) -> IoResult<Vec<String>>;

    /// Removes the file `name`. Durable after [`Disk::sync_dir`].
    async fn remove(&self, name: &str) -> IoResult<()>;

    /// Renames `from` to `to`, replacing `to`. Durable after [`Disk::sync_dir`].
    async fn rename(&self, from: &str, to: &str) -> IoResult<()>;

    /// Makes creations, renames and removals in this directory durable (fsync of the
    /// directory).
    async fn sync_dir(&self) -> IoResult<()>;
}

/// Checks the O_DIRECT alignment rule shared by both implementations.
pub(crate) fn check_aligned(offset: u64, len: usize) -> IoResult<()> {
    if offset % BLOCK_SIZE as u64 != 0 || len % BLOCK_SIZE != 0 {
        return Err(IoError::Misaligned { offset, len });
    }
    Ok(())
}
