//! The simulated disk: in memory, deterministic from a seed, with crashes and faults.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use super::{check_aligned, Disk, File, IoError, IoResult, OpenOptions, EIO, ENOSPC, SECTOR_SIZE};

/// A small deterministic pseudo-random generator (splitmix64). The simulator and the crash
/// tests use it so that one `u64` seed reproduces a whole run.
#[derive(Clone, Debug)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> SeededRng {
        SeededRng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0). The slight modulo bias does not matter here.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "SeededRng::below needs a positive bound");
        self.next_u64() % bound
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }
}

/// One write that has completed but is not yet durable.
struct PendingWrite {
    offset: u64,
    data: Vec<u8>,
}

/// A file's contents: what a crash would keep (`durable`), what reads see now (`current`),
/// and the writes in between, oldest first.
#[derive(Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<PendingWrite>,
}

fn apply_write(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = offset as usize;
    let end = start + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[start..end].copy_from_slice(bytes);
}

impl Inode {
    fn sync(&mut self) {
        for write in self.pending.drain(..) {
            apply_write(&mut self.durable, write.offset, &write.data);
        }
    }
}

/// What happens at a sync point that may be the armed crash point.
enum SyncOutcome {
    Normal,
    CrashBeforeEffect,
    CrashAfterEffect,
}

struct SimState {
    rng: SeededRng,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    generation: u64,
    fail_next_write: bool,
    fail_next_sync: bool,
    space_limit_bytes: Option<u64>,
    sync_points: u64,
    crash_at_sync_point: Option<u64>,
    frozen: bool,
    tear_writes: bool,
}

impl SimState {
    fn check_running(&self, op: &'static str, name: &str) -> IoResult<()> {
        if self.frozen {
            // After the armed crash point the machine is "off": nothing reaches the disk
            // until the test calls `SimDisk::crash` to power-cycle it.
            return Err(IoError::from_errno(op, name, EIO));
        }
        Ok(())
    }

    fn used_bytes(&self) -> u64 {
        self.inodes
            .values()
            .map(|inode| inode.current.len() as u64)
            .sum()
    }

    fn sync_point(&mut self) -> SyncOutcome {
        let index = self.sync_points;
        self.sync_points += 1;
        if self.crash_at_sync_point == Some(index) {
            self.crash_at_sync_point = None;
            self.frozen = true;
            if self.rng.chance(1, 2) {
                return SyncOutcome::CrashAfterEffect;
            }
            return SyncOutcome::CrashBeforeEffect;
        }
        SyncOutcome::Normal
    }

    fn inode(&mut self, id: u64, name: &str) -> IoResult<&mut Inode> {
        self.inodes.get_mut(&id).ok_or_else(|| IoError::NotFound {
            name: name.to_string(),
        })
    }

    fn sync_inode(&mut self, id: u64, name: &str) -> IoResult<()> {
        match self.sync_point() {
            SyncOutcome::Normal => {
                self.inode(id, name)?.sync();
                Ok(())
            }
            SyncOutcome::CrashAfterEffect => {
                self.inode(id, name)?.sync();
                Err(IoError::from_errno("fdatasync", name, EIO))
            }
            SyncOutcome::CrashBeforeEffect => Err(IoError::from_errno("fdatasync", name, EIO)),
        }
    }

    fn power_loss(&mut self) {
        let ids: Vec<u64> = self.inodes.keys().copied().collect();
        for id in ids {
            let pending = std::mem::take(&mut self.inodes.get_mut(&id).expect("listed").pending);
            let count = pending.len();
            let mut durable =
                std::mem::take(&mut self.inodes.get_mut(&id).expect("listed").durable);
            for (position, write) in pending.into_iter().enumerate() {
                let is_last = position + 1 == count;
                // Unsynced writes may or may not have reached the platter; the last one may
                // also be cut at a sector boundary, keeping a prefix of its sectors.
                let choice = self
                    .rng
                    .below(if self.tear_writes && is_last { 3 } else { 2 });
                match choice {
                    0 => {}
                    1 => apply_write(&mut durable, write.offset, &write.data),
                    _ => {
                        let sectors = write.data.len() / SECTOR_SIZE;
                        let kept = self.rng.below(sectors as u64 + 1) as usize * SECTOR_SIZE;
                        apply_write(&mut durable, write.offset, &write.data[..kept]);
                    }
                }
            }
            let inode = self.inodes.get_mut(&id).expect("listed");
            inode.current = durable.clone();
            inode.durable = durable;
        }
        self.names = self.durable_names.clone();
        let live: std::collections::BTreeSet<u64> = self.names.values().copied().collect();
        self.inodes.retain(|id, _| live.contains(id));
        self.generation += 1;
        self.frozen = false;
        self.crash_at_sync_point = None;
        self.fail_next_write = false;
        self.fail_next_sync = false;
    }
}

