//! Shared harness for the side-by-side tests: starts `keel` (the binary of this package) and
//! upstream etcd with the same flags on free ports in temporary directories, waits for them to
//! answer `/health`, runs etcdctl against them, and normalizes etcdctl output so that only the
//! parts that must agree between the two servers are compared.
//!
//! Each test binary uses only some of these helpers, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use regex::Regex;
use tempfile::TempDir;

pub mod ctl;
pub mod ops;

/// Where Debian's etcd-server package (installed by `scripts/install-test-deps.sh`) puts etcd.
pub const ETCD_BIN: &str = "/usr/bin/etcd";
/// Where Debian's etcd-client package puts etcdctl.
pub const ETCDCTL_BIN: &str = "/usr/bin/etcdctl";
/// How long a server may take to answer `/health` before the test fails with its log.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Passed to every etcdctl call so that a stuck server fails the test instead of hanging it.
pub const COMMAND_TIMEOUT: &str = "--command-timeout=15s";

/// Which server implementation a [`Server`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// This package's `keel` binary.
    Keel,
    /// Upstream etcd 3.4 from `/usr/bin/etcd`.
    Etcd,
}

impl Kind {
    /// The server binary.
    pub fn binary(self) -> PathBuf {
        match self {
            Kind::Keel => PathBuf::from(env!("CARGO_BIN_EXE_keel")),
            Kind::Etcd => {
                let path = PathBuf::from(ETCD_BIN);
                assert!(
                    path.exists() && Path::new(ETCDCTL_BIN).exists(),
                    "{ETCD_BIN} or {ETCDCTL_BIN} is missing: run scripts/install-test-deps.sh \
                     (CI runs it before the tests) to install upstream etcd and etcdctl"
                );
                path
            }
        }
    }
}

/// A running server process. Dropping it kills the process (SIGKILL) and waits for it, so
/// that no test leaves a server behind, even when it panics.
pub struct Server {
    /// Which implementation runs.
    pub kind: Kind,
    child: Option<Child>,
    /// `127.0.0.1:<client port>`, the form etcdctl's `--endpoints` and tonic take.
    pub endpoint: String,
    /// The client port alone.
    pub client_port: u16,
    /// The peer port alone.
    pub peer_port: u16,
    /// Holds the data dir and the log; removed on drop.
    pub dir: TempDir,
    log_path: PathBuf,
}

/// What each thread of process `pid` is doing, one line per thread (name, state, the kernel
/// function it waits in, its voluntary context switches, the system call it is in), for the
/// message of a server that did not become ready: a hang shows where it sleeps.
pub fn thread_states(pid: u32) -> String {
    let read = |path: String| std::fs::read_to_string(path).unwrap_or_default();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("(process {pid} is gone)");
    };
    let mut lines: Vec<String> = tasks
        .flatten()
        .map(|task| {
            let dir = task.path().display().to_string();
            let status = read(format!("{dir}/status"));
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            let syscall = read(format!("{dir}/syscall"));
            format!(
                "  {} {:<16} {} wchan={} voluntary_switches={} syscall={}",
                task.file_name().to_string_lossy(),
                field("Name:"),
                field("State:"),
                read(format!("{dir}/wchan")),
                field("voluntary_ctxt_switches:"),
                syscall
                    .split_whitespace()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// A port that was free a moment ago. Another process could take it before the server binds
/// it; that race is rare enough on a test machine and shows as a clear readiness failure.
///
/// The kernel may hand the same ephemeral port out again once it is released, so the ports
/// handed out by this process are remembered: two tests running side by side never get the
/// same one.
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        if claim_port(port) {
            return port;
        }
    }
}

/// Records `port` as handed out by this process; false if it already was.
fn claim_port(port: u16) -> bool {
    static CLAIMED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    if claimed.contains(&port) {
        return false;
    }
    claimed.push(port);
    true
}

/// A loopback port where nothing answers, held for the value's lifetime: a TCP socket bound
/// to it but not listening, so a connection is refused at once and no server (of this or
/// another process) can bind the port meanwhile. A port merely found free could be taken by
/// a server of a test running alongside, which would then answer for the "dead" endpoint.
pub struct DeadPort {
    fd: libc::c_int,
    /// The held port.
    pub port: u16,
}

impl DeadPort {
    pub fn new() -> DeadPort {
        // SAFETY: plain socket calls on a descriptor this value owns; `addr` and `len` are
        // valid for the sizes passed.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let bound = libc::bind(fd, (&raw const addr).cast(), len);
            assert_eq!(bound, 0, "bind: {}", std::io::Error::last_os_error());
            let mut len = len;
            let named = libc::getsockname(fd, (&raw mut addr).cast(), &raw mut len);
            assert_eq!(named, 0, "getsockname: {}", std::io::Error::last_os_error());
            let port = u16::from_be(addr.sin_port);
            claim_port(port);
            DeadPort { fd, port }
        }
    }
}

