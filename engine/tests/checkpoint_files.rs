//! Checkpoint files on the simulated disk: round trip, retention, corruption, leftovers and
//! crashes during a save.

use futures_lite::future::block_on;
use keel_engine::checkpoint::{self, CheckpointError};
use keel_engine::io::{Disk, File, OpenOptions, SimDisk};

#[test]
fn round_trip_and_retention() {
    block_on(async {
        let disk = SimDisk::new(1);
        assert!(checkpoint::load_latest(&disk).await.unwrap().is_none());
        checkpoint::save(&disk, 10, b"ten").await.unwrap();
        assert_eq!(
            checkpoint::load_latest(&disk).await.unwrap(),
            Some((10, b"ten".to_vec()))
        );
        checkpoint::save(&disk, 20, &[7u8; 10_000]).await.unwrap();
        checkpoint::save(&disk, 30, b"").await.unwrap();
        assert_eq!(checkpoint::list(&disk).await.unwrap(), vec![30, 20]);
        assert_eq!(
            checkpoint::load_latest(&disk).await.unwrap(),
            Some((30, Vec::new()))
        );
        assert_eq!(
            checkpoint::load(&disk, 20).await.unwrap(),
            vec![7u8; 10_000]
        );
    });
}

/// Payloads that span several write chunks, with the chunk and block boundaries falling at
/// the header, inside the payload and at its end, read back byte for byte.
#[test]
fn payloads_of_several_chunks_round_trip() {
    block_on(async {
        let disk = SimDisk::new(11);
        let chunk = checkpoint::WRITE_CHUNK_BYTES;
        for (index, len) in [chunk - 64, chunk, 3 * chunk + 4097, 2 * chunk - 63]
            .into_iter()
            .enumerate()
        {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
            checkpoint::save(&disk, index as u64 + 1, &payload)
                .await
                .unwrap();
            assert_eq!(
                checkpoint::load(&disk, index as u64 + 1).await.unwrap(),
                payload,
                "{len}"
            );
        }
    });
}

/// A payload saved from parts is the same file as the payload saved whole.
#[test]
fn parts_save_as_their_concatenation() {
    block_on(async {
        let (whole, parted) = (SimDisk::new(12), SimDisk::new(13));
        let chunk = checkpoint::WRITE_CHUNK_BYTES;
        let payload: Vec<u8> = (0..2 * chunk + 100).map(|i| (i % 251) as u8).collect();
        checkpoint::save(&whole, 9, &payload).await.unwrap();
        let (a, rest) = payload.split_at(37);
        let (b, c) = rest.split_at(chunk);
        checkpoint::save_parts(&parted, 9, &[a, &[], b, c])
            .await
            .unwrap();
        assert_eq!(checkpoint::load(&parted, 9).await.unwrap(), payload);
        let name = checkpoint::file_name(9);
        let mut images = Vec::new();
        for disk in [whole, parted] {
            let file = disk.open(&name, OpenOptions::read()).await.unwrap();
            let len = file.len().await.unwrap();
            images.push(file.read_at(0, len as usize).await.unwrap());
        }
        assert_eq!(images[0], images[1]);
    });
}

/// A payload streamed through `CheckpointWriter` in uneven pieces, its first bytes given only
/// at the end, is the same file as the payload saved whole: held bytes within the first
/// block or beyond it, payloads shorter than the held blocks and spanning several chunks.
#[test]
fn a_streamed_payload_with_held_bytes_is_the_file_saved_whole() {
    block_on(async {
        let chunk = checkpoint::WRITE_CHUNK_BYTES;
        for (case, (held, len)) in [
            (0, 10),
            (48, 48),
            (100, 3000),
            (5000, 6000),
            (112, 2 * chunk + 4097),
            (9000, chunk - 64),
            // Held blocks longer than a chunk (large metadata) are written a chunk at a time.
            (chunk + 5000, 3 * chunk),
        ]
        .into_iter()
        .enumerate()
        {
            let (whole, streamed) = (SimDisk::new(20), SimDisk::new(21));
            let payload: Vec<u8> = (0..len).map(|i| (i * 13 + i / 777) as u8).collect();
            checkpoint::save(&whole, 5, &payload).await.unwrap();
            let mut writer = checkpoint::CheckpointWriter::create(&streamed, 5, held)
                .await
                .unwrap();
            // The held bytes' place is filled with junk, which the writer must ignore.
            let mut stream = payload.clone();
            stream[..held].fill(0xee);
            let mut at = 0;
            for piece in [1, 47, 4096, 333, chunk - 1, 2, 65_536].iter().cycle() {
                let end = (at + piece).min(len);
                writer.append(&stream[at..end]).await.unwrap();
                at = end;
                if at == len {
                    break;
                }
            }
            assert_eq!(writer.payload_len(), len);
            assert_eq!(writer.finish(&payload[..held]).await.unwrap(), len as u64);
            assert_eq!(checkpoint::load(&streamed, 5).await.unwrap(), payload);
            let name = checkpoint::file_name(5);
            let mut images = Vec::new();
            for disk in [whole, streamed] {
                let file = disk.open(&name, OpenOptions::read()).await.unwrap();
                let len = file.len().await.unwrap();
                images.push(file.read_at(0, len as usize).await.unwrap());
                assert!(!disk
                    .list()
                    .await
                    .unwrap()
                    .iter()
                    .any(|n| n.ends_with(".tmp")));
            }
            assert!(images[0] == images[1], "case {case}");
        }
    });
}

