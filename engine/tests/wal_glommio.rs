//! The WAL, checkpoints and the io layer on the real disk (glommio, O_DIRECT) in a temporary
//! directory under the system temp dir (ext4 here, never tmpfs: durability is the point).

use std::future::Future;

use keel_engine::checkpoint;
use keel_engine::io::{Disk, File, GlommioDisk, IoError, OpenOptions};
use keel_engine::wal::{RecordType, Wal, WalError, WalOptions};

/// Runs `make(dir)` to completion on a fresh glommio executor thread.
fn run<F, Fut>(make: F)
where
    F: FnOnce(std::path::PathBuf) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal");
    glommio::LocalExecutorBuilder::default()
        .spawn(move || make(path))
        .unwrap()
        .join()
        .unwrap();
}

fn small() -> WalOptions {
    WalOptions {
        segment_bytes: 64 * 1024,
        dsync: false,
    }
}

#[test]
fn fresh_dir_reads_after_writes() {
    // Guards the glommio #605 workaround: a read after a write on a new, empty directory.
    run(|path| async move {
        let disk = GlommioDisk::open(&path).await.unwrap();
        let file = disk.open("data", OpenOptions::create()).await.unwrap();
        let mut buf = file.alloc_buf(8192);
        buf.as_mut()[..5].copy_from_slice(b"hello");
        file.write_at(0, buf).await.unwrap();
        file.sync().await.unwrap();
        assert_eq!(file.read_at(0, 5).await.unwrap(), b"hello");
        assert_eq!(file.read_at(8190, 100).await.unwrap().len(), 2);
        let misaligned = file.alloc_buf(100);
        assert!(matches!(
            file.write_at(0, misaligned).await,
            Err(IoError::Misaligned { .. })
        ));
        file.zero_fill(3 << 20).await.unwrap();
        assert_eq!(file.len().await.unwrap(), 3 << 20);
        file.close().await.unwrap();
        disk.rename("data", "renamed").await.unwrap();
        disk.sync_dir().await.unwrap();
        assert_eq!(disk.list().await.unwrap(), vec!["renamed".to_string()]);
        disk.remove("renamed").await.unwrap();
        assert!(matches!(
            disk.open("renamed", OpenOptions::read()).await,
            Err(IoError::NotFound { .. })
        ));
    });
}

#[test]
fn wal_round_trip_rolls_release_and_reopen() {
    // (false, false): write + fdatasync through io_uring; (true, false): O_DSYNC writes
    // through io_uring; (true, true): O_DSYNC writes on the disk's write thread (the server's
    // WAL). A write thread with dsync off changes nothing, so it is not a case.
    for (dsync, write_thread) in [(false, false), (true, false), (true, true)] {
        run(move |path| async move {
            let options = WalOptions { dsync, ..small() };
            let mut disk = GlommioDisk::open(&path).await.unwrap();
            if write_thread {
                disk = disk.with_write_thread("keel-test-write").unwrap();
            }
            let (mut wal, records) = Wal::open(disk.clone(), options.clone()).await.unwrap();
            assert!(records.is_empty());
            let mut expected = Vec::new();
            for i in 0..60u32 {
                let payloads: Vec<Vec<u8>> =
                    (0..1 + i % 7).map(|j| vec![(i + j) as u8; 900]).collect();
                let batch: Vec<(RecordType, &[u8])> = payloads
                    .iter()
                    .map(|p| (RecordType::Entry, p.as_slice()))
                    .collect();
                wal.append(&batch).await.unwrap();
                expected.extend(payloads);
            }
            assert!(wal.segment_count() > 2);
            drop(wal);
            let (mut wal, records) = Wal::open(disk.clone(), options.clone()).await.unwrap();
            let got: Vec<Vec<u8>> = records.into_iter().map(|r| r.payload).collect();
            assert_eq!(got, expected);
            let removed = wal.release_through(100).await.unwrap();
            assert!(removed > 0);
            let first = wal.first_lsn();
            wal.append(&[(RecordType::HardState, b"hs")]).await.unwrap();
            drop(wal);
            let (_, records) = Wal::open(disk, options).await.unwrap();
            assert_eq!(records[0].lsn, first);
            assert_eq!(records.last().unwrap().payload, b"hs");
        });
    }
}

#[test]
fn torn_tail_and_corruption_on_real_files() {
    run(|path| async move {
        let disk = GlommioDisk::open(&path).await.unwrap();
        let (mut wal, _) = Wal::open(disk.clone(), small()).await.unwrap();
        for i in 0..4u8 {
            wal.append(&[(RecordType::Entry, &[i; 100][..])])
                .await
                .unwrap();
        }
        drop(wal);
        let segment = path.join("0000000000000001.wal");
        // Garbage after the last batch, as a torn write would leave: truncated on open.
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes[4096 * 5..4096 * 5 + 700].fill(0xee);
        std::fs::write(&segment, &bytes).unwrap();
        let (mut wal, records) = Wal::open(disk.clone(), small()).await.unwrap();
        assert_eq!(records.len(), 4);
        wal.append(&[(RecordType::Entry, b"after")]).await.unwrap();
        drop(wal);
        let (_, records) = Wal::open(disk.clone(), small()).await.unwrap();
        assert_eq!(records.len(), 5);
        // A flipped byte in the second batch, with valid batches after it: refused.
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes[4096 * 2 + 20] ^= 1;
        std::fs::write(&segment, &bytes).unwrap();
        match Wal::open(disk, small()).await {
            Err(WalError::Corrupt { file, offset, .. }) => {
                assert_eq!(file, "0000000000000001.wal");
                assert_eq!(offset, 8192);
            }
            other => panic!("expected corruption, got {:?}", other.err()),
        }
    });
}