impl Drop for DeadPort {
    fn drop(&mut self) {
        // SAFETY: `fd` is this value's own open descriptor, closed once.
        unsafe {
            libc::close(self.fd);
        }
    }
}

impl Server {
    /// Starts `kind` with etcd's single-member flags plus `extra` and waits until `/health`
    /// answers 200.
    pub fn start(kind: Kind, extra: &[&str]) -> Server {
        let binary = kind.binary();
        let dir = tempfile::Builder::new()
            .prefix(match kind {
                Kind::Keel => "keel-compat-",
                Kind::Etcd => "etcd-compat-",
            })
            .tempdir()
            .expect("create a temp dir");
        let client_port = free_port();
        let mut peer_port = free_port();
        while peer_port == client_port {
            peer_port = free_port();
        }
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let data_dir = dir.path().join("data");
        let log_path = dir.path().join("server.log");
        let log = File::create(&log_path).expect("create the server log");
        let log_err = log.try_clone().expect("clone the log handle");
        let mut command = Command::new(&binary);
        command
            .arg("--name=compat")
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=compat={peer_url}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // Keep the environment from changing either server's configuration.
        for (key, _) in std::env::vars() {
            if key.starts_with("ETCD_") {
                command.env_remove(key);
            }
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let mut server = Server {
            kind,
            child: Some(child),
            endpoint: format!("127.0.0.1:{client_port}"),
            client_port,
            peer_port,
            dir,
            log_path,
        };
        server.wait_ready();
        server
    }

    /// `http://127.0.0.1:<client port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.endpoint)
    }

