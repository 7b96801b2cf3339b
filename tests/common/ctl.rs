//! keelctl against etcdctl: the same command run by both tools, each against upstream etcd
//! and against Keel, four fresh servers in all. Normalized outputs (ids, ports, timings and
//! versions masked by [`normalize`]) must be equal, together with the `Error:` lines and the
//! exit codes.
//!
//! Debian's etcdctl is 3.4.23; keelctl follows etcdctl 3.5. Where the two differ, a step
//! says how ([`Quad::check_35`]): keelctl's output must equal etcdctl 3.4's, transformed the
//! way 3.5 changed it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use super::{error_lines, normalize, Kind, Server, COMMAND_TIMEOUT, ETCDCTL_BIN};

/// Which command-line tool runs a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// Debian's etcdctl 3.4.23.
    Etcdctl,
    /// This package's keelctl.
    Keelctl,
}

impl Tool {
    /// The tool's binary.
    pub fn binary(self) -> PathBuf {
        match self {
            Tool::Etcdctl => PathBuf::from(ETCDCTL_BIN),
            Tool::Keelctl => PathBuf::from(env!("CARGO_BIN_EXE_keelctl")),
        }
    }
}

/// Runs `tool` with `args` against `endpoint` (none when empty), with the command timeout
/// and dial timeout every compatibility test uses, feeding `stdin` if given. `ETCDCTL_*`
/// variables of the test's own environment are removed.
pub fn run_tool(tool: Tool, endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(tool.binary());
    for (key, _) in std::env::vars() {
        if key.starts_with("ETCDCTL_") {
            command.env_remove(key);
        }
    }
    command.env("ETCDCTL_API", "3");
    if !endpoint.is_empty() {
        command.arg(format!("--endpoints={endpoint}"));
    }
    command
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
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", tool.binary().display()));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait for the tool")
}

/// What is compared of one run: normalized stdout, the `Error:` lines, the exit code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// stdout, normalized.
    pub stdout: String,
    /// The `Error: ...` lines of stderr, normalized.
    pub errors: String,
    /// The exit code (-1 for a signal).
    pub code: i32,
}

impl Seen {
    /// What `output` shows, normalized.
    pub fn of(output: &Output) -> Seen {
        Seen::with(output, false)
    }

    /// What `output` shows; with `protobuf`, stdout is a protobuf response, shown as its
    /// fields (see [`protobuf_fields`]).
    pub fn with(output: &Output, protobuf: bool) -> Seen {
        Seen {
            stdout: if protobuf && output.status.success() {
                protobuf_fields(&output.stdout, true)
            } else {
                normalize(&String::from_utf8_lossy(&output.stdout))
            },
            errors: normalize(&error_lines(output)),
            code: output.status.code().unwrap_or(-1),
        }
    }
}

/// The four combinations, in this order: etcdctl→etcd, keelctl→etcd, etcdctl→Keel,
/// keelctl→Keel.
pub const COMBINATIONS: [(Tool, Kind); 4] = [
    (Tool::Etcdctl, Kind::Etcd),
    (Tool::Keelctl, Kind::Etcd),
    (Tool::Etcdctl, Kind::Keel),
    (Tool::Keelctl, Kind::Keel),
];

/// Four fresh servers, one per [`COMBINATIONS`] entry, so every tool starts from the same
/// empty state.
pub struct Quad {
    /// The servers, in [`COMBINATIONS`] order.
    pub servers: Vec<Server>,
}

impl Quad {
    /// Starts two etcd and two Keel servers with the same extra flags.
    pub fn start(extra: &[&str]) -> Quad {
        Quad {
            servers: COMBINATIONS
                .iter()
                .map(|(_, kind)| Server::start(*kind, extra))
                .collect(),
        }
    }

    /// Runs the command in every combination; `{endpoint}` in an argument becomes the
    /// server's endpoint.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Vec<Output> {
        COMBINATIONS
            .iter()
            .zip(&self.servers)
            .map(|((tool, _), server)| {
                let args: Vec<String> = args
                    .iter()
                    .map(|a| a.replace("{endpoint}", &server.endpoint))
                    .collect();
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                run_tool(*tool, &server.endpoint, &args, stdin)
            })
            .collect()
    }

    /// Runs the command everywhere and requires all four results to be equal (after
    /// normalization); returns etcdctl→etcd's.
    pub fn check(&self, args: &[&str], stdin: Option<&str>) -> Seen {
        self.check_35(args, stdin, |seen| seen)
    }

    /// As [`Quad::check`], for a command whose output etcdctl 3.5 changed: etcdctl's results
    /// must agree with each other, keelctl's with each other, and keelctl's must equal
    /// `to_35` applied to etcdctl's. The caller's comment says what changed in 3.5.
    pub fn check_35(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        to_35: impl Fn(Seen) -> Seen,
    ) -> Seen {
        let outputs = self.run(args, stdin);
        let protobuf = args
            .windows(2)
            .any(|w| matches!(w[0], "-w" | "--write-out") && w[1] == "protobuf")
            || args
                .iter()
                .any(|a| *a == "-w=protobuf" || *a == "--write-out=protobuf");
        let seen: Vec<Seen> = outputs
            .iter()
            .map(|output| Seen::with(output, protobuf))
            .collect();
        let context = |i: usize| {
            let (tool, kind) = COMBINATIONS[i];
            format!(
                "{tool:?} against {kind:?}: stdout {:?}, stderr {:?}",
                String::from_utf8_lossy(&outputs[i].stdout),
                String::from_utf8_lossy(&outputs[i].stderr)
            )
        };
        assert_eq!(
            seen[0],
            seen[2],
            "etcdctl: etcd and Keel differ for {args:?}\n{}\n{}",
            context(0),
            context(2)
        );
        let expected = to_35(seen[0].clone());
        for i in [1, 3] {
            assert_eq!(
                seen[i],
                expected,
                "keelctl differs from etcdctl for {args:?}\n{}\n{}",
                context(0),
                context(i)
            );
        }
        seen[0].clone()
    }
}

/// A protobuf message as a list of its fields (`number:varint` or `number:[hex bytes]`, nested
/// messages expanded where the bytes parse as one), with the response header's cluster id,
/// member id and raft term (field 1's fields 1, 2 and 4) masked when `top` is set: they are
/// the only parts that differ between servers.
pub fn protobuf_fields(bytes: &[u8], top: bool) -> String {
    fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *bytes.get(*at)?;
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    fn fields(bytes: &[u8], mask: &[u64], header: bool) -> Option<String> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < bytes.len() {
            let tag = varint(bytes, &mut at)?;
            let (number, wire) = (tag >> 3, tag & 7);
            match wire {
                0 => {
                    let value = varint(bytes, &mut at)?;
                    if mask.contains(&number) {
                        out.push(format!("{number}:N"));
                    } else {
                        out.push(format!("{number}:{value}"));
                    }
                }
                2 => {
                    let len = usize::try_from(varint(bytes, &mut at)?).ok()?;
                    let body = bytes.get(at..at.checked_add(len)?)?;
                    at += len;
                    let inner_mask: &[u64] = if header && number == 1 {
                        &[1, 2, 4]
                    } else {
                        &[]
                    };
                    let shown = match fields(body, inner_mask, false) {
                        Some(inner) if !body.is_empty() => format!("{{{inner}}}"),
                        _ => format!("{:?}", String::from_utf8_lossy(body)),
                    };
                    out.push(format!("{number}:{shown}"));
                }
                _ => return None,
            }
        }
        Some(out.join(" "))
    }
    fields(bytes, &[], top).unwrap_or_else(|| format!("not protobuf: {bytes:?}"))
}