/// An in-memory disk for tests, deterministic from a seed. Cloning gives another handle to the
/// same disk.
///
/// Data written to a file is durable only after [`File::sync`] (or at once with O_DSYNC);
/// creations, renames and removals only after [`Disk::sync_dir`]. [`SimDisk::crash`] loses
/// everything else: each unsynced write is kept or dropped at random, and the last one may be
/// torn at a 512-byte sector boundary.
#[derive(Clone)]
pub struct SimDisk {
    state: Rc<RefCell<SimState>>,
}

impl SimDisk {
    /// An empty disk whose every random choice follows from `seed`.
    pub fn new(seed: u64) -> SimDisk {
        SimDisk {
            state: Rc::new(RefCell::new(SimState {
                rng: SeededRng::new(seed),
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                inodes: BTreeMap::new(),
                next_inode: 1,
                generation: 0,
                fail_next_write: false,
                fail_next_sync: false,
                space_limit_bytes: None,
                sync_points: 0,
                crash_at_sync_point: None,
                frozen: false,
                tear_writes: true,
            })),
        }
    }

    /// Simulates a power loss and reboot: unsynced writes and directory changes are lost (or,
    /// for writes, partly kept), open handles become invalid, and armed faults are cleared.
    pub fn crash(&self) {
        self.state.borrow_mut().power_loss();
    }

    /// Whether torn writes are simulated on crash (default true).
    pub fn set_tear_writes(&self, tear: bool) {
        self.state.borrow_mut().tear_writes = tear;
    }

    /// Makes the next write fail with EIO (nothing of it is written).
    pub fn fail_next_write(&self) {
        self.state.borrow_mut().fail_next_write = true;
    }

    /// Makes the next file sync fail with EIO (nothing becomes durable).
    pub fn fail_next_sync(&self) {
        self.state.borrow_mut().fail_next_sync = true;
    }

    /// Writes that would grow the total size of all files beyond `limit_bytes` fail with
    /// ENOSPC. `None` removes the limit.
    pub fn set_space_limit(&self, limit_bytes: Option<u64>) {
        self.state.borrow_mut().space_limit_bytes = limit_bytes;
    }

    /// The number of sync points (file syncs, O_DSYNC writes, directory syncs) reached so far.
    pub fn sync_points(&self) -> u64 {
        self.state.borrow().sync_points
    }

    /// Arms a crash at sync point `index` (counted as in [`SimDisk::sync_points`]): that sync
    /// takes effect or not (chosen by the seed), returns EIO, and every later operation fails
    /// with EIO until [`SimDisk::crash`].
    pub fn crash_at_sync_point(&self, index: u64) {
        self.state.borrow_mut().crash_at_sync_point = Some(index);
    }

    /// Whether the armed crash point has been reached and the disk awaits [`SimDisk::crash`].
    pub fn is_frozen(&self) -> bool {
        self.state.borrow().frozen
    }

    /// The total size of all files, in bytes.
    pub fn used_bytes(&self) -> u64 {
        self.state.borrow().used_bytes()
    }

    /// The current (not necessarily durable) contents of file `name`, for tests.
    pub fn file_contents(&self, name: &str) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        let id = state.names.get(name)?;
        state.inodes.get(id).map(|inode| inode.current.clone())
    }

    /// Overwrites bytes of file `name` both in its current and durable contents, as bit rot
    /// would. For corruption tests. Returns false if the file does not exist.
    pub fn corrupt(&self, name: &str, offset: u64, bytes: &[u8]) -> bool {
        let mut state = self.state.borrow_mut();
        let Some(&id) = state.names.get(name) else {
            return false;
        };
        let inode = state.inodes.get_mut(&id).expect("named inode exists");
        apply_write(&mut inode.current, offset, bytes);
        apply_write(&mut inode.durable, offset, bytes);
        true
    }
}

