//! Checkpoint files: an opaque payload (the MVCC store's `encode_checkpoint()` bytes) stamped
//! with the raft applied index it reflects.
//!
//! A checkpoint is written to a temporary file, synced, renamed into place and the directory
//! synced, so a file with the final name is complete or damaged, never half-written. The two
//! newest checkpoints are kept. The layout is specified in `engine/FORMAT.md`.

use crate::io::{Disk, File, IoError, OpenOptions, BLOCK_SIZE};

const MAGIC: &[u8; 8] = b"KEELCKPT";
const FORMAT_VERSION: u32 = 1;
/// Bytes of the header; the payload starts right after.
const HEADER_BYTES: usize = 64;
/// Bytes of the header covered by the header CRC.
const HEADER_CRC_OFFSET: usize = 36;
const PREFIX: &str = "checkpoint-";
const SUFFIX: &str = ".ckpt";
const TMP_SUFFIX: &str = ".ckpt.tmp";
/// How many checkpoint files [`save`] keeps.
pub const CHECKPOINTS_KEPT: usize = 2;
/// Bytes a checkpoint file is written in at a time ([`CheckpointWriter`], which [`save`]
/// uses): the WAL's small writes to the same device never queue behind more than one such
/// write (one write of a whole 350 MB checkpoint held the WAL's syncs for half a second).
pub const WRITE_CHUNK_BYTES: usize = 1024 * 1024;

/// Errors of checkpoint files.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The disk failed.
    #[error("checkpoint I/O error: {0}")]
    Io(#[from] IoError),
    /// A checkpoint file is damaged and no older valid one exists.
    #[error("checkpoint {file} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        file: String,
        /// What was wrong.
        reason: String,
    },
}

/// The file name of the checkpoint at `applied_index`.
pub fn file_name(applied_index: u64) -> String {
    format!("{PREFIX}{applied_index:016x}{SUFFIX}")
}

fn parse_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The applied indexes of the checkpoint files present (valid or not), newest first.
pub async fn list<D: Disk>(disk: &D) -> Result<Vec<u64>, CheckpointError> {
    let mut indexes: Vec<u64> = disk
        .list()
        .await?
        .iter()
        .filter_map(|name| parse_file_name(name))
        .collect();
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    Ok(indexes)
}

/// Durably writes the checkpoint for `applied_index`, then deletes all but the newest
/// [`CHECKPOINTS_KEPT`] checkpoints and any leftover temporary files.
pub async fn save<D: Disk>(
    disk: &D,
    applied_index: u64,
    payload: &[u8],
) -> Result<(), CheckpointError> {
    save_parts(disk, applied_index, &[payload]).await
}

/// [`save`] of a payload given as consecutive parts (written as their concatenation, which
/// is never built in memory).
pub async fn save_parts<D: Disk>(
    disk: &D,
    applied_index: u64,
    parts: &[&[u8]],
) -> Result<(), CheckpointError> {
    let mut writer = CheckpointWriter::create(disk, applied_index, 0).await?;
    for part in parts {
        if let Err(error) = writer.append(part).await {
            writer.abandon().await;
            return Err(error);
        }
    }
    writer.finish(&[]).await.map(|_| ())
}

/// A checkpoint file written as its payload is produced, so the payload is never whole in
/// memory: [`CheckpointWriter::append`] the payload in order, then
/// [`CheckpointWriter::finish`], which makes it durable and in place as [`save`] does. The
/// first `held` payload bytes (a header only known at the end) are given to `finish`: what
/// is appended in their place is ignored.
///
/// The file image (the file header, the payload, zeros up to a whole block) is written a
/// chunk of [`WRITE_CHUNK_BYTES`] at a time, one write in flight, except its first blocks up
/// to the end of the held bytes, which are kept in memory and written last. After an error
/// the writer only refuses: give it up with [`CheckpointWriter::abandon`]; a failed
/// [`CheckpointWriter::finish`] removes the temporary file itself.
pub struct CheckpointWriter<'d, D: Disk> {
    disk: &'d D,
    file: D::File,
    applied_index: u64,
    tmp_name: String,
    held: usize,
    /// The image's first `first.len()` bytes (the held bytes' end rounded up to a block).
    first: Vec<u8>,
    /// The chunk being filled and where in the image it starts.
    chunk: Option<(<D::File as File>::Buf, u64)>,
    /// Payload bytes appended so far.
    payload_len: usize,
    /// CRC of the payload bytes after the held ones.
    crc_after_held: crc32fast::Hasher,
    /// An append failed: what was written no longer matches the counts above.
    failed: bool,
}

