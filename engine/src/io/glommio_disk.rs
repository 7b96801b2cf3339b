//! The real disk: glommio `DmaFile` (O_DIRECT through io_uring) in one directory.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use glommio::io::{Directory, DmaBuffer, DmaFile};

use super::write_thread::{AlignedBuf, WriteThread};
use super::{check_aligned, Disk, File, IoError, IoResult, OpenOptions, BLOCK_SIZE};

/// The name of the marker file used by the glommio #605 workaround. Names starting with a dot
/// are never listed by [`Disk::list`].
const PROBE_FILE_NAME: &str = ".keel-io-probe";

/// Size of the chunks [`File::zero_fill`] writes.
const ZERO_FILL_CHUNK_BYTES: u64 = 1 << 20;

fn os_error(op: &'static str, name: &str, error: impl Into<std::io::Error>) -> IoError {
    let source = error.into();
    if source.kind() == std::io::ErrorKind::NotFound {
        return IoError::NotFound {
            name: name.to_string(),
        };
    }
    IoError::Os {
        op,
        name: name.to_string(),
        source,
    }
}

/// A directory on a real file system, accessed with O_DIRECT through glommio.
///
/// Must be opened and used on one glommio executor thread.
#[derive(Clone)]
pub struct GlommioDisk {
    dir: PathBuf,
    dir_handle: Rc<Directory>,
    blocking_sync: bool,
    /// See [`GlommioDisk::with_write_thread`].
    write_thread: Option<Rc<WriteThread>>,
    /// See [`GlommioDisk::inline_writes`].
    inline: InlineWrites,
}

/// The switch of [`GlommioDisk::inline_writes`]: while on, the O_DSYNC writes of a disk with a
/// write thread are made on the calling executor's thread. Shared by the disk, its clones and
/// every file opened from them.
#[derive(Clone, Debug, Default)]
pub struct InlineWrites(Rc<Cell<bool>>);

impl InlineWrites {
    /// Turns inline writes on or off; writes already handed to the write thread finish there.
    pub fn set(&self, on: bool) {
        self.0.set(on);
    }

    /// True while writes are made inline.
    pub fn is_on(&self) -> bool {
        self.0.get()
    }
}

impl GlommioDisk {
    /// Opens (creating if needed) the directory `dir`.
    ///
    /// This also works around glommio bug #605: glommio probes polled-I/O support by reading
    /// 512 bytes from the first file opened on a device, and on a new empty file that probe
    /// wrongly succeeds and later reads fail with EOPNOTSUPP. Opening and reading a marker
    /// file of 4 KiB first makes the probe see a real file. Call this inside the executor
    /// that will use the disk.
    pub async fn open(dir: impl AsRef<Path>) -> IoResult<GlommioDisk> {
        let dir_name = dir.as_ref().display().to_string();
        // glommio's `Directory::open` fails with EBADF on a relative path (it resolves paths
        // against no directory), so every path is made absolute first.
        let dir = std::path::absolute(dir.as_ref())
            .map_err(|e| os_error("resolve path", &dir_name, e))?;
        std::fs::create_dir_all(&dir).map_err(|e| os_error("create dir", &dir_name, e))?;
        let probe_path = dir.join(PROBE_FILE_NAME);
        let probe_ok = std::fs::metadata(&probe_path)
            .map(|m| m.len() >= 512)
            .unwrap_or(false);
        if !probe_ok {
            std::fs::write(&probe_path, vec![0u8; BLOCK_SIZE])
                .map_err(|e| os_error("write", PROBE_FILE_NAME, e))?;
        }
        let probe = DmaFile::open(&probe_path)
            .await
            .map_err(|e| os_error("open", PROBE_FILE_NAME, e))?;
        probe
            .read_at_aligned(0, 512)
            .await
            .map_err(|e| os_error("read", PROBE_FILE_NAME, e))?;
        probe
            .close()
            .await
            .map_err(|e| os_error("close", PROBE_FILE_NAME, e))?;
        let dir_handle = Directory::open(&dir)
            .await
            .map_err(|e| os_error("open dir", &dir_name, e))?;
        Ok(GlommioDisk {
            dir,
            dir_handle: Rc::new(dir_handle),
            blocking_sync: false,
            write_thread: None,
            inline: InlineWrites::default(),
        })
    }

    /// Makes [`File::sync`] on files opened from now on call `fdatasync(2)` directly on the
    /// executor's thread instead of through io_uring.
    ///
    /// io_uring cannot run an fsync inline: the kernel hands it to an io-wq worker thread and
    /// wakes the ring when it is done, one extra thread handoff per sync. Measured in the
    /// server's sequential puts, the direct call cut the p50 by about 15 % (perf/results).
    /// The call blocks the whole executor for the duration of the sync, so use it only on an
    /// executor that has nothing else to do meanwhile (the server's raft core does not use it:
    /// its ticks and heartbeats must go on while a batch syncs).
    pub fn with_blocking_sync(mut self, blocking_sync: bool) -> GlommioDisk {
        self.blocking_sync = blocking_sync;
        self
    }

