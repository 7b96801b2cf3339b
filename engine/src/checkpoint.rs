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
/// Bytes [`save`] writes at a time: the WAL's small writes to the same device never queue
/// behind more than one such write (one write of a whole 350 MB checkpoint held the WAL's
/// syncs for half a second).
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
    let payload_len: usize = parts.iter().map(|p| p.len()).sum();
    let mut crc = crc32fast::Hasher::new();
    for part in parts {
        crc.update(part);
    }
    let name = file_name(applied_index);
    let tmp_name = format!("{PREFIX}{applied_index:016x}{TMP_SUFFIX}");
    let image_len = HEADER_BYTES + payload_len;
    let total = image_len.div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
    let mut header = [0u8; HEADER_BYTES];
    header[0..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&applied_index.to_le_bytes());
    header[24..32].copy_from_slice(&(payload_len as u64).to_le_bytes());
    header[32..36].copy_from_slice(&crc.finalize().to_le_bytes());
    let header_crc = crc32fast::hash(&header[0..HEADER_CRC_OFFSET]);
    header[36..40].copy_from_slice(&header_crc.to_le_bytes());
    let file = disk.open(&tmp_name, OpenOptions::create()).await?;
    // The file image is the header, the payload, then zeros up to a whole block; it is
    // written a chunk at a time, one write in flight.
    let mut offset = 0;
    while offset < total {
        let len = WRITE_CHUNK_BYTES.min(total - offset);
        let mut buf = file.alloc_buf(len);
        let bytes = buf.as_mut();
        bytes.fill(0);
        // Copy the part of each piece of the image that falls into [offset, offset + len).
        let mut piece_start = 0;
        for piece in std::iter::once(&header[..]).chain(parts.iter().copied()) {
            let piece_end = piece_start + piece.len();
            let (start, end) = (offset.max(piece_start), (offset + len).min(piece_end));
            if start < end {
                bytes[start - offset..end - offset]
                    .copy_from_slice(&piece[start - piece_start..end - piece_start]);
            }
            piece_start = piece_end;
        }
        file.write_at(offset as u64, buf).await?;
        offset += len;
    }
    file.sync().await?;
    file.close().await?;
    disk.rename(&tmp_name, &name).await?;
    disk.sync_dir().await?;

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