/// A file of a [`SimDisk`].
pub struct SimFile {
    state: Rc<RefCell<SimState>>,
    inode: u64,
    name: String,
    generation: u64,
    writable: bool,
    dsync: bool,
}

impl SimFile {
    fn check(&self, state: &SimState, op: &'static str) -> IoResult<()> {
        state.check_running(op, &self.name)?;
        if state.generation != self.generation {
            // A handle from before a simulated crash refers to a process that no longer exists.
            return Err(IoError::from_errno(op, &self.name, 9));
        }
        Ok(())
    }
}

impl File for SimFile {
    type Buf = Vec<u8>;

    fn alloc_buf(&self, len: usize) -> Vec<u8> {
        vec![0; len]
    }

    async fn read_at(&self, offset: u64, len: usize) -> IoResult<Vec<u8>> {
        let mut state = self.state.borrow_mut();
        self.check(&state, "read")?;
        let inode = state.inode(self.inode, &self.name)?;
        let start = (offset as usize).min(inode.current.len());
        let end = (start + len).min(inode.current.len());
        Ok(inode.current[start..end].to_vec())
    }

    async fn write_at(&self, offset: u64, buf: Vec<u8>) -> IoResult<()> {
        let mut state = self.state.borrow_mut();
        self.check(&state, "write")?;
        if !self.writable {
            return Err(IoError::from_errno("write", &self.name, 9));
        }
        check_aligned(offset, buf.len())?;
        if state.fail_next_write {
            state.fail_next_write = false;
            return Err(IoError::from_errno("write", &self.name, EIO));
        }
        let used = state.used_bytes();
        let current_len = state.inode(self.inode, &self.name)?.current.len() as u64;
        let growth = (offset + buf.len() as u64).saturating_sub(current_len);
        if let Some(limit) = state.space_limit_bytes {
            if used + growth > limit {
                return Err(IoError::from_errno("write", &self.name, ENOSPC));
            }
        }
        let inode = state.inode(self.inode, &self.name)?;
        apply_write(&mut inode.current, offset, &buf);
        inode.pending.push(PendingWrite { offset, data: buf });
        if self.dsync {
            state.sync_inode(self.inode, &self.name)?;
        }
        Ok(())
    }

    async fn sync(&self) -> IoResult<()> {
        let mut state = self.state.borrow_mut();
        self.check(&state, "fdatasync")?;
        if state.fail_next_sync {
            state.fail_next_sync = false;
            return Err(IoError::from_errno("fdatasync", &self.name, EIO));
        }
        state.sync_inode(self.inode, &self.name)
    }

    async fn len(&self) -> IoResult<u64> {
        let mut state = self.state.borrow_mut();
        self.check(&state, "stat")?;
        Ok(state.inode(self.inode, &self.name)?.current.len() as u64)
    }

    async fn allocate(&self, len: u64) -> IoResult<()> {
        // Modelled as writing zeros: same size, same space accounting, same crash behaviour.
        self.zero_fill(len).await
    }

    async fn zero_fill(&self, len: u64) -> IoResult<()> {
        let current = self.len().await?;
        if len <= current {
            return Ok(());
        }
        self.write_at(current, vec![0; (len - current) as usize])
            .await
    }

    async fn close(self) -> IoResult<()> {
        Ok(())
    }
}

impl Disk for SimDisk {
    type File = SimFile;

    async fn open(&self, name: &str, options: OpenOptions) -> IoResult<SimFile> {
        let mut state = self.state.borrow_mut();
        state.check_running("open", name)?;
        let inode = if options.create {
            // Creating over an existing name behaves like creating a new file and renaming it
            // over the old one: the old contents come back if the directory is not synced.
            let id = state.next_inode;
            state.next_inode += 1;
            state.inodes.insert(id, Inode::default());
            state.names.insert(name.to_string(), id);
            id
        } else {
            *state.names.get(name).ok_or_else(|| IoError::NotFound {
                name: name.to_string(),
            })?
        };
        Ok(SimFile {
            state: self.state.clone(),
            inode,
            name: name.to_string(),
            generation: state.generation,
            writable: options.write || options.create,
            dsync: options.dsync,
        })
    }