impl<'d, D: Disk> CheckpointWriter<'d, D> {
    /// Creates the temporary file of checkpoint `applied_index` on `disk`.
    pub async fn create(
        disk: &'d D,
        applied_index: u64,
        held: usize,
    ) -> Result<CheckpointWriter<'d, D>, CheckpointError> {
        let tmp_name = format!("{PREFIX}{applied_index:016x}{TMP_SUFFIX}");
        let file = disk.open(&tmp_name, OpenOptions::create()).await?;
        Ok(CheckpointWriter {
            disk,
            file,
            applied_index,
            tmp_name,
            held,
            first: vec![0; (HEADER_BYTES + held).div_ceil(BLOCK_SIZE) * BLOCK_SIZE],
            chunk: None,
            payload_len: 0,
            crc_after_held: crc32fast::Hasher::new(),
            failed: false,
        })
    }

    /// Payload bytes appended so far.
    pub fn payload_len(&self) -> usize {
        self.payload_len
    }

    /// Appends the next payload bytes; writes each chunk as it fills.
    pub async fn append(&mut self, bytes: &[u8]) -> Result<(), CheckpointError> {
        if self.failed {
            return Err(self.failed_before());
        }
        let appended = self.append_bytes(bytes).await;
        self.failed = appended.is_err();
        appended
    }

    fn failed_before(&self) -> CheckpointError {
        CheckpointError::Io(IoError::Os {
            op: "write",
            name: self.tmp_name.clone(),
            source: std::io::Error::other("an earlier write of this checkpoint failed"),
        })
    }

    async fn append_bytes(&mut self, mut bytes: &[u8]) -> Result<(), CheckpointError> {
        let skip = self.held.saturating_sub(self.payload_len).min(bytes.len());
        self.crc_after_held.update(&bytes[skip..]);
        while !bytes.is_empty() {
            let at = HEADER_BYTES + self.payload_len;
            let taken = if at < self.first.len() {
                let n = (self.first.len() - at).min(bytes.len());
                self.first[at..at + n].copy_from_slice(&bytes[..n]);
                n
            } else {
                let (buf, start) = self
                    .chunk
                    .get_or_insert_with(|| (self.file.alloc_buf(WRITE_CHUNK_BYTES), at as u64));
                let filled = at - *start as usize;
                let n = (WRITE_CHUNK_BYTES - filled).min(bytes.len());
                buf.as_mut()[filled..filled + n].copy_from_slice(&bytes[..n]);
                if filled + n == WRITE_CHUNK_BYTES {
                    let (buf, start) = self.chunk.take().expect("just filled");
                    self.file.write_at(start, buf).await?;
                }
                n
            };
            self.payload_len += taken;
            bytes = &bytes[taken..];
        }
        Ok(())
    }

    /// Writes the rest with `held` (the payload's first bytes) in place, makes the file
    /// durable under its final name, and deletes all but the newest [`CHECKPOINTS_KEPT`]
    /// checkpoints and any leftover temporary files. Returns the payload's length.
    pub async fn finish(mut self, held: &[u8]) -> Result<u64, CheckpointError> {
        assert_eq!(held.len(), self.held, "the held bytes of a checkpoint");
        assert!(
            self.payload_len >= self.held,
            "a checkpoint shorter than its held bytes"
        );
        let written = if self.failed {
            Err(self.failed_before())
        } else {
            self.write_rest(held).await
        };
        let closed = self.file.close().await.map_err(CheckpointError::from);
        let renamed = match written.and(closed) {
            Ok(()) => self
                .disk
                .rename(&self.tmp_name, &file_name(self.applied_index))
                .await
                .map_err(CheckpointError::from),
            Err(error) => Err(error),
        };
        if let Err(error) = renamed {
            // A checkpoint's worth of disk is not left behind (a full disk would keep failing).
            let _ = self.disk.remove(&self.tmp_name).await;
            return Err(error);
        }
        self.disk.sync_dir().await?;
        remove_old(self.disk).await?;
        Ok(self.payload_len as u64)
    }

    async fn write_rest(&mut self, held: &[u8]) -> Result<(), CheckpointError> {
        let image_len = HEADER_BYTES + self.payload_len;
        if let Some((buf, start)) = self.chunk.take() {
            let len = (image_len - start as usize).div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
            let mut last = self.file.alloc_buf(len);
            last.as_mut().copy_from_slice(&buf.as_ref()[..len]);
            self.file.write_at(start, last).await?;
        }
        let first_len = self
            .first
            .len()
            .min(image_len.div_ceil(BLOCK_SIZE) * BLOCK_SIZE);
        self.first[HEADER_BYTES..HEADER_BYTES + held.len()].copy_from_slice(held);
        let mut crc = crc32fast::Hasher::new();
        crc.update(held);
        crc.combine(&self.crc_after_held);
        let header = &mut self.first[..HEADER_BYTES];
        header.fill(0);
        header[0..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        header[16..24].copy_from_slice(&self.applied_index.to_le_bytes());
        header[24..32].copy_from_slice(&(self.payload_len as u64).to_le_bytes());
        header[32..36].copy_from_slice(&crc.finalize().to_le_bytes());
        let header_crc = crc32fast::hash(&header[0..HEADER_CRC_OFFSET]);
        header[36..40].copy_from_slice(&header_crc.to_le_bytes());
        // Large metadata (many users and roles) can make the held blocks longer than a chunk.
        for start in (0..first_len).step_by(WRITE_CHUNK_BYTES) {
            let end = (start + WRITE_CHUNK_BYTES).min(first_len);
            let mut buf = self.file.alloc_buf(end - start);
            buf.as_mut().copy_from_slice(&self.first[start..end]);
            self.file.write_at(start as u64, buf).await?;
        }
        self.file.sync().await?;
        Ok(())
    }

    /// Gives the file up (closed and removed; errors ignored: the next save removes what is
    /// left).
    pub async fn abandon(self) {
        let _ = self.file.close().await;
        let _ = self.disk.remove(&self.tmp_name).await;
    }
}