#[test]
fn checkpoint_round_trip_on_real_disk() {
    run(|path| async move {
        let disk = GlommioDisk::open(&path).await.unwrap();
        checkpoint::save(&disk, 3, b"three").await.unwrap();
        checkpoint::save(&disk, 4, &vec![4u8; 100_000])
            .await
            .unwrap();
        checkpoint::save(&disk, 5, b"five").await.unwrap();
        assert_eq!(checkpoint::list(&disk).await.unwrap(), vec![5, 4]);
        let disk = GlommioDisk::open(&path).await.unwrap();
        assert_eq!(
            checkpoint::load_latest(&disk).await.unwrap(),
            Some((5, b"five".to_vec()))
        );
        assert_eq!(
            checkpoint::load(&disk, 4).await.unwrap(),
            vec![4u8; 100_000]
        );
    });
}

#[test]
fn default_options_reopen_reads_a_full_segment() {
    // One 64 MiB segment read back whole at open, through the spare-segment path too: 1 MiB
    // segments roll several times with the spare prepared alongside appends.
    run(|path| async move {
        let disk = GlommioDisk::open(&path).await.unwrap();
        let (mut wal, _) = Wal::open(disk.clone(), WalOptions::default())
            .await
            .unwrap();
        wal.append(&[(RecordType::Entry, &[1u8; 256][..])])
            .await
            .unwrap();
        drop(wal);
        let (_, records) = Wal::open(disk, WalOptions::default()).await.unwrap();
        assert_eq!(records.len(), 1);

        let disk = GlommioDisk::open(path.join("rolls")).await.unwrap();
        let options = WalOptions {
            segment_bytes: 1 << 20,
            ..WalOptions::default()
        };
        let (mut wal, _) = Wal::open(disk.clone(), options.clone()).await.unwrap();
        let payload = vec![7u8; 20_000];
        for _ in 0..300 {
            wal.append(&[(RecordType::Entry, &payload[..])])
                .await
                .unwrap();
        }
        assert!(wal.segment_count() >= 5);
        drop(wal);
        let (wal, records) = Wal::open(disk, options).await.unwrap();
        assert_eq!(records.len(), 300);
        assert!(records.iter().all(|r| r.payload == payload));
        assert_eq!(wal.last_lsn(), 300);
    });
}

/// Regression: glommio's `Directory::open` fails with EBADF on a relative path, and the
/// server's default data dir (`./default.keel`) is relative, so `keel` with no flags could not
/// start. `GlommioDisk::open` must accept a path relative to the working directory.
#[test]
fn relative_directory_paths_work() {
    // A temp dir inside the working directory (the package root under cargo test), named
    // by its relative path.
    let holder = tempfile::Builder::new()
        .prefix(".keel-relative-test-")
        .tempdir_in(".")
        .unwrap();
    let relative = std::path::PathBuf::from(holder.path().file_name().unwrap()).join("wal");
    assert!(relative.is_relative());
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let disk = GlommioDisk::open(&relative).await.unwrap();
            let (mut wal, records) = Wal::open(disk.clone(), small()).await.unwrap();
            assert!(records.is_empty());
            wal.append(&[(RecordType::Entry, b"relative")])
                .await
                .unwrap();
            disk.sync_dir().await.unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
}

/// The WAL with `with_blocking_sync` (a mode for an executor with nothing else to do; the
/// server does not use it): appends are synced by a direct fdatasync and read back after
/// reopening.
#[test]
fn blocking_sync_round_trip() {
    run(|path| async move {
        let disk = GlommioDisk::open(&path)
            .await
            .unwrap()
            .with_blocking_sync(true);
        let (mut wal, _) = Wal::open(disk.clone(), small()).await.unwrap();
        for i in 0..20u32 {
            let payload = i.to_le_bytes();
            wal.append(&[(RecordType::Entry, payload.as_slice())])
                .await
                .unwrap();
        }
        assert_eq!(wal.syncs(), 20);
        drop(wal);
        let (_, records) = Wal::open(disk, small()).await.unwrap();
        assert_eq!(records.len(), 20);
        assert_eq!(records[19].payload, 19u32.to_le_bytes());
    });
}