    /// Makes the writes of files opened from now on with O_DSYNC blocking `pwrite(2)` calls on
    /// a thread of their own, named `name`, instead of io_uring writes; other files keep
    /// io_uring. The executor does not wait: the write's future completes when the thread has
    /// written. Worth it where such writes are on the latency path (the WAL): an asynchronous
    /// O_DSYNC write finishes in a kernel worker bound to the CPU that took the disk's
    /// interrupt, and waits there behind any busy thread (see `write_thread.rs`).
    pub fn with_write_thread(mut self, name: &str) -> IoResult<GlommioDisk> {
        let thread =
            WriteThread::start(name).map_err(|e| os_error("start write thread", name, e))?;
        self.write_thread = Some(Rc::new(thread));
        Ok(self)
    }

    /// The switch that makes the write thread's writes blocking `pwrite(2)` calls on the
    /// executor's own thread instead (off at first), for files opened before or after. It
    /// saves the two cross-thread wake-ups of every hand-off, for an owner that has nothing
    /// else to do while a write lands (a raft core that is its cluster's only member: it has
    /// no peer to hear or heartbeat, and nothing can commit before the write anyway). The
    /// executor is blocked for the whole write.
    pub fn inline_writes(&self) -> InlineWrites {
        self.inline.clone()
    }

    /// The directory this disk works in.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// An aligned write buffer for [`GlommioFile`]: glommio's for io_uring writes, a heap buffer
/// that can move to the write thread for files that write there.
pub struct GlommioBuf(Buf);

enum Buf {
    Dma(DmaBuffer),
    Aligned(AlignedBuf),
}

impl AsRef<[u8]> for GlommioBuf {
    fn as_ref(&self) -> &[u8] {
        match &self.0 {
            Buf::Dma(buf) => buf.as_bytes(),
            Buf::Aligned(buf) => buf.as_ref(),
        }
    }
}

impl AsMut<[u8]> for GlommioBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        match &mut self.0 {
            Buf::Dma(buf) => buf.as_bytes_mut(),
            Buf::Aligned(buf) => buf.as_mut(),
        }
    }
}

/// A file of a [`GlommioDisk`].
pub struct GlommioFile {
    /// See [`GlommioDisk::with_blocking_sync`].
    blocking_sync: bool,
    file: DmaFile,
    name: String,
    /// Set for an O_DSYNC file of a disk with a write thread: the thread, and a duplicate of
    /// the descriptor that a write in flight keeps open however the file is closed.
    direct: Option<(Rc<WriteThread>, Arc<std::fs::File>)>,
    /// The disk's [`InlineWrites`] switch.
    inline: InlineWrites,
}

impl GlommioFile {
    fn dma_buf(&self, len: usize) -> DmaBuffer {
        let mut buf = self.file.alloc_dma_buffer(len);
        // DMA buffers come from a pool and may hold old bytes; padding must be zeros.
        buf.as_bytes_mut().fill(0);
        buf
    }

    /// A write of `buf` at `offset`: on the write thread or, when `inline`, by a blocking
    /// `pwrite(2)` on this thread for an O_DSYNC file of a disk with a write thread; through
    /// io_uring otherwise.
    async fn write_at_maybe_inline(
        &self,
        offset: u64,
        buf: GlommioBuf,
        inline: bool,
    ) -> IoResult<()> {
        let len = buf.as_ref().len();
        check_aligned(offset, len)?;
        let written = match (buf.0, &self.direct) {
            (Buf::Aligned(buf), Some((thread, file))) if inline => {
                let written = std::os::unix::fs::FileExt::write_at(&**file, buf.as_ref(), offset)
                    .map_err(|e| os_error("write", &self.name, e))?;
                thread.recycle(buf);
                written
            }
            (Buf::Aligned(buf), Some((thread, file))) => thread
                .write(file, offset, buf)
                .await
                .map_err(|e| os_error("write", &self.name, e))?,
            (buf, _) => {
                let dma = match buf {
                    Buf::Dma(dma) => dma,
                    // A buffer of another file's kind: io_uring needs glommio's.
                    Buf::Aligned(aligned) => {
                        let mut dma = self.dma_buf(len);
                        dma.as_bytes_mut().copy_from_slice(aligned.as_ref());
                        dma
                    }
                };
                self.file
                    .write_at(dma, offset)
                    .await
                    .map_err(|e| os_error("write", &self.name, e))?
            }
        };
        if written != len {
            // A short O_DIRECT write means the device could not take it all; treat it as EIO
            // because the caller must not assume any of it landed.
            return Err(IoError::from_errno("short write", &self.name, super::EIO));
        }
        Ok(())
    }
}

impl File for GlommioFile {
    type Buf = GlommioBuf;