    async fn list(&self) -> IoResult<Vec<String>> {
        let state = self.state.borrow();
        state.check_running("list", ".")?;
        Ok(state.names.keys().cloned().collect())
    }

    async fn remove(&self, name: &str) -> IoResult<()> {
        let mut state = self.state.borrow_mut();
        state.check_running("remove", name)?;
        state.names.remove(name).ok_or_else(|| IoError::NotFound {
            name: name.to_string(),
        })?;
        Ok(())
    }

    async fn rename(&self, from: &str, to: &str) -> IoResult<()> {
        let mut state = self.state.borrow_mut();
        state.check_running("rename", from)?;
        let id = state.names.remove(from).ok_or_else(|| IoError::NotFound {
            name: from.to_string(),
        })?;
        state.names.insert(to.to_string(), id);
        Ok(())
    }

    async fn sync_dir(&self) -> IoResult<()> {
        let mut state = self.state.borrow_mut();
        state.check_running("fsync dir", ".")?;
        match state.sync_point() {
            SyncOutcome::Normal => {
                state.durable_names = state.names.clone();
                Ok(())
            }
            SyncOutcome::CrashAfterEffect => {
                state.durable_names = state.names.clone();
                Err(IoError::from_errno("fsync dir", ".", EIO))
            }
            SyncOutcome::CrashBeforeEffect => Err(IoError::from_errno("fsync dir", ".", EIO)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    #[test]
    fn unsynced_data_and_names_are_lost_on_crash() {
        block_on(async {
            let disk = SimDisk::new(7);
            disk.set_tear_writes(false);
            let file = disk.open("a", OpenOptions::create()).await.unwrap();
            file.write_at(0, vec![1; 4096]).await.unwrap();
            file.sync().await.unwrap();
            disk.sync_dir().await.unwrap();
            let b = disk.open("b", OpenOptions::create()).await.unwrap();
            b.write_at(0, vec![2; 4096]).await.unwrap();
            b.sync().await.unwrap();
            disk.crash();
            assert_eq!(disk.list().await.unwrap(), vec!["a".to_string()]);
            let file = disk.open("a", OpenOptions::read()).await.unwrap();
            assert_eq!(file.read_at(0, 8192).await.unwrap(), vec![1; 4096]);
        });
    }

    #[test]
    fn misaligned_writes_are_refused() {
        block_on(async {
            let disk = SimDisk::new(1);
            let file = disk.open("a", OpenOptions::create()).await.unwrap();
            assert!(matches!(
                file.write_at(512, vec![0; 4096]).await,
                Err(IoError::Misaligned { .. })
            ));
            assert!(matches!(
                file.write_at(0, vec![0; 100]).await,
                Err(IoError::Misaligned { .. })
            ));
        });
    }

    #[test]
    fn torn_write_keeps_a_sector_prefix() {
        block_on(async {
            for seed in 0..50 {
                let disk = SimDisk::new(seed);
                let file = disk.open("a", OpenOptions::create()).await.unwrap();
                file.zero_fill(8192).await.unwrap();
                file.sync().await.unwrap();
                disk.sync_dir().await.unwrap();
                file.write_at(0, vec![9; 8192]).await.unwrap();
                disk.crash();
                let file = disk.open("a", OpenOptions::read()).await.unwrap();
                let data = file.read_at(0, 8192).await.unwrap();
                let kept = data.iter().take_while(|&&b| b == 9).count();
                assert_eq!(kept % SECTOR_SIZE, 0, "seed {seed}");
                assert!(data[kept..].iter().all(|&b| b == 0), "seed {seed}");
            }
        });
    }

    #[test]
    fn faults_are_injected() {
        block_on(async {
            let disk = SimDisk::new(3);
            let file = disk.open("a", OpenOptions::create()).await.unwrap();
            disk.fail_next_write();
            assert_eq!(
                file.write_at(0, vec![0; 4096])
                    .await
                    .unwrap_err()
                    .raw_os_error(),
                Some(EIO)
            );
            disk.fail_next_sync();
            assert_eq!(file.sync().await.unwrap_err().raw_os_error(), Some(EIO));
            disk.set_space_limit(Some(8192));
            file.write_at(0, vec![0; 8192]).await.unwrap();
            let error = file.write_at(8192, vec![0; 4096]).await.unwrap_err();
            assert_eq!(error.raw_os_error(), Some(ENOSPC));
        });
    }
}