/// Deletes leftover temporary files and all but the newest [`CHECKPOINTS_KEPT`] checkpoints.
async fn remove_old<D: Disk>(disk: &D) -> Result<(), CheckpointError> {
    let mut removed = false;
    for name in disk.list().await? {
        if name.starts_with(PREFIX) && name.ends_with(TMP_SUFFIX) {
            disk.remove(&name).await?;
            removed = true;
        }
    }
    for old in list(disk).await?.into_iter().skip(CHECKPOINTS_KEPT) {
        disk.remove(&file_name(old)).await?;
        removed = true;
    }
    if removed {
        disk.sync_dir().await?;
    }
    Ok(())
}

/// Reads and verifies one checkpoint file.
pub async fn load<D: Disk>(disk: &D, applied_index: u64) -> Result<Vec<u8>, CheckpointError> {
    let name = file_name(applied_index);
    let corrupt = |reason: String| CheckpointError::Corrupt {
        file: name.clone(),
        reason,
    };
    let file = disk.open(&name, OpenOptions::read()).await?;
    let len = file.len().await?;
    let data = file.read_at(0, len as usize).await?;
    file.close().await?;
    if data.len() < HEADER_BYTES {
        return Err(corrupt(format!(
            "file of {} bytes is shorter than its header",
            data.len()
        )));
    }
    if &data[0..8] != MAGIC {
        return Err(corrupt("bad magic".to_string()));
    }
    let stored_header_crc = u32::from_le_bytes(data[36..40].try_into().expect("4 bytes"));
    if crc32fast::hash(&data[0..HEADER_CRC_OFFSET]) != stored_header_crc {
        return Err(corrupt("header checksum mismatch".to_string()));
    }
    let version = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "unsupported checkpoint format version {version}"
        )));
    }
    let header_index = u64::from_le_bytes(data[16..24].try_into().expect("8 bytes"));
    if header_index != applied_index {
        return Err(corrupt(format!("header says applied index {header_index}")));
    }
    let payload_len = u64::from_le_bytes(data[24..32].try_into().expect("8 bytes"));
    if payload_len > (data.len() - HEADER_BYTES) as u64 {
        return Err(corrupt(format!(
            "payload length {payload_len} exceeds the file"
        )));
    }
    let payload = &data[HEADER_BYTES..HEADER_BYTES + payload_len as usize];
    let payload_crc = u32::from_le_bytes(data[32..36].try_into().expect("4 bytes"));
    if crc32fast::hash(payload) != payload_crc {
        return Err(corrupt("payload checksum mismatch".to_string()));
    }
    Ok(payload.to_vec())
}

/// Loads the newest valid checkpoint as `(applied_index, payload)`, or None if there is no
/// checkpoint file. If the newest is damaged, an older valid one is returned instead (the WAL
/// must therefore be kept back to the oldest kept checkpoint); if none is valid, the newest
/// one's error is returned.
pub async fn load_latest<D: Disk>(disk: &D) -> Result<Option<(u64, Vec<u8>)>, CheckpointError> {
    let mut first_error = None;
    for applied_index in list(disk).await? {
        match load(disk, applied_index).await {
            Ok(payload) => return Ok(Some((applied_index, payload))),
            Err(CheckpointError::Corrupt { file, reason }) => {
                first_error.get_or_insert(CheckpointError::Corrupt { file, reason });
            }
            Err(other) => return Err(other),
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        assert_eq!(file_name(0x10), "checkpoint-0000000000000010.ckpt");
        assert_eq!(parse_file_name(&file_name(77)), Some(77));
        assert_eq!(
            parse_file_name("checkpoint-0000000000000010.ckpt.tmp"),
            None
        );
    }
}
