//! Durability: SIGKILL the server under concurrent write load, restart it, and check that
//! every acknowledged write is there; then tear the WAL's tail by hand and check that the
//! member recovers and keeps serving.
//!
//! The server runs as a child process (the real binary), so a kill is a real crash: no
//! destructor, no final flush. Only what the WAL synced before acknowledging can survive.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::{PutRequest, RangeRequest};
use tonic::transport::Channel;

/// Every acknowledged (key, value), shared by the writer tasks.
type Acked = Arc<Mutex<Vec<(Vec<u8>, Vec<u8>)>>>;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const WRITERS: usize = 16;
/// Acknowledged writes to wait for before the kill, per round.
const ACKS_BEFORE_KILL: usize = 1500;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Member {
    child: Child,
    client: SocketAddr,
    log: PathBuf,
}

impl Member {
    fn start(data_dir: &Path, log: PathBuf) -> Member {
        let client_port = free_port();
        let peer_port = free_port();
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            // Small checkpoints interval so kills land before, during and after checkpoints.
            .args(["--snapshot-count", "700"])
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start keel");
        let member = Member {
            child,
            client: SocketAddr::from(([127, 0, 0, 1], client_port)),
            log,
        };
        member.wait_ready();
        member
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(mut stream) = std::net::TcpStream::connect(self.client) {
                use std::io::{Read, Write};
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let request = "GET /health HTTP/1.1\r\nHost: keel\r\nConnection: close\r\n\r\n";
                let mut reply = String::new();
                if stream.write_all(request.as_bytes()).is_ok()
                    && stream.read_to_string(&mut reply).is_ok()
                    && reply.starts_with("HTTP/1.1 200")
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        panic!("keel did not become ready in {READY_TIMEOUT:?}; its log:\n{log}");
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn client(addr: SocketAddr) -> KvClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect");
    KvClient::new(channel)
}

/// Writes `key_prefix-w-i` from `WRITERS` tasks until the server dies; returns every
/// acknowledged (key, value).
async fn write_until_killed(addr: SocketAddr, round: usize, acked: Acked) {
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let acked = acked.clone();
        let mut kv = client(addr).await;
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("r{round}-w{writer}-{i:06}").into_bytes();
                let value = format!("value-{round}-{writer}-{i}").into_bytes();
                let request = PutRequest {
                    key: key.clone(),
                    value: value.clone(),
                    ..Default::default()
                };
                match tokio::time::timeout(Duration::from_secs(10), kv.put(request)).await {
                    Ok(Ok(_)) => acked.lock().unwrap().push((key, value)),
                    _ => break,
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

async fn check_all_present(addr: SocketAddr, acked: &[(Vec<u8>, Vec<u8>)]) {
    let mut kv = client(addr).await;
    let response = kv
        .range(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    let stored: std::collections::HashMap<Vec<u8>, Vec<u8>> = response
        .kvs
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect();
    let mut missing = 0;
    for (key, value) in acked {
        match stored.get(key) {
            Some(v) if v == value => {}
            _ => missing += 1,
        }
    }
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged writes are missing after restart",
        acked.len()
    );
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let log = dir.path().join("keel.log");
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let acked: Acked = Arc::default();
    for round in 0..3 {
        let member = Member::start(&data_dir, log.clone());
        let addr = member.client;
        // Everything acknowledged in earlier rounds is still there after the restart.
        runtime.block_on(check_all_present(addr, &acked.lock().unwrap().clone()));
        let before = acked.lock().unwrap().len();
        let writers = {
            let acked = acked.clone();
            runtime.spawn(async move { write_until_killed(addr, round, acked).await })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < before + ACKS_BEFORE_KILL {
            assert!(Instant::now() < deadline, "writes did not progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        member.kill();
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), writers)
                .await
                .expect("writers stop after the kill")
                .expect("writer task");
        });
    }
    let member = Member::start(&data_dir, log);
    runtime.block_on(check_all_present(member.client, &acked.lock().unwrap()));
}

/// The newest WAL segment (by name: segments are named by their first sequence number).
fn newest_segment(wal_dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(wal_dir)
        .expect("wal dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    segments.pop().expect("a WAL segment")
}

#[test]
fn torn_wal_tail_is_recovered() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let log = dir.path().join("keel.log");
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let member = Member::start(&data_dir, log.clone());
    let written: Vec<(Vec<u8>, Vec<u8>)> = (0..50)
        .map(|i| (format!("torn-{i:03}").into_bytes(), vec![b'v'; 100 + i]))
        .collect();
    runtime.block_on(async {
        let mut kv = client(member.client).await;
        for (key, value) in &written {
            kv.put(PutRequest {
                key: key.clone(),
                value: value.clone(),
                ..Default::default()
            })
            .await
            .expect("put");
        }
    });
    member.kill();

    // A torn write: garbage in the first all-zero block after the last written one, as a
    // batch write that the crash interrupted half-way would leave.
    let segment = newest_segment(&data_dir.join("member").join("wal"));
    let bytes = std::fs::read(&segment).expect("read segment");
    let last_written = bytes
        .chunks(4096)
        .rposition(|block| block.iter().any(|b| *b != 0))
        .expect("a written block");
    let torn_offset = (last_written as u64 + 1) * 4096;
    assert!(torn_offset + 4096 <= bytes.len() as u64, "segment has room");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open segment");
    file.seek(SeekFrom::Start(torn_offset)).expect("seek");
    let garbage: Vec<u8> = (0..1500u32).map(|i| (i * 7 + 3) as u8).collect();
    file.write_all(&garbage).expect("write garbage");
    file.sync_all().expect("sync");
    drop(file);

    let member = Member::start(&data_dir, log.clone());
    runtime.block_on(check_all_present(member.client, &written));
    // The member keeps accepting writes after the repair, and they survive a restart too.
    let more = (b"after-torn".to_vec(), b"ok".to_vec());
    runtime.block_on(async {
        let mut kv = client(member.client).await;
        kv.put(PutRequest {
            key: more.0.clone(),
            value: more.1.clone(),
            ..Default::default()
        })
        .await
        .expect("put after recovery");
    });
    member.kill();
    let member = Member::start(&data_dir, log);
    let mut expected = written;
    expected.push(more);
    runtime.block_on(check_all_present(member.client, &expected));
}