/// A write that fails while the payload streams in: that append and every later one fail,
/// and so does `finish`, which leaves no temporary file; the older checkpoint stays. A sync
/// that fails at `finish` does the same.
#[test]
fn a_failed_write_or_sync_leaves_the_older_checkpoint_and_no_temporary_file() {
    block_on(async {
        let disk = SimDisk::new(23);
        checkpoint::save(&disk, 3, b"three").await.unwrap();
        let chunk = checkpoint::WRITE_CHUNK_BYTES;
        let mut writer = checkpoint::CheckpointWriter::create(&disk, 4, 10)
            .await
            .unwrap();
        writer.append(&vec![1; chunk]).await.unwrap();
        disk.fail_next_write();
        assert!(writer.append(&vec![2; chunk]).await.is_err());
        assert!(writer.append(&[3; 10]).await.is_err());
        assert!(writer.finish(&[0; 10]).await.is_err());
        assert_eq!(disk.list().await.unwrap(), vec![checkpoint::file_name(3)]);

        let mut writer = checkpoint::CheckpointWriter::create(&disk, 5, 0)
            .await
            .unwrap();
        writer.append(&vec![4; 3 * chunk]).await.unwrap();
        disk.fail_next_sync();
        assert!(writer.finish(&[]).await.is_err());
        assert_eq!(disk.list().await.unwrap(), vec![checkpoint::file_name(3)]);
        assert_eq!(
            checkpoint::load_latest(&disk).await.unwrap(),
            Some((3, b"three".to_vec()))
        );
    });
}

/// An abandoned streamed checkpoint leaves no file behind and the older checkpoint in place.
#[test]
fn an_abandoned_writer_leaves_the_older_checkpoint() {
    block_on(async {
        let disk = SimDisk::new(22);
        checkpoint::save(&disk, 3, b"three").await.unwrap();
        let mut writer = checkpoint::CheckpointWriter::create(&disk, 4, 0)
            .await
            .unwrap();
        writer.append(&[1; 10_000]).await.unwrap();
        writer.abandon().await;
        assert_eq!(disk.list().await.unwrap(), vec![checkpoint::file_name(3)]);
        assert_eq!(
            checkpoint::load_latest(&disk).await.unwrap(),
            Some((3, b"three".to_vec()))
        );
    });
}

#[test]
fn corrupt_newest_falls_back_to_older_valid_one() {
    block_on(async {
        let disk = SimDisk::new(2);
        checkpoint::save(&disk, 5, b"five").await.unwrap();
        checkpoint::save(&disk, 6, b"six").await.unwrap();
        disk.corrupt(&checkpoint::file_name(6), 64, b"X");
        let error = checkpoint::load(&disk, 6).await.unwrap_err();
        assert!(matches!(error, CheckpointError::Corrupt { .. }), "{error}");
        assert!(error
            .to_string()
            .contains("checkpoint-0000000000000006.ckpt"));
        assert_eq!(
            checkpoint::load_latest(&disk).await.unwrap(),
            Some((5, b"five".to_vec()))
        );
        // With no valid checkpoint left, the newest one's damage is reported.
        disk.corrupt(&checkpoint::file_name(5), 20, b"\x01");
        let error = checkpoint::load_latest(&disk).await.unwrap_err();
        assert!(error.to_string().contains("0000000000000006"), "{error}");
    });
}

#[test]
fn tmp_leftovers_are_ignored_and_cleaned() {
    block_on(async {
        let disk = SimDisk::new(3);
        checkpoint::save(&disk, 1, b"one").await.unwrap();
        let tmp = disk
            .open(
                "checkpoint-0000000000000009.ckpt.tmp",
                OpenOptions::create(),
            )
            .await;
        tmp.unwrap().write_at(0, vec![1; 4096]).await.unwrap();
        assert_eq!(
            checkpoint::load_latest(&disk).await.unwrap(),
            Some((1, b"one".to_vec()))
        );
        checkpoint::save(&disk, 2, b"two").await.unwrap();
        let names = disk.list().await.unwrap();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    });
}

#[test]
fn crash_during_save_leaves_old_or_new_checkpoint() {
    for seed in 0..200 {
        block_on(async {
            let disk = SimDisk::new(seed);
            checkpoint::save(&disk, 1, b"old").await.unwrap();
            disk.crash_at_sync_point(disk.sync_points() + seed % 4);
            let saved = checkpoint::save(&disk, 2, &[2u8; 5000]).await.is_ok();
            disk.crash();
            let loaded = checkpoint::load_latest(&disk).await.unwrap();
            match loaded {
                Some((1, payload)) => assert_eq!(payload, b"old", "seed {seed}"),
                Some((2, payload)) => assert_eq!(payload, vec![2u8; 5000], "seed {seed}"),
                other => panic!("seed {seed}: unexpected {other:?} (save ok: {saved})"),
            }
        });
    }
}
