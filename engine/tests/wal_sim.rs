//! WAL behaviour on the simulated disk: round trips, segment rolls, release, corruption,
//! torn tails and I/O failures.

use futures_lite::future::block_on;
use keel_engine::io::{Disk, SimDisk, ENOSPC};
use keel_engine::wal::{Record, RecordType, Wal, WalError, WalOptions};

/// 1 MiB segments: the 64 MiB default makes every open scan 64 MiB, slow in debug builds.
fn medium_segments() -> WalOptions {
    WalOptions {
        segment_bytes: 1 << 20,
        dsync: false,
    }
}

fn small_segments() -> WalOptions {
    WalOptions {
        segment_bytes: 16 * 1024,
        dsync: false,
    }
}

fn payload(lsn: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (lsn as usize * 31 + i) as u8).collect()
}

/// Appends `batches` batches of `per_batch` entries of `len` bytes; returns what was written.
async fn append_batches(
    wal: &mut Wal<SimDisk>,
    batches: usize,
    per_batch: usize,
    len: usize,
) -> Vec<Record> {
    let mut written = Vec::new();
    for _ in 0..batches {
        let first = wal.last_lsn() + 1;
        let payloads: Vec<Vec<u8>> = (0..per_batch)
            .map(|i| payload(first + i as u64, len))
            .collect();
        let batch: Vec<(RecordType, &[u8])> = payloads
            .iter()
            .map(|p| (RecordType::Entry, p.as_slice()))
            .collect();
        let last = wal.append(&batch).await.unwrap();
        assert_eq!(last, first + per_batch as u64 - 1);
        for (i, p) in payloads.into_iter().enumerate() {
            written.push(Record {
                lsn: first + i as u64,
                record_type: RecordType::Entry,
                payload: p,
            });
        }
    }
    written
}

#[test]
fn round_trip_with_all_record_types() {
    block_on(async {
        let disk = SimDisk::new(1);
        let (mut wal, records) = Wal::open(disk.clone(), WalOptions::default())
            .await
            .unwrap();
        assert!(records.is_empty());
        assert_eq!(wal.last_lsn(), 0);
        let batch: Vec<(RecordType, &[u8])> = vec![
            (RecordType::Entry, b"one"),
            (RecordType::HardState, b"term"),
            (RecordType::Snapshot, b""),
            (RecordType::Checkpoint, b"ckpt"),
        ];
        assert_eq!(wal.append(&batch).await.unwrap(), 4);
        assert_eq!(wal.append(&[]).await.unwrap(), 4);
        assert_eq!(wal.syncs(), 1);
        assert_eq!(wal.bytes_written(), 4096);
        drop(wal);
        let (wal, records) = Wal::open(disk, WalOptions::default()).await.unwrap();
        assert_eq!(wal.last_lsn(), 4);
        let got: Vec<(u64, RecordType, &[u8])> = records
            .iter()
            .map(|r| (r.lsn, r.record_type, r.payload.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, RecordType::Entry, &b"one"[..]),
                (2, RecordType::HardState, &b"term"[..]),
                (3, RecordType::Snapshot, &b""[..]),
                (4, RecordType::Checkpoint, &b"ckpt"[..]),
            ]
        );
    });
}

#[test]
fn many_batches_roll_segments_and_reopen_appends() {
    block_on(async {
        let disk = SimDisk::new(2);
        let (mut wal, _) = Wal::open(disk.clone(), small_segments()).await.unwrap();
        let mut expected = append_batches(&mut wal, 40, 3, 700).await;
        // A batch larger than a whole segment gets a segment of its own.
        expected.extend(append_batches(&mut wal, 1, 40, 1000).await);
        expected.extend(append_batches(&mut wal, 5, 1, 10).await);
        assert!(wal.segment_count() > 5, "segments: {}", wal.segment_count());
        drop(wal);
        let (mut wal, records) = Wal::open(disk.clone(), small_segments()).await.unwrap();
        assert_eq!(records, expected);
        expected.extend(append_batches(&mut wal, 10, 2, 300).await);
        drop(wal);
        let (_, records) = Wal::open(disk, small_segments()).await.unwrap();
        assert_eq!(records, expected);
    });
}

