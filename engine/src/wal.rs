//! The write-ahead log: append-only segments of checksummed records.
//!
//! A batch of records is framed into one buffer padded to 4 KiB, written with one aligned
//! write and made durable with one sync (or one O_DSYNC write). Segments are preallocated and
//! zero-filled when created, so that appends overwrite allocated blocks instead of extending
//! the file. Recovery ([`Wal::open`]) verifies every checksum, drops a torn tail of the last
//! segment and refuses corruption anywhere else. The byte layout is specified in
//! `engine/FORMAT.md`.

use crate::io::{Disk, File, IoError, OpenOptions, BLOCK_SIZE};

/// A log sequence number: the position of a record in the WAL, starting at 1, without gaps.
pub type Lsn = u64;

/// Default segment size: 64 MiB, like etcd.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// The largest payload one record may carry.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 256 << 20;

const SEGMENT_MAGIC: &[u8; 8] = b"KEELWAL\0";
const FORMAT_VERSION: u32 = 1;
/// Bytes of the segment header covered by its CRC.
const SEGMENT_HEADER_CRC_OFFSET: usize = 24;
/// Records start at the first block after the header block.
const SEGMENT_DATA_OFFSET: u64 = BLOCK_SIZE as u64;
/// `len u32 | crc u32 | type u8 | lsn u64`.
const RECORD_HEADER_BYTES: usize = 17;
/// Set in a record's type byte on the last record of a batch.
const BATCH_END_FLAG: u8 = 0x80;
const SEGMENT_SUFFIX: &str = ".wal";
const TMP_SUFFIX: &str = ".wal.tmp";
/// The segment being prepared for the next roll; removed on open like any `.wal.tmp`.
const SPARE_NAME: &str = "spare.wal.tmp";
/// Segments smaller than this are created at roll time; a spare would gain nothing.
const SPARE_MIN_SEGMENT_BYTES: u64 = 64 << 10;
const SPARE_CHUNK_BYTES_MIN: u64 = 256 << 10;
const SPARE_CHUNK_BYTES_MAX: u64 = 4 << 20;

/// What a record is; the payload's meaning belongs to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordType {
    /// A raft log entry.
    Entry = 1,
    /// Raft hard state (term, vote, commit).
    HardState = 2,
    /// Marks that a raft snapshot was installed.
    Snapshot = 3,
    /// Marks that a checkpoint was written.
    Checkpoint = 4,
}

impl RecordType {
    fn from_u8(value: u8) -> Option<RecordType> {
        match value {
            1 => Some(RecordType::Entry),
            2 => Some(RecordType::HardState),
            3 => Some(RecordType::Snapshot),
            4 => Some(RecordType::Checkpoint),
            _ => None,
        }
    }
}

/// One record read back from the WAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The record's sequence number.
    pub lsn: Lsn,
    /// The record's type.
    pub record_type: RecordType,
    /// The bytes the caller appended.
    pub payload: Vec<u8>,
}

/// Errors of the WAL.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The disk failed. After a failed append the WAL is poisoned.
    #[error("WAL I/O error: {0}")]
    Io(#[from] IoError),
    /// The log is damaged somewhere other than a torn tail; it cannot be opened as is.
    #[error("WAL corrupt in {file} at offset {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        file: String,
        /// The byte offset within the file of the first bad byte found.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// An earlier write or sync failed, so what is on disk is unknown; reopen the WAL.
    #[error("WAL is poisoned by an earlier failed write or sync; reopen it to recover")]
    Poisoned,
    /// A payload larger than [`RECORD_PAYLOAD_BYTES_MAX`].
    #[error("WAL record payload of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// The payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// WAL settings.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Size of a new segment in bytes (a multiple of 4096, at least 8192). A batch larger than
    /// a segment gets a segment of its own, sized to fit.
    pub segment_bytes: u64,
    /// Open segments with O_DSYNC and skip the separate sync: one write per batch instead of a
    /// write and an fdatasync.
    pub dsync: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            dsync: DEFAULT_DSYNC,
        }
    }
}