/// A disk in `path` with a write thread, and its file "data" (1 MiB of zeros) opened O_DSYNC.
async fn dsync_file_on_write_thread(
    path: &std::path::Path,
) -> (GlommioDisk, keel_engine::io::GlommioFile) {
    let disk = GlommioDisk::open(path)
        .await
        .unwrap()
        .with_write_thread("keel-test-write")
        .unwrap();
    let file = disk.open("data", OpenOptions::create()).await.unwrap();
    file.zero_fill(1 << 20).await.unwrap();
    file.close().await.unwrap();
    let file = disk
        .open("data", OpenOptions::read_write().with_dsync(true))
        .await
        .unwrap();
    (disk, file)
}

/// Writes of O_DSYNC files on the disk's write thread: read back through io_uring, a write
/// whose caller stopped waiting still lands (its buffer and descriptor belong to the job), and
/// the thread's errors come back as the disk's.
#[test]
fn write_thread_writes_land_and_report_errors() {
    run(|path| async move {
        let (disk, file) = dsync_file_on_write_thread(&path).await;
        for i in 0..8u8 {
            let mut buf = file.alloc_buf(8192);
            assert!(buf.as_ref().iter().all(|&b| b == 0), "buffers come zeroed");
            buf.as_mut().fill(i + 1);
            file.write_at(u64::from(i) * 8192, buf).await.unwrap();
        }
        for i in 0..8u8 {
            let read = file.read_at(u64::from(i) * 8192, 8192).await.unwrap();
            assert!(read.iter().all(|&b| b == i + 1), "block {i}");
        }
        // A write polled once (so it is queued on the thread) and then dropped. The first poll
        // is almost always pending; it can be ready if this thread lost its CPU for longer
        // than the write took, and then the write landed too.
        let mut buf = file.alloc_buf(4096);
        buf.as_mut().fill(0xab);
        let mut write = Box::pin(file.write_at(65536, buf));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        if let std::task::Poll::Ready(result) = write.as_mut().poll(&mut context) {
            result.unwrap();
        }
        drop(write);
        file.close().await.unwrap();
        drop(disk);
        // Dropping the disk joined its thread, so the dropped write is done.
        let disk = GlommioDisk::open(&path).await.unwrap();
        let file = disk.open("data", OpenOptions::read()).await.unwrap();
        let read = file.read_at(65536, 4096).await.unwrap();
        assert!(read.iter().all(|&b| b == 0xab));
        file.close().await.unwrap();

        // A descriptor opened read-only: the thread's pwrite fails with EBADF.
        let disk = disk.with_write_thread("keel-test-write").unwrap();
        let file = disk
            .open("data", OpenOptions::read().with_dsync(true))
            .await
            .unwrap();
        let error = file.write_at(0, file.alloc_buf(4096)).await.unwrap_err();
        assert!(
            matches!(&error, IoError::Os { op: "write", source, .. }
                if source.raw_os_error() == Some(EBADF)),
            "{error:?}"
        );
    });
}

/// The inline switch: while on, an O_DSYNC file's write is done when first polled (a blocking
/// write on the executor's thread), off it is queued on the write thread (pending at first,
/// unless this thread lost its CPU for longer than the write took); both land. It is shared
/// by files opened before and after it is flipped, and a zero fill with it on still lands.
#[test]
fn inline_writes_block_only_while_switched_on() {
    run(|path| async move {
        let (disk, file) = dsync_file_on_write_thread(&path).await;
        let switch = disk.inline_writes();
        assert!(!switch.is_on());
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        for (i, on) in [(0u8, true), (1, false), (2, true)] {
            switch.set(on);
            let mut buf = file.alloc_buf(8192);
            buf.as_mut().fill(i + 1);
            let mut write = Box::pin(file.write_at(u64::from(i) * 8192, buf));
            match write.as_mut().poll(&mut context) {
                std::task::Poll::Ready(result) => result.unwrap(),
                std::task::Poll::Pending => {
                    assert!(!on, "write {i} waited with the switch on");
                    write.await.unwrap();
                }
            }
        }
        for i in 0..3u8 {
            let read = file.read_at(u64::from(i) * 8192, 8192).await.unwrap();
            assert!(read.iter().all(|&b| b == i + 1), "block {i}");
        }
        // A file opened after the switch went on, zero-filled (never inline) and written.
        switch.set(true);
        let other = disk
            .open("other", OpenOptions::create().with_dsync(true))
            .await
            .unwrap();
        other.zero_fill(3 << 20).await.unwrap();
        let read = other.read_at((3 << 20) - 4096, 4096).await.unwrap();
        assert!(read.len() == 4096 && read.iter().all(|&b| b == 0));
        let mut buf = other.alloc_buf(4096);
        buf.as_mut().fill(0x5a);
        let mut write = Box::pin(other.write_at(4096, buf));
        let polled = write.as_mut().poll(&mut context);
        assert!(
            matches!(polled, std::task::Poll::Ready(Ok(()))),
            "{polled:?}"
        );
        drop(write);
        let read = other.read_at(4096, 4096).await.unwrap();
        assert!(read.iter().all(|&b| b == 0x5a));
        other.close().await.unwrap();
        file.close().await.unwrap();
    });
}

/// Linux `EBADF`.
const EBADF: i32 = 9;
