//! etcd's snapshot trailer: `etcdctl snapshot save` stores the bbolt file followed by the
//! SHA-256 of everything before it (32 bytes). etcd recognizes the trailer by the file's
//! length alone: a bbolt file is a whole number of pages, so a length of 32 more than a
//! multiple of 512 means a trailer (etcd's `hasChecksum`: `size % 512 == sha256.Size`), and
//! `etcdctl snapshot restore` refuses a file without one unless given `--skip-hash-check`.

use std::io::{self, Read, Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};

use super::error::BboltError;
use super::reader::ReadAt;

/// Bytes of the trailer: one SHA-256.
pub const HASH_BYTES: u64 = 32;
/// The body before a trailer is a multiple of this many bytes.
pub const BODY_ALIGN_BYTES: u64 = 512;
/// Bytes hashed per read.
const CHUNK_BYTES: usize = 1024 * 1024;

/// Whether a snapshot file of `file_len` bytes ends with etcd's SHA-256 trailer (etcd's own
/// test, by length alone), and if so the length of the bbolt file before it.
pub fn split_snapshot_hash(file_len: u64) -> Option<u64> {
    (file_len % BODY_ALIGN_BYTES == HASH_BYTES).then(|| file_len - HASH_BYTES)
}

/// What [`verify_snapshot_hash`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotHash {
    /// The trailer matches the first `body_len` bytes.
    Verified {
        /// The length of the bbolt file before the trailer.
        body_len: u64,
    },
    /// The file has no trailer (a bbolt file copied from a data dir, not saved by etcdctl).
    Absent,
}

/// Checks the SHA-256 trailer of the snapshot in `source`, if its length says it has one.
/// A mismatch is [`BboltError::SnapshotHash`].
pub fn verify_snapshot_hash<S: ReadAt + ?Sized>(source: &S) -> Result<SnapshotHash, BboltError> {
    let file_len = source.len_bytes()?;
    let Some(body_len) = split_snapshot_hash(file_len) else {
        return Ok(SnapshotHash::Absent);
    };
    let mut expected = [0u8; HASH_BYTES as usize];
    source.read_exact_at(&mut expected, body_len)?;
    let computed = hash_prefix(source, body_len)?;
    if computed != expected {
        return Err(BboltError::SnapshotHash {
            expected: hex(&expected),
            computed: hex(&computed),
        });
    }
    Ok(SnapshotHash::Verified { body_len })
}

/// The SHA-256 of the first `len` bytes of `source`, read a chunk at a time.
pub fn hash_prefix<S: ReadAt + ?Sized>(source: &S, len: u64) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; CHUNK_BYTES];
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(CHUNK_BYTES as u64) as usize;
        source.read_exact_at(&mut chunk[..n], offset)?;
        hasher.update(&chunk[..n]);
        offset += n as u64;
    }
    Ok(hasher.finalize().into())
}

/// Appends etcd's trailer to a finished bbolt file (for instance the output of
/// [`crate::bbolt::Writer::finish`]): hashes the whole file from its start and writes the
/// hash at its end. Refuses a file whose length is not a multiple of 512, which etcd would
/// not recognize as carrying a trailer. The caller syncs the file.
pub fn append_snapshot_hash<F: Read + Write + Seek>(file: &mut F) -> io::Result<[u8; 32]> {
    let len = file.seek(SeekFrom::End(0))?;
    if len % BODY_ALIGN_BYTES != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a file of {len} bytes is not a multiple of {BODY_ALIGN_BYTES} bytes: etcd \
                 would not see a trailer after it"
            ),
        ));
    }
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let copied = io::copy(&mut Read::by_ref(file).take(len), &mut hasher)?;
    if copied != len {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
    }
    let hash: [u8; 32] = hasher.finalize().into();
    file.seek(SeekFrom::Start(len))?;
    file.write_all(&hash)?;
    Ok(hash)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn trailer_is_recognized_by_length() {
        assert_eq!(split_snapshot_hash(4 * 4096 + 32), Some(4 * 4096));
        assert_eq!(split_snapshot_hash(512 + 32), Some(512));
        assert_eq!(split_snapshot_hash(4 * 4096), None);
        assert_eq!(split_snapshot_hash(0), None);
        assert_eq!(split_snapshot_hash(31), None);
        assert_eq!(split_snapshot_hash(32), Some(0));
    }

    #[test]
    fn append_then_verify() {
        let mut file = Cursor::new(vec![7u8; 8192]);
        let hash = append_snapshot_hash(&mut file).expect("append");
        let bytes = file.into_inner();
        assert_eq!(bytes.len(), 8192 + 32);
        assert_eq!(&bytes[8192..], &hash);
        assert_eq!(hash, <[u8; 32]>::from(Sha256::digest(vec![7u8; 8192])));
        assert_eq!(
            verify_snapshot_hash(&bytes).expect("verified"),
            SnapshotHash::Verified { body_len: 8192 }
        );
        let mut damaged = bytes.clone();
        damaged[100] ^= 1;
        assert!(matches!(
            verify_snapshot_hash(&damaged),
            Err(BboltError::SnapshotHash { .. })
        ));
        assert_eq!(
            verify_snapshot_hash(&bytes[..8192]).expect("no trailer"),
            SnapshotHash::Absent
        );
        let mut odd = Cursor::new(vec![0u8; 100]);
        assert!(append_snapshot_hash(&mut odd).is_err());
    }
}