/// Whether O_DSYNC is the default. In the WAL's own benchmark (perf/results/engine-wal.md) the
/// two modes were within noise on a quiet disk and swapped places on a busy one; in the
/// server, where an fdatasync through io_uring is handed to a kernel worker thread and an
/// O_DSYNC write into a zero-filled segment is not, O_DSYNC cut sequential put p50 by 8-11 %
/// and raised 100-client put throughput by 6-18 %, on one member and on three sharing the disk
/// (perf/results/2026-11-30-vm-dsync.md).
pub const DEFAULT_DSYNC: bool = true;

/// One segment file still in the log.
#[derive(Clone, Debug)]
struct Segment {
    first_lsn: Lsn,
    name: String,
}

fn segment_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:016x}{SEGMENT_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<Lsn> {
    let hex = name.strip_suffix(SEGMENT_SUFFIX)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn align_up(value: u64) -> u64 {
    value.div_ceil(BLOCK_SIZE as u64) * BLOCK_SIZE as u64
}

fn read_u32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(data: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"))
}

/// The chained record checksum: CRC-32 (IEEE) of the previous link, the record's length
/// field, and everything after the crc field (type, LSN, payload).
fn record_crc(previous: u32, record: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&previous.to_le_bytes());
    hasher.update(&record[0..4]);
    hasher.update(&record[8..]);
    hasher.finalize()
}

/// Encodes the 4 KiB segment header block's meaningful prefix; returns the header CRC, which
/// is also the chain seed of every batch in the segment.
fn encode_segment_header(block: &mut [u8], first_lsn: Lsn) -> u32 {
    block[0..8].copy_from_slice(SEGMENT_MAGIC);
    block[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    block[12..16].copy_from_slice(&0u32.to_le_bytes());
    block[16..24].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32fast::hash(&block[0..SEGMENT_HEADER_CRC_OFFSET]);
    block[24..28].copy_from_slice(&crc.to_le_bytes());
    crc
}

/// Frames `records` into `buf` (zeroed, long enough) starting at LSN `first_lsn`.
fn encode_batch(buf: &mut [u8], seed: u32, first_lsn: Lsn, records: &[(RecordType, &[u8])]) {
    let mut previous = seed;
    let mut at = 0;
    for (index, (record_type, payload)) in records.iter().enumerate() {
        let len = RECORD_HEADER_BYTES + payload.len();
        let record = &mut buf[at..at + len];
        record[0..4].copy_from_slice(&(len as u32).to_le_bytes());
        let mut type_byte = *record_type as u8;
        if index + 1 == records.len() {
            type_byte |= BATCH_END_FLAG;
        }
        record[8] = type_byte;
        record[9..17].copy_from_slice(&(first_lsn + index as u64).to_le_bytes());
        record[17..].copy_from_slice(payload);
        previous = record_crc(previous, record);
        record[4..8].copy_from_slice(&previous.to_le_bytes());
        at += len;
    }
}

/// Where and why a batch failed to parse.
struct BatchFailure {
    offset: u64,
    reason: String,
}

enum BatchParse {
    /// A complete batch; the next batch starts at the next block boundary after `end`.
    Complete {
        records: Vec<Record>,
        end: usize,
    },
    /// A zero length field where a batch would start: the written part of the segment ends.
    End,
    Failed(BatchFailure),
}

/// Parses the batch starting at block-aligned `start`. With `expected_lsn` = None, only the
/// first record is checked (used to look for valid batches after damage).
fn parse_batch(data: &[u8], start: usize, seed: u32, expected_lsn: Lsn) -> BatchParse {
    let mut previous = seed;
    let mut at = start;
    let mut records = Vec::new();
    let fail = |offset: usize, reason: String| {
        BatchParse::Failed(BatchFailure {
            offset: offset as u64,
            reason,
        })
    };
    loop {
        if at + 4 > data.len() {
            if records.is_empty() {
                return BatchParse::End;
            }
            return fail(at, "batch runs past the end of the segment".to_string());
        }
        let len = read_u32(data, at) as usize;
        if len == 0 {
            if records.is_empty() {
                return BatchParse::End;
            }
            return fail(at, "batch ends without its end-of-batch record".to_string());
        }
        if len < RECORD_HEADER_BYTES || len - RECORD_HEADER_BYTES > RECORD_PAYLOAD_BYTES_MAX {
            return fail(at, format!("record length {len} out of range"));
        }
        if at + len > data.len() {
            return fail(
                at,
                format!("record length {len} runs past the end of the segment"),
            );
        }
        let record = &data[at..at + len];
        let stored_crc = read_u32(record, 4);
        let crc = record_crc(previous, record);
        if crc != stored_crc {
            return fail(
                at,
                format!("checksum mismatch (stored {stored_crc:#010x}, computed {crc:#010x})"),
            );
        }
        let type_byte = record[8];
        let Some(record_type) = RecordType::from_u8(type_byte & !BATCH_END_FLAG) else {
            return fail(at, format!("unknown record type {type_byte:#04x}"));
        };
        let lsn = read_u64(record, 9);
        let want = expected_lsn + records.len() as u64;
        if lsn != want {
            return fail(at, format!("LSN {lsn} where {want} was expected"));
        }
        records.push(Record {
            lsn,
            record_type,
            payload: record[17..].to_vec(),
        });
        previous = crc;
        at += len;
        if type_byte & BATCH_END_FLAG != 0 {
            return BatchParse::Complete { records, end: at };
        }
    }
}

/// Whether a block-aligned `start` holds the first record of a batch of this segment (its
/// checksum chains from the segment seed). Used to tell a torn tail from damage followed by
/// acknowledged data.
fn looks_like_batch_start(data: &[u8], start: usize, seed: u32) -> bool {
    if start + RECORD_HEADER_BYTES > data.len() {
        return false;
    }
    let len = read_u32(data, start) as usize;
    if len < RECORD_HEADER_BYTES || start + len > data.len() {
        return false;
    }
    let record = &data[start..start + len];
    record_crc(seed, record) == read_u32(record, 4)
}

/// The result of scanning one segment.
struct SegmentScan {
    first_lsn: Lsn,
    seed: u32,
    records: Vec<Record>,
    /// Where the next batch goes: just past the last complete batch.
    append_offset: u64,
    /// End (block-aligned) of non-zero bytes after `append_offset`, to be zeroed; 0 if none.
    garbage_end: u64,
}

fn scan_segment(
    name: &str,
    data: &[u8],
    expected_first_lsn: Option<Lsn>,
    is_last: bool,
) -> Result<SegmentScan, WalError> {
    let corrupt = |offset: u64, reason: String| WalError::Corrupt {
        file: name.to_string(),
        offset,
        reason,
    };
    if data.len() < SEGMENT_DATA_OFFSET as usize || data.len() % BLOCK_SIZE != 0 {
        return Err(corrupt(
            0,
            format!(
                "segment length {} is not a positive multiple of 4096",
                data.len()
            ),
        ));
    }
    if &data[0..8] != SEGMENT_MAGIC {
        return Err(corrupt(0, "bad segment magic".to_string()));
    }
    let crc = crc32fast::hash(&data[0..SEGMENT_HEADER_CRC_OFFSET]);
    if crc != read_u32(data, 24) {
        return Err(corrupt(24, "segment header checksum mismatch".to_string()));
    }
    let version = read_u32(data, 8);
    if version != FORMAT_VERSION {
        return Err(corrupt(
            8,
            format!("unsupported WAL format version {version}"),
        ));
    }
    let first_lsn = read_u64(data, 16);
    if Some(first_lsn) != parse_segment_name(name) {
        return Err(corrupt(
            16,
            format!("header says first LSN {first_lsn}, name disagrees"),
        ));
    }
    if let Some(expected) = expected_first_lsn {
        if expected != first_lsn {
            return Err(corrupt(
                16,
                format!("first LSN {first_lsn}, expected {expected} (gap)"),
            ));
        }
    }
    let seed = crc;
    let mut records: Vec<Record> = Vec::new();
    let mut at = SEGMENT_DATA_OFFSET as usize;
    let failure = loop {
        match parse_batch(data, at, seed, first_lsn + records.len() as u64) {
            BatchParse::Complete {
                records: batch,
                end,
            } => {
                records.extend(batch);
                at = align_up(end as u64) as usize;
            }
            BatchParse::End => break None,
            BatchParse::Failed(failure) => break Some(failure),
        }
    };
    // Whatever ended the scan, no batch of this segment may follow: acknowledged data after
    // damage (or after a zeroed block) means corruption, not a torn tail.
    let mut probe = at + BLOCK_SIZE;
    while probe < data.len() {
        if looks_like_batch_start(data, probe, seed) {
            let (offset, reason) = match &failure {
                Some(f) => (f.offset, f.reason.clone()),
                None => (at as u64, "zeroed block".to_string()),
            };
            return Err(corrupt(
                offset,
                format!("{reason}, followed by a valid batch at offset {probe}"),
            ));
        }
        probe += BLOCK_SIZE;
    }
    if let Some(failure) = failure {
        if !is_last {
            return Err(corrupt(failure.offset, failure.reason));
        }
    }
    let garbage_end = data[at..]
        .iter()
        .rposition(|&b| b != 0)
        .map(|last| align_up((at + last + 1) as u64))
        .unwrap_or(0);
    Ok(SegmentScan {
        first_lsn,
        seed,
        records,
        append_offset: at as u64,
        garbage_end,
    })
}

/// The write-ahead log. Used from one task at a time on one thread.
pub struct Wal<D: Disk> {
    disk: D,
    options: WalOptions,
    segments: Vec<Segment>,
    file: D::File,
    seed: u32,
    write_offset: u64,
    capacity: u64,
    last_lsn: Lsn,
    bytes_written: u64,
    syncs: u64,
    poisoned: bool,
    spare: Option<Spare<D::File>>,
    spare_failed: bool,
}

/// The next segment being prepared: zero-filled up to `filled`, synced once full.
struct Spare<F> {
    file: F,
    filled: u64,
    size: u64,
    synced: bool,
}

/// Creates the spare segment if `due`, then zero-fills its next slice (or syncs it once full).
async fn advance_spare<D: Disk>(
    disk: &D,
    spare: &mut Option<Spare<D::File>>,
    due: bool,
    size: u64,
    batch_bytes: u64,
) -> Result<(), IoError> {
    if due {
        let file = disk.open(SPARE_NAME, OpenOptions::create()).await?;
        // Reserve the extent up front so the zero slices overwrite allocated blocks instead of
        // extending the file (extending writes serialize on ext4).
        file.allocate(size).await?;
        *spare = Some(Spare {
            file,
            filled: 0,
            size,
            synced: false,
        });
    }
    let Some(spare) = spare.as_mut() else {
        return Ok(());
    };
    if spare.synced {
        return Ok(());
    }
    if spare.filled == spare.size {
        spare.file.sync().await?;
        spare.synced = true;
        return Ok(());
    }
    // Twice the batch size (at least 256 KiB) per append: the spare starts at a quarter of the
    // segment, so it is full before the remaining three quarters are.
    let chunk = (2 * batch_bytes).clamp(SPARE_CHUNK_BYTES_MIN, SPARE_CHUNK_BYTES_MAX);
    let chunk = chunk.min(spare.size - spare.filled);
    let zeros = spare.file.alloc_buf(chunk as usize);
    spare.file.write_at(spare.filled, zeros).await?;
    spare.filled += chunk;
    Ok(())
}

impl<D: Disk> Wal<D> {
    /// Opens the WAL in `disk`, creating an empty one if there is no segment, and returns it
    /// with every record it holds, in LSN order, for the caller to replay.
    ///
    /// A torn or garbage tail after the last complete batch of the last segment is dropped
    /// (zeroed on disk). Damage anywhere else is [`WalError::Corrupt`].
    pub async fn open(disk: D, options: WalOptions) -> Result<(Wal<D>, Vec<Record>), WalError> {
        assert!(
            options.segment_bytes >= 2 * BLOCK_SIZE as u64
                && options.segment_bytes % BLOCK_SIZE as u64 == 0,
            "segment_bytes must be a multiple of 4096 and at least 8192"
        );
        let names = disk.list().await?;
        let mut removed_tmp = false;
        let mut segments = Vec::new();
        for name in names {
            if name.ends_with(TMP_SUFFIX) {
                // A segment whose creation did not finish; it never held acknowledged data.
                disk.remove(&name).await?;
                removed_tmp = true;
            } else if let Some(first_lsn) = parse_segment_name(&name) {
                segments.push(Segment { first_lsn, name });
            }
        }
        if removed_tmp {
            disk.sync_dir().await?;
        }
        segments.sort_by_key(|segment| segment.first_lsn);
        if segments.is_empty() {
            let (file, seed, capacity) = create_segment(&disk, &options, 1, 0).await?;
            let wal = Wal {
                disk,
                segments: vec![Segment {
                    first_lsn: 1,
                    name: segment_name(1),
                }],
                options,
                file,
                seed,
                write_offset: SEGMENT_DATA_OFFSET,
                capacity,
                last_lsn: 0,
                bytes_written: 0,
                syncs: 0,
                poisoned: false,
                spare: None,
                spare_failed: false,
            };
            return Ok((wal, Vec::new()));
        }
        let mut records = Vec::new();
        let mut expected_first_lsn = None;
        let count = segments.len();
        for (index, segment) in segments.iter().enumerate() {
            let is_last = index + 1 == count;
            let options_for_open = if is_last {
                OpenOptions::read_write().with_dsync(options.dsync)
            } else {
                OpenOptions::read()
            };
            let file = disk.open(&segment.name, options_for_open).await?;
            let len = file.len().await?;
            let data = file.read_at(0, len as usize).await?;
            let scan = scan_segment(&segment.name, &data, expected_first_lsn, is_last)?;
            let next_lsn = scan.first_lsn + scan.records.len() as u64;
            records.extend(scan.records);
            expected_first_lsn = Some(next_lsn);
            if !is_last {
                file.close().await?;
                continue;
            }
            if scan.garbage_end > scan.append_offset {
                // Zero the torn tail so that a later scan cannot mistake it for damage in the
                // middle of the log once new batches are written after it.
                let zeros = file.alloc_buf((scan.garbage_end - scan.append_offset) as usize);
                file.write_at(scan.append_offset, zeros).await?;
                file.sync().await?;
            }
            let wal = Wal {
                disk,
                options,
                segments,
                file,
                seed: scan.seed,
                write_offset: scan.append_offset,
                capacity: len,
                last_lsn: next_lsn - 1,
                bytes_written: 0,
                syncs: 0,
                poisoned: false,
                spare: None,
                spare_failed: false,
            };
            return Ok((wal, records));
        }
        unreachable!("the loop returns at the last segment")
    }

    /// Appends a batch of records with one write and one sync, and returns the LSN of its last
    /// record (the current last LSN if `records` is empty). The batch is durable when this
    /// returns Ok; after a crash it is either wholly present or wholly absent.
    ///
    /// Any I/O failure poisons the WAL: this and every later append then fail, and the caller
    /// must reopen it (a failed sync is never retried, since the kernel may have dropped the
    /// dirty pages).
    pub async fn append(&mut self, records: &[(RecordType, &[u8])]) -> Result<Lsn, WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        if records.is_empty() {
            return Ok(self.last_lsn);
        }
        let mut batch_bytes = 0u64;
        for (_, payload) in records {
            if payload.len() > RECORD_PAYLOAD_BYTES_MAX {
                return Err(WalError::RecordTooLarge {
                    len: payload.len(),
                    max: RECORD_PAYLOAD_BYTES_MAX,
                });
            }
            batch_bytes += (RECORD_HEADER_BYTES + payload.len()) as u64;
        }
        let padded = align_up(batch_bytes);
        let result = self.write_batch(records, padded).await;
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    async fn write_batch(
        &mut self,
        records: &[(RecordType, &[u8])],
        padded: u64,
    ) -> Result<Lsn, WalError> {
        if self.write_offset + padded > self.capacity {
            self.roll(padded).await?;
        }
        let first_lsn = self.last_lsn + 1;
        let mut buf = self.file.alloc_buf(padded as usize);
        encode_batch(buf.as_mut(), self.seed, first_lsn, records);
        // The spare is started once the current segment is a quarter full.
        let spare_due = self.spare.is_none()
            && !self.spare_failed
            && self.write_offset >= self.capacity / 4
            && self.options.segment_bytes >= SPARE_MIN_SEGMENT_BYTES;
        let spare_work = advance_spare(
            &self.disk,
            &mut self.spare,
            spare_due,
            self.options.segment_bytes,
            padded,
        );
        let file = &self.file;
        let write_offset = self.write_offset;
        let dsync = self.options.dsync;
        let batch = async {
            file.write_at(write_offset, buf).await?;
            if !dsync {
                file.sync().await?;
            }
            Ok::<(), IoError>(())
        };
        // The next segment is zero-filled a slice at a time, concurrently with batch writes,
        // so that a roll does not stall one append for the whole fill (tens of ms at 64 MiB).
        let (batch_result, spare_result) = futures_lite::future::zip(batch, spare_work).await;
        batch_result?;
        if spare_result.is_err() {
            // The spare is an optimisation; a roll without one creates the segment itself and
            // reports the disk's error then.
            self.spare = None;
            self.spare_failed = true;
        }
        self.syncs += 1;
        self.bytes_written += padded;
        self.write_offset += padded;
        self.last_lsn += records.len() as u64;
        Ok(self.last_lsn)
    }

    /// Starts a new segment at the next LSN, big enough for a batch of `batch_bytes`.
    async fn roll(&mut self, batch_bytes: u64) -> Result<(), WalError> {
        let first_lsn = self.last_lsn + 1;
        let needed = SEGMENT_DATA_OFFSET + align_up(batch_bytes);
        let ready = matches!(&self.spare, Some(s) if s.synced && s.size >= needed);
        let (file, seed, capacity) = if ready {
            let spare = self.spare.take().expect("checked above");
            install_spare(&self.disk, &self.options, spare, first_lsn).await?
        } else {
            create_segment(&self.disk, &self.options, first_lsn, batch_bytes).await?
        };
        self.spare_failed = false;
        let old = std::mem::replace(&mut self.file, file);
        old.close().await?;
        let segment = Segment {
            first_lsn,
            name: segment_name(first_lsn),
        };
        // An empty current segment is replaced (same name, same first LSN) by a bigger one.
        if self.segments.last().map(|s| s.first_lsn) == Some(first_lsn) {
            self.segments.pop();
        }
        self.segments.push(segment);
        self.seed = seed;
        self.capacity = capacity;
        self.write_offset = SEGMENT_DATA_OFFSET;
        Ok(())
    }

    /// Removes the segments all of whose records have LSN <= `lsn` (never the current
    /// segment), e.g. once a checkpoint covers them. Returns how many were removed.
    pub async fn release_through(&mut self, lsn: Lsn) -> Result<usize, WalError> {
        let mut removed = 0;
        while self.segments.len() > 1 && self.segments[1].first_lsn - 1 <= lsn {
            self.disk.remove(&self.segments[0].name).await?;
            self.segments.remove(0);
            removed += 1;
        }
        if removed > 0 {
            self.disk.sync_dir().await?;
        }
        Ok(removed)
    }

    /// The LSN of the last record appended (or recovered); 0 for a WAL that never held one
    /// and `first_lsn() - 1` for an empty one.
    pub fn last_lsn(&self) -> Lsn {
        self.last_lsn
    }

    /// The first LSN the WAL still holds (or would assign next, if it holds none).
    pub fn first_lsn(&self) -> Lsn {
        self.segments[0].first_lsn
    }

    /// Bytes written by appends since open, padding included.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Batches made durable since open (syncs, or O_DSYNC writes).
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// The number of segment files in the log.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Whether an earlier failure poisoned the WAL.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }
}

/// Turns the prepared spare into segment `first_lsn`: header, sync, rename, directory sync.
async fn install_spare<D: Disk>(
    disk: &D,
    options: &WalOptions,
    spare: Spare<D::File>,
    first_lsn: Lsn,
) -> Result<(D::File, u32, u64), WalError> {
    let name = segment_name(first_lsn);
    let mut header = spare.file.alloc_buf(BLOCK_SIZE);
    let seed = encode_segment_header(header.as_mut(), first_lsn);
    spare.file.write_at(0, header).await?;
    spare.file.sync().await?;
    spare.file.close().await?;
    disk.rename(SPARE_NAME, &name).await?;
    disk.sync_dir().await?;
    let file = disk
        .open(&name, OpenOptions::read_write().with_dsync(options.dsync))
        .await?;
    Ok((file, seed, spare.size))
}

/// Creates segment `first_lsn`: a temporary file is zero-filled, given its header and synced,
/// then renamed into place and the directory synced, so a named segment always has a valid
/// header. Returns the file opened for appending, its chain seed and its size.
async fn create_segment<D: Disk>(
    disk: &D,
    options: &WalOptions,
    first_lsn: Lsn,
    batch_bytes: u64,
) -> Result<(D::File, u32, u64), WalError> {
    let name = segment_name(first_lsn);
    let tmp_name = format!("{first_lsn:016x}{TMP_SUFFIX}");
    let size = options
        .segment_bytes
        .max(SEGMENT_DATA_OFFSET + align_up(batch_bytes));
    let tmp = disk.open(&tmp_name, OpenOptions::create()).await?;
    tmp.zero_fill(size).await?;
    let mut header = tmp.alloc_buf(BLOCK_SIZE);
    let seed = encode_segment_header(header.as_mut(), first_lsn);
    tmp.write_at(0, header).await?;
    tmp.sync().await?;
    tmp.close().await?;
    disk.rename(&tmp_name, &name).await?;
    disk.sync_dir().await?;
    let file = disk
        .open(&name, OpenOptions::read_write().with_dsync(options.dsync))
        .await?;
    Ok((file, seed, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_name(1), "0000000000000001.wal");
        assert_eq!(parse_segment_name(&segment_name(0xabc)), Some(0xabc));
        assert_eq!(parse_segment_name("0000000000000001.wal.tmp"), None);
        assert_eq!(parse_segment_name("checkpoint-0000000000000001.ckpt"), None);
    }

    #[test]
    fn batch_encodes_and_parses() {
        let mut data = vec![0u8; 3 * BLOCK_SIZE];
        let seed = encode_segment_header(&mut data[..BLOCK_SIZE], 5);
        let records: Vec<(RecordType, &[u8])> = vec![
            (RecordType::Entry, b"a"),
            (RecordType::HardState, b""),
            (RecordType::Entry, b"ccc"),
        ];
        encode_batch(&mut data[BLOCK_SIZE..], seed, 5, &records);
        let scan = scan_segment("0000000000000005.wal", &data, None, true).unwrap();
        assert_eq!(scan.records.len(), 3);
        assert_eq!(scan.records[1].lsn, 6);
        assert_eq!(scan.records[2].payload, b"ccc");
        assert_eq!(scan.append_offset, 2 * BLOCK_SIZE as u64);
        // A batch cut before its end record is a torn tail, not data.
        let cut = BLOCK_SIZE + 2 * RECORD_HEADER_BYTES + 1;
        data[cut..].fill(0);
        let scan = scan_segment("0000000000000005.wal", &data, None, true).unwrap();
        assert!(scan.records.is_empty());
        assert_eq!(scan.append_offset, BLOCK_SIZE as u64);
        assert!(scan.garbage_end > scan.append_offset);
        assert!(scan_segment("0000000000000005.wal", &data, None, false).is_err());
    }
}