    fn alloc_buf(&self, len: usize) -> GlommioBuf {
        match &self.direct {
            Some((thread, _)) => GlommioBuf(Buf::Aligned(thread.alloc_buf(len))),
            None => GlommioBuf(Buf::Dma(self.dma_buf(len))),
        }
    }

    async fn read_at(&self, offset: u64, len: usize) -> IoResult<Vec<u8>> {
        // glommio 0.9 does not shorten an unaligned read that crosses the end of the file (it
        // returns bytes past the end), so clamp to the file size first.
        let size = self.len().await?;
        let len = (len as u64).min(size.saturating_sub(offset)) as usize;
        if len == 0 {
            return Ok(Vec::new());
        }
        let result = self
            .file
            .read_at(offset, len)
            .await
            .map_err(|e| os_error("read", &self.name, e))?;
        Ok(result.to_vec())
    }

    async fn write_at(&self, offset: u64, buf: GlommioBuf) -> IoResult<()> {
        self.write_at_maybe_inline(offset, buf, self.inline.is_on())
            .await
    }

    async fn sync(&self) -> IoResult<()> {
        if self.blocking_sync {
            // SAFETY: fdatasync on the descriptor `self.file` owns and keeps open for the call.
            let rc = unsafe { libc::fdatasync(std::os::fd::AsRawFd::as_raw_fd(&self.file)) };
            if rc != 0 {
                let error = std::io::Error::last_os_error();
                return Err(os_error("fdatasync", &self.name, error));
            }
            return Ok(());
        }
        self.file
            .fdatasync()
            .await
            .map_err(|e| os_error("fdatasync", &self.name, e))
    }

    async fn len(&self) -> IoResult<u64> {
        self.file
            .file_size()
            .await
            .map_err(|e| os_error("stat", &self.name, e))
    }

    async fn allocate(&self, len: u64) -> IoResult<()> {
        if len <= self.len().await? {
            return Ok(());
        }
        self.file
            .pre_allocate(len, false)
            .await
            .map_err(|e| os_error("fallocate", &self.name, e))
    }

    async fn zero_fill(&self, len: u64) -> IoResult<()> {
        let current = self.len().await?;
        if len <= current {
            return Ok(());
        }
        check_aligned(current, (len - current) as usize)?;
        self.file
            .pre_allocate(len, false)
            .await
            .map_err(|e| os_error("fallocate", &self.name, e))?;
        let mut offset = current;
        while offset < len {
            let chunk = ZERO_FILL_CHUNK_BYTES.min(len - offset);
            let buf = self.alloc_buf(chunk as usize);
            // Megabytes of zeros never block the executor, inline switch or not.
            self.write_at_maybe_inline(offset, buf, false).await?;
            offset += chunk;
        }
        Ok(())
    }

    async fn close(self) -> IoResult<()> {
        self.file
            .close()
            .await
            .map_err(|e| os_error("close", &self.name, e))
    }
}

impl Disk for GlommioDisk {
    type File = GlommioFile;

    async fn open(&self, name: &str, options: OpenOptions) -> IoResult<GlommioFile> {
        let mut glommio_options = glommio::io::OpenOptions::new();
        glommio_options
            .read(true)
            .write(options.write || options.create)
            .create(options.create)
            .truncate(options.create);
        if options.dsync {
            glommio_options.custom_flags(libc::O_DSYNC);
        }
        let file = glommio_options
            .dma_open(self.dir.join(name))
            .await
            .map_err(|e| os_error("open", name, e))?;
        let direct = match &self.write_thread {
            Some(thread) if options.dsync => {
                // SAFETY: `file` owns this descriptor and keeps it open during the call.
                let borrowed = unsafe {
                    std::os::fd::BorrowedFd::borrow_raw(std::os::fd::AsRawFd::as_raw_fd(&file))
                };
                let fd = borrowed
                    .try_clone_to_owned()
                    .map_err(|e| os_error("dup", name, e))?;
                Some((thread.clone(), Arc::new(std::fs::File::from(fd))))
            }
            _ => None,
        };
        Ok(GlommioFile {
            file,
            name: name.to_string(),
            blocking_sync: self.blocking_sync,
            direct,
            inline: self.inline.clone(),
        })
    }

    async fn list(&self) -> IoResult<Vec<String>> {
        let dir_name = self.dir.display().to_string();
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| os_error("list", &dir_name, e))? {
            let entry = entry.map_err(|e| os_error("list", &dir_name, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    async fn remove(&self, name: &str) -> IoResult<()> {
        glommio::io::remove(self.dir.join(name))
            .await
            .map_err(|e| os_error("remove", name, e))
    }

    async fn rename(&self, from: &str, to: &str) -> IoResult<()> {
        glommio::io::rename(self.dir.join(from), self.dir.join(to))
            .await
            .map_err(|e| os_error("rename", from, e))
    }

    async fn sync_dir(&self) -> IoResult<()> {
        let dir_name = self.dir.display().to_string();
        self.dir_handle
            .sync()
            .await
            .map_err(|e| os_error("fsync dir", &dir_name, e))
    }
}