    /// The server's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{:?} exited with {status} before it became ready; log:\n{}",
                    self.kind,
                    self.log()
                );
            }
            match http_get(&self.endpoint, "/health") {
                Ok((200, _)) => return,
                Ok((code, body)) => last = format!("status {code}: {body}"),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() > deadline {
                let threads = self.child.as_ref().map(|c| thread_states(c.id()));
                panic!(
                    "{:?} did not answer /health with 200 within {READY_TIMEOUT:?} (last: {last}); \
                     log:\n{}\nthreads:\n{}",
                    self.kind,
                    self.log(),
                    threads.unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Runs etcdctl against this server.
    pub fn etcdctl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        etcdctl(&self.endpoint, args, stdin)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A one-shot HTTP/1.1 GET over a plain TCP connection; returns the status and the body.
/// Used for readiness only, so it needs no HTTP client library.
pub fn http_get(endpoint: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(endpoint)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status in {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Runs etcdctl (API v3) against `endpoint` with a command timeout, feeding `stdin` if given.
pub fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(ETCDCTL_BIN);
    command
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .arg(format!("--endpoints={endpoint}"))
        .arg(COMMAND_TIMEOUT)
        .arg("--dial-timeout=10s")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| {
        panic!("spawn {ETCDCTL_BIN}: {e}; run scripts/install-test-deps.sh to install etcdctl")
    });
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(input.as_bytes())
            .expect("write etcdctl stdin");
    }
    child.wait_with_output().expect("wait for etcdctl")
}

/// The `Error: ...` lines etcdctl prints on stderr (its other stderr lines are client logs
/// with timestamps, which differ between runs).
pub fn error_lines(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.starts_with("Error:"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn rules() -> &'static Vec<(Regex, &'static str)> {
    static RULES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    RULES.get_or_init(|| {
        let table: &[(&str, &str)] = &[
            // Durations such as "took = 1.234ms" or "took = 2s".
            (r"took = [0-9.]+[a-zµ]+", "took = DURATION"),
            (r#""took":"[0-9.]+[a-zµ]+""#, "\"took\":\"DURATION\""),
            // Ports of every URL and endpoint.
            (r"127\.0\.0\.1:\d+", "127.0.0.1:PORT"),
            (r"localhost:\d+", "localhost:PORT"),
            // Release versions (etcd 3.4.23 against the version keel claims).
            (r"\b3\.\d+\.\d+\b", "VERSION"),
            (r"\b3\.\d+\b", "VERSION"),
            // JSON fields that carry ids, raft positions and sizes, in every output format.
            (
                r#""(cluster_id|member_id|raft_term|raftTerm|raft_index|raftIndex|raftAppliedIndex|ID|id|leader|lease|dbSize|dbSizeInUse|ttl)":\s*"?-?\d+"?"#,
                "\"$1\":N",
            ),
            (r#""(name|version)":"[^"]*""#, "\"$1\":\"X\""),
            // `-w fields` lines: "ClusterID" : 123
            (
                r#""(ClusterID|MemberID|RaftTerm|RaftIndex|Lease|ID)" : -?\d+"#,
                "\"$1\" : N",
            ),
            // Go's text form of a response header inside an error ("{cluster_id:123 ...}"): a
            // decimal id can have 10 to 16 digits, which the hex rule below would take instead.
            (r"\b(cluster_id|member_id|raft_term):\d+", "$1:N"),
            // Hex ids: member ids (%x) and lease ids (%016x).
            (r"\b[0-9a-f]{10,16}\b", "HEXID"),
            // Human-readable sizes: "20 kB", "25 kB".
            (r"\b\d+(\.\d+)? ?[kMG]?B\b", "SIZE"),
            // Remaining TTLs count down between the two runs (granted TTLs must agree).
            (r"remaining\(-?\d+s\)", "remaining(Ns)"),
        ];
        table.iter().map(|(re, to)| (Regex::new(re).expect("valid regex"), *to)).collect()
    })
}

/// Masks what legitimately differs between etcd and keel (ids, ports, durations, versions,
/// sizes, raft term and index, lease TTL countdowns) and keeps everything else, revisions
/// included: those must agree.
pub fn normalize(text: &str) -> String {
    let mut out = text.to_string();
    for (re, to) in rules() {
        out = re.replace_all(&out, *to).into_owned();
    }
    sort_lease_keys(&out)
}

/// etcd lists a lease's attached keys in Go map order, which varies from run to run: sort
/// them in both `attached keys([k2 k1])` and JSON `"keys":["..","..."]`.
fn sort_lease_keys(text: &str) -> String {
    static LISTS: OnceLock<(Regex, Regex)> = OnceLock::new();
    let (simple, json) = LISTS.get_or_init(|| {
        (
            Regex::new(r"attached keys\(\[([^\]]*)\]\)").expect("valid regex"),
            Regex::new(r#""keys":\[([^\]]*)\]"#).expect("valid regex"),
        )
    });
    let text = simple.replace_all(text, |caps: &regex::Captures| {
        let mut keys: Vec<&str> = caps[1].split(' ').collect();
        keys.sort_unstable();
        format!("attached keys([{}])", keys.join(" "))
    });
    json.replace_all(&text, |caps: &regex::Captures| {
        let mut keys: Vec<&str> = caps[1].split(',').collect();
        keys.sort_unstable();
        format!("\"keys\":[{}]", keys.join(","))
    })
    .into_owned()
}

/// `https` when the flags carry a peer certificate, else `http`.
fn peer_scheme<'a>(mut flags: impl Iterator<Item = &'a str>) -> &'static str {
    if flags.any(|f| f.starts_with("--peer-cert-file")) {
        "https"
    } else {
        "http"
    }
}

/// One member of a [`Cluster`]: its ports and flags stay the same across restarts.
pub struct ClusterMember {
    /// `--name`.
    pub name: String,
    /// `127.0.0.1:<client port>`.
    pub endpoint: String,
    /// `http://127.0.0.1:<peer port>`.
    pub peer_url: String,
    args: Vec<String>,
    child: Option<Child>,
    log_path: PathBuf,
}

impl ClusterMember {
    /// The member's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

/// A cluster of `keel` or upstream etcd members on loopback, each with its own data dir under
/// one temp dir. Dropping it kills every member.
pub struct Cluster {
    /// Which implementation runs.
    pub kind: Kind,
    /// The members, in `--initial-cluster` order.
    pub members: Vec<ClusterMember>,
    /// Holds the data dirs and logs.
    pub dir: TempDir,
    /// The flags every member gets besides its own.
    extra: Vec<String>,
    /// The scheme of the members' peer URLs.
    peer_scheme: &'static str,
}

impl Cluster {
    /// Prepares member `name` on fresh ports, not started: its peer URL is what
    /// `etcdctl member add` needs. Returns its index; [`Cluster::join`] starts it.
    pub fn prepare(&mut self, name: &str) -> usize {
        let taken: Vec<String> = self
            .members
            .iter()
            .flat_map(|m| [m.endpoint.clone(), m.peer_url.clone()])
            .collect();
        let port = || loop {
            let port = free_port();
            if !taken.iter().any(|t| t.ends_with(&format!(":{port}"))) {
                return port;
            }
        };
        let (client_port, mut peer_port) = (port(), port());
        while peer_port == client_port {
            peer_port = port();
        }
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("{}://127.0.0.1:{peer_port}", self.peer_scheme);
        let mut args = vec![
            format!("--name={name}"),
            format!("--data-dir={}", self.dir.path().join(name).display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            "--initial-cluster-token=keel-test-cluster".to_string(),
        ];
        args.extend(self.extra.iter().cloned());
        self.members.push(ClusterMember {
            name: name.to_string(),
            endpoint: format!("127.0.0.1:{client_port}"),
            peer_url,
            args,
            child: None,
            log_path: self.dir.path().join(format!("{name}.log")),
        });
        self.members.len() - 1
    }

    /// Starts prepared member `index` joining the running cluster (`--initial-cluster-state
    /// existing`) with `initial_cluster` (the `ETCD_INITIAL_CLUSTER` etcdctl printed) and
    /// `extra` flags; does not wait.
    pub fn join(&mut self, index: usize, initial_cluster: &str, extra: &[&str]) {
        let member = &mut self.members[index];
        // A flag given in `extra` replaces the member's own.
        let flag = |a: &str| a.split('=').next().unwrap_or(a).to_string();
        let replaced: Vec<String> = extra.iter().map(|a| flag(a)).collect();
        member.args.retain(|a| {
            !a.starts_with("--initial-cluster=")
                && !a.starts_with("--initial-cluster-state=")
                && !replaced.contains(&flag(a))
        });
        member
            .args
            .push(format!("--initial-cluster={initial_cluster}"));
        member
            .args
            .push("--initial-cluster-state=existing".to_string());
        member.args.extend(extra.iter().map(|s| s.to_string()));
        self.spawn(index);
    }

    /// Waits (at most `timeout`) for member `index` to exit on its own; its exit status.
    pub fn wait_exit(
        &mut self,
        index: usize,
        timeout: Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.members[index].child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.members[index].child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM to member `index` and waits for it to exit (a clean stop).
    pub fn terminate(&mut self, index: usize) -> Option<std::process::ExitStatus> {
        let pid = self.members[index].child.as_ref()?.id();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        self.wait_exit(index, Duration::from_secs(20))
    }
    /// Starts `size` members with etcd's flags for a new cluster plus `extra`, and waits until
    /// every member answers `/health` with 200 (which needs a leader).
    pub fn start(kind: Kind, size: usize, extra: &[&str]) -> Cluster {
        // Peer TLS flags make the peer URLs https.
        Cluster::start_with_peer_scheme(kind, size, peer_scheme(extra.iter().copied()), extra)
    }

    /// [`Cluster::start`] with peer URLs of the scheme given (`http` or `https`), whatever
    /// the flags.
    pub fn start_with_peer_scheme(
        kind: Kind,
        size: usize,
        peer_scheme: &'static str,
        extra: &[&str],
    ) -> Cluster {
        let binary = kind.binary();
        let dir = tempfile::Builder::new()
            .prefix("cluster-")
            .tempdir()
            .expect("create a temp dir");
        let mut ports = Vec::new();
        while ports.len() < size * 2 {
            let port = free_port();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let initial_cluster = (0..size)
            .map(|i| format!("m{i}={peer_scheme}://127.0.0.1:{}", ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let members = (0..size)
            .map(|i| {
                let client_url = format!("http://127.0.0.1:{}", ports[2 * i]);
                let peer_url = format!("{peer_scheme}://127.0.0.1:{}", ports[2 * i + 1]);
                let mut args = vec![
                    format!("--name=m{i}"),
                    format!("--data-dir={}", dir.path().join(format!("m{i}")).display()),
                    format!("--listen-client-urls={client_url}"),
                    format!("--advertise-client-urls={client_url}"),
                    format!("--listen-peer-urls={peer_url}"),
                    format!("--initial-advertise-peer-urls={peer_url}"),
                    format!("--initial-cluster={initial_cluster}"),
                    "--initial-cluster-token=keel-test-cluster".to_string(),
                    "--initial-cluster-state=new".to_string(),
                ];
                args.extend(extra.iter().map(|s| s.to_string()));
                ClusterMember {
                    name: format!("m{i}"),
                    endpoint: format!("127.0.0.1:{}", ports[2 * i]),
                    peer_url,
                    args,
                    child: None,
                    log_path: dir.path().join(format!("m{i}.log")),
                }
            })
            .collect();
        let _ = binary;
        let mut cluster = Cluster {
            kind,
            members,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            peer_scheme,
        };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            cluster.wait_healthy(i);
        }
        cluster
    }

    fn spawn(&mut self, index: usize) {
        let binary = self.kind.binary();
        let member = &mut self.members[index];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log_path)
            .expect("open the member log");
        let log_err = log.try_clone().expect("clone the log handle");
        let mut command = Command::new(&binary);
        command
            .args(&member.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        for (key, _) in std::env::vars() {
            if key.starts_with("ETCD_") {
                command.env_remove(key);
            }
        }
        member.child = Some(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display())),
        );
    }

    /// Waits until member `index` answers `/health` with 200.
    pub fn wait_healthy(&mut self, index: usize) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last;
        loop {
            let member = &mut self.members[index];
            if !member.is_running() {
                panic!(
                    "{} exited before it became healthy; log:\n{}",
                    member.name,
                    member.log()
                );
            }
            match http_get(&member.endpoint, "/health") {
                Ok((200, _)) => return,
                Ok((code, body)) => last = format!("status {code}: {body}"),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() > deadline {
                let threads = member.child.as_ref().map(|c| thread_states(c.id()));
                panic!(
                    "{} did not answer /health with 200 within {READY_TIMEOUT:?} (last: {last}); \
                     log:\n{}\nthreads:\n{}",
                    member.name,
                    member.log(),
                    threads.unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills member `index` with SIGKILL and waits for it to exit.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `index` again with the same flags and data dir (not waiting for health).
    pub fn restart(&mut self, index: usize) {
        self.kill(index);
        self.spawn(index);
    }

    /// The process id of member `index`.
    pub fn pid(&self, index: usize) -> u32 {
        self.members[index]
            .child
            .as_ref()
            .expect("the member runs")
            .id()
    }

    /// Every member's endpoint, comma-separated (for etcdctl's `--endpoints`).
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.endpoint.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every member's log, for failure messages.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("==== {} ====\n{}", m.name, m.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            self.kill(index);
        }
    }
}

/// A server started on an existing data dir (a restored backup) as the one member, named
/// `restored`, of a cluster on its peer port. Killed on drop.
pub struct Restored {
    child: Child,
    /// `127.0.0.1:<client port>`.
    pub endpoint: String,
}

impl Drop for Restored {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `etcdctl snapshot restore` of `snapshot` into `data_dir`, for member `restored` on `peer`.
pub fn etcdctl_restore(snapshot: &Path, data_dir: &Path, peer: u16) {
    let peer_url = format!("http://127.0.0.1:{peer}");
    let restore = Command::new(ETCDCTL_BIN)
        .env("ETCDCTL_API", "3")
        .args([
            "snapshot",
            "restore",
            &snapshot.display().to_string(),
            &format!("--data-dir={}", data_dir.display()),
            "--name=restored",
            &format!("--initial-cluster=restored={peer_url}"),
            &format!("--initial-advertise-peer-urls={peer_url}"),
        ])
        .output()
        .expect("run etcdctl snapshot restore");
    assert!(restore.status.success(), "snapshot restore: {restore:?}");
}

/// Starts `kind` on the restored `data_dir` (member `restored` on `peer`), its output in
/// `log`, and waits until it answers `/health`.
pub fn start_restored(kind: Kind, data_dir: &Path, peer: u16, log: &Path) -> Restored {
    start_restored_with(kind, data_dir, peer, log, &[])
}

/// [`start_restored`] with `extra` flags.
pub fn start_restored_with(
    kind: Kind,
    data_dir: &Path,
    peer: u16,
    log: &Path,
    extra: &[&str],
) -> Restored {
    let client = free_port();
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let out = File::create(log).expect("log");
    let child = Command::new(kind.binary())
        .args([
            "--name=restored",
            &format!("--data-dir={}", data_dir.display()),
            &format!("--listen-client-urls={client_url}"),
            &format!("--advertise-client-urls={client_url}"),
            &format!("--listen-peer-urls={peer_url}"),
            &format!("--initial-advertise-peer-urls={peer_url}"),
            &format!("--initial-cluster=restored={peer_url}"),
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("start {kind:?}: {e}"));
    let server = Restored {
        child,
        endpoint: format!("127.0.0.1:{client}"),
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    while !matches!(http_get(&server.endpoint, "/health"), Ok((200, _))) {
        assert!(
            Instant::now() < deadline,
            "{kind:?} did not start on the restored dir: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// A server with an https client URL and a plain http metrics URL; killed on drop.
pub struct TlsServer {
    /// The process.
    pub child: Child,
    /// `127.0.0.1:<client port>` (https).
    pub endpoint: String,
    /// `127.0.0.1:<metrics port>` (http).
    pub metrics: String,
    /// The server's output.
    pub log: PathBuf,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsServer {
    /// Starts `kind` in `dir` with an https client URL, the TLS flags `tls` and a plain http
    /// metrics URL, and waits until the metrics URL's `/health` answers 200.
    pub fn start(kind: Kind, dir: &Path, tls: &[String]) -> TlsServer {
        let (client, peer, metrics) = (free_port(), free_port(), free_port());
        let log = dir.join(format!("{kind:?}.log"));
        let out = std::fs::File::create(&log).expect("log");
        let err = out.try_clone().expect("log");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut command = Command::new(kind.binary());
        command
            .arg("--name=tls")
            .arg(format!(
                "--data-dir={}",
                dir.join(format!("{kind:?}.data")).display()
            ))
            .arg(format!("--listen-client-urls=https://127.0.0.1:{client}"))
            .arg(format!(
                "--advertise-client-urls=https://127.0.0.1:{client}"
            ))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=tls={peer_url}"))
            .arg(format!("--listen-metrics-urls=http://127.0.0.1:{metrics}"))
            .args(tls)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (key, _) in std::env::vars() {
            if key.starts_with("ETCD_") {
                command.env_remove(key);
            }
        }
        let mut server = TlsServer {
            child: command.spawn().expect("spawn the server"),
            endpoint: format!("127.0.0.1:{client}"),
            metrics: format!("127.0.0.1:{metrics}"),
            log,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !matches!(http_get(&server.metrics, "/health"), Ok((200, _))) {
            let exited = server.child.try_wait().ok().flatten();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "{kind:?} did not become healthy: {}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}