#[test]
fn release_through_removes_old_segments() {
    block_on(async {
        let disk = SimDisk::new(3);
        let (mut wal, _) = Wal::open(disk.clone(), small_segments()).await.unwrap();
        let expected = append_batches(&mut wal, 30, 2, 2000).await;
        let before = wal.segment_count();
        assert_eq!(wal.release_through(0).await.unwrap(), 0);
        let removed = wal.release_through(30).await.unwrap();
        assert!(removed > 0);
        assert_eq!(wal.segment_count(), before - removed);
        let first = wal.first_lsn();
        assert!(first > 1 && first <= 31, "first LSN {first}");
        // Releasing everything still keeps the current segment.
        wal.release_through(u64::MAX).await.unwrap();
        assert_eq!(wal.segment_count(), 1);
        let first = wal.first_lsn();
        drop(wal);
        let (mut wal, records) = Wal::open(disk.clone(), small_segments()).await.unwrap();
        assert_eq!(records.first().map(|r| r.lsn), Some(first));
        assert_eq!(records, expected[(first - 1) as usize..].to_vec());
        assert_eq!(wal.first_lsn(), first);
        append_batches(&mut wal, 1, 1, 1).await;
        assert_eq!(wal.last_lsn(), 61);
    });
}

#[test]
fn corruption_mid_log_names_file_and_offset() {
    block_on(async {
        let disk = SimDisk::new(4);
        let (mut wal, _) = Wal::open(disk.clone(), medium_segments()).await.unwrap();
        append_batches(&mut wal, 5, 2, 100).await;
        drop(wal);
        // Flip a payload byte of the first batch; four valid batches follow it.
        let name = "0000000000000001.wal";
        assert!(disk.corrupt(name, 4096 + 30, &[0xff]));
        let error = Wal::open(disk, medium_segments()).await.err().unwrap();
        match &error {
            WalError::Corrupt { file, offset, .. } => {
                assert_eq!(file, name);
                assert_eq!(*offset, 4096);
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let text = error.to_string();
        assert!(
            text.contains(name) && text.contains("offset 4096"),
            "{text}"
        );
    });
}

#[test]
fn damage_in_an_older_segment_is_corruption() {
    block_on(async {
        let disk = SimDisk::new(5);
        let (mut wal, _) = Wal::open(disk.clone(), small_segments()).await.unwrap();
        append_batches(&mut wal, 20, 1, 3000).await;
        drop(wal);
        let names = disk.list().await.unwrap();
        // The last batch of the first segment: nothing valid follows it in that segment, but
        // a later segment exists, so this cannot be a torn tail.
        let first = &names[0];
        let contents = disk.file_contents(first).unwrap();
        let last_block = (1..contents.len() / 4096)
            .rev()
            .find(|b| contents[b * 4096..b * 4096 + 4] != [0, 0, 0, 0])
            .unwrap();
        disk.corrupt(first, (last_block * 4096 + 40) as u64, &[0x55]);
        let error = Wal::open(disk, small_segments()).await.err().unwrap();
        assert!(
            matches!(&error, WalError::Corrupt { file, .. } if file == first),
            "{error}"
        );
    });
}

#[test]
fn bad_segment_header_is_corruption() {
    block_on(async {
        let disk = SimDisk::new(6);
        let (mut wal, _) = Wal::open(disk.clone(), medium_segments()).await.unwrap();
        append_batches(&mut wal, 1, 1, 10).await;
        drop(wal);
        disk.corrupt("0000000000000001.wal", 17, &[9]);
        let error = Wal::open(disk, medium_segments()).await.err().unwrap();
        assert!(
            matches!(error, WalError::Corrupt { offset: 24, .. }),
            "{error}"
        );
    });
}

#[test]
fn torn_tail_is_truncated_and_appends_continue() {
    block_on(async {
        let disk = SimDisk::new(7);
        let (mut wal, _) = Wal::open(disk.clone(), medium_segments()).await.unwrap();
        let mut expected = append_batches(&mut wal, 3, 4, 1500).await;
        append_batches(&mut wal, 1, 4, 1500).await;
        drop(wal);
        // Damage the last batch (it spans blocks 4..6) as a torn write would leave it.
        let name = "0000000000000001.wal";
        let contents = disk.file_contents(name).unwrap();
        let last_batch_start = 4096 + 3 * 8192;
        assert_ne!(
            contents[last_batch_start..last_batch_start + 4],
            [0, 0, 0, 0]
        );
        disk.corrupt(name, (last_batch_start + 4096) as u64, &[0xab; 512]);
        let (mut wal, records) = Wal::open(disk.clone(), medium_segments()).await.unwrap();
        assert_eq!(records, expected);
        assert_eq!(wal.last_lsn(), 12);
        // The garbage was zeroed, so new (shorter) batches after the tail scan cleanly.
        expected.extend(append_batches(&mut wal, 1, 1, 10).await);
        expected.extend(append_batches(&mut wal, 1, 1, 10).await);
        drop(wal);
        let (_, records) = Wal::open(disk, medium_segments()).await.unwrap();
        assert_eq!(records, expected);
    });
}

#[test]
fn failed_sync_poisons_until_reopen() {
    block_on(async {
        let disk = SimDisk::new(8);
        let options = WalOptions {
            dsync: false,
            ..medium_segments()
        };
        let (mut wal, _) = Wal::open(disk.clone(), options.clone()).await.unwrap();
        let expected = append_batches(&mut wal, 2, 1, 10).await;
        disk.fail_next_sync();
        let error = wal.append(&[(RecordType::Entry, b"x")]).await.unwrap_err();
        assert!(matches!(error, WalError::Io(_)), "{error}");
        assert!(wal.is_poisoned());
        let error = wal.append(&[(RecordType::Entry, b"y")]).await.unwrap_err();
        assert!(matches!(error, WalError::Poisoned), "{error}");
        drop(wal);
        // The unacknowledged batch may or may not survive; acknowledged ones always do.
        disk.crash();
        let (mut wal, records) = Wal::open(disk, options).await.unwrap();
        assert_eq!(records[..2], expected[..]);
        assert!(records.len() <= 3);
        wal.append(&[(RecordType::Entry, b"z")]).await.unwrap();
    });
}

#[test]
fn failed_write_poisons() {
    block_on(async {
        let disk = SimDisk::new(9);
        let (mut wal, _) = Wal::open(disk.clone(), medium_segments()).await.unwrap();
        disk.fail_next_write();
        assert!(matches!(
            wal.append(&[(RecordType::Entry, b"x")]).await,
            Err(WalError::Io(_))
        ));
        assert!(matches!(
            wal.append(&[(RecordType::Entry, b"x")]).await,
            Err(WalError::Poisoned)
        ));
    });
}

#[test]
fn disk_full_fails_the_append_with_enospc() {
    block_on(async {
        let disk = SimDisk::new(10);
        let (mut wal, _) = Wal::open(disk.clone(), small_segments()).await.unwrap();
        let expected = append_batches(&mut wal, 3, 1, 3000).await;
        // No room for another segment: the roll fails.
        disk.set_space_limit(Some(disk.used_bytes()));
        let mut error = None;
        for _ in 0..10 {
            if let Err(e) = wal.append(&[(RecordType::Entry, &[1u8; 3000][..])]).await {
                error = Some(e);
                break;
            }
        }
        match error {
            Some(WalError::Io(io)) => assert_eq!(io.raw_os_error(), Some(ENOSPC)),
            other => panic!("expected ENOSPC, got {other:?}"),
        }
        assert!(matches!(
            wal.append(&[(RecordType::Entry, b"x")]).await,
            Err(WalError::Poisoned)
        ));
        drop(wal);
        disk.set_space_limit(None);
        let (_, records) = Wal::open(disk, small_segments()).await.unwrap();
        assert_eq!(records[..3], expected[..]);
    });
}

#[test]
fn leftover_segment_tmp_files_are_removed() {
    block_on(async {
        let disk = SimDisk::new(11);
        let (mut wal, _) = Wal::open(disk.clone(), medium_segments()).await.unwrap();
        append_batches(&mut wal, 1, 1, 10).await;
        drop(wal);
        disk.open(
            "0000000000000002.wal.tmp",
            keel_engine::io::OpenOptions::create(),
        )
        .await
        .unwrap();
        let (_, records) = Wal::open(disk.clone(), medium_segments()).await.unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(
            disk.list().await.unwrap(),
            vec!["0000000000000001.wal".to_string()]
        );
    });
}

#[test]
fn dsync_mode_round_trips() {
    block_on(async {
        let disk = SimDisk::new(12);
        let options = WalOptions {
            segment_bytes: 16 * 1024,
            dsync: true,
        };
        let (mut wal, _) = Wal::open(disk.clone(), options.clone()).await.unwrap();
        let expected = append_batches(&mut wal, 10, 3, 1000).await;
        drop(wal);
        disk.crash();
        let (_, records) = Wal::open(disk, options).await.unwrap();
        assert_eq!(records, expected);
    });
}

#[test]
fn spare_segment_is_prepared_and_installed_on_roll() {
    block_on(async {
        let disk = SimDisk::new(13);
        let options = WalOptions {
            segment_bytes: 256 * 1024,
            dsync: false,
        };
        let (mut wal, _) = Wal::open(disk.clone(), options.clone()).await.unwrap();
        let mut expected = Vec::new();
        let mut saw_spare = false;
        for _ in 0..40 {
            expected.extend(append_batches(&mut wal, 1, 5, 3000).await);
            saw_spare |= disk
                .list()
                .await
                .unwrap()
                .iter()
                .any(|n| n == "spare.wal.tmp");
        }
        assert!(saw_spare);
        assert!(
            wal.segment_count() >= 3,
            "segments: {}",
            wal.segment_count()
        );
        drop(wal);
        let (_, records) = Wal::open(disk.clone(), options).await.unwrap();
        assert_eq!(records, expected);
        // Opening removes a half-prepared spare.
        assert!(disk
            .list()
            .await
            .unwrap()
            .iter()
            .all(|n| n.ends_with(".wal")));
    });
}

#[test]
fn random_bit_flips_are_detected_or_harmless() {
    // Whatever single byte is damaged, open either reports corruption or returns exactly the
    // acknowledged records (minus the last batch, when the damage hit that batch: it is then
    // indistinguishable from a torn write). It never returns altered or reordered records.
    for seed in 0..300u64 {
        block_on(async {
            let disk = SimDisk::new(seed);
            let options = WalOptions {
                segment_bytes: 64 * 1024,
                dsync: false,
            };
            let (mut wal, _) = Wal::open(disk.clone(), options.clone()).await.unwrap();
            let mut expected = Vec::new();
            let mut last_batch_len = 0;
            for batch in 0..12 {
                let written = append_batches(&mut wal, 1, 1 + batch % 4, 500 + 700 * batch).await;
                last_batch_len = written.len();
                expected.extend(written);
            }
            drop(wal);
            let names: Vec<String> = disk
                .list()
                .await
                .unwrap()
                .into_iter()
                .filter(|n| n.ends_with(".wal"))
                .collect();
            let mut rng = keel_engine::io::SeededRng::new(seed);
            let name = &names[rng.below(names.len() as u64) as usize];
            let contents = disk.file_contents(name).unwrap();
            // Aim at written bytes most of the time, anywhere otherwise.
            let written_end = contents.iter().rposition(|&b| b != 0).unwrap_or(0) + 1;
            let limit = if rng.chance(4, 5) {
                written_end
            } else {
                contents.len()
            };
            let offset = rng.below(limit as u64);
            let old = contents[offset as usize];
            let new = old ^ (1 << rng.below(8)) as u8;
            disk.corrupt(name, offset, &[new]);
            match Wal::open(disk.clone(), options).await {
                Ok((_, records)) => {
                    let full = records == expected;
                    let without_last = records[..] == expected[..expected.len() - last_batch_len];
                    let is_last = name == names.last().unwrap();
                    assert!(
                        full || (without_last && is_last),
                        "seed {seed}: flip at {name}:{offset} returned {} of {} records",
                        records.len(),
                        expected.len()
                    );
                }
                Err(WalError::Corrupt { file, .. }) => assert_eq!(&file, name, "seed {seed}"),
                Err(other) => panic!("seed {seed}: unexpected error {other}"),
            }
        });
    }
}
