//! keelctl's `check perf` and `check datascale` against etcdctl's, with the smallest load:
//! only the output's shape is compared (the lines etcdctl prints, in its order, with its
//! exit status for PASS and FAIL), never the timings, which depend on the machine.

mod common;

use common::ctl::{run_tool, Quad, Seen, Tool};
use common::{Kind, Server};
use regex::Regex;

/// The lines after the progress bar, each one of etcdctl's forms.
fn perf_shape(stdout: &str) -> Result<bool, String> {
    // The progress bar redraws with carriage returns from " 0 / 60    0.00%"; its last
    // state (which may stop short of 60 when the run ends between redraws) is followed by
    // the verdict lines, on its own line or, as etcdctl sometimes prints it, right after it.
    if !stdout.starts_with("\r 0 / 60    0.00%") {
        return Err(format!("no progress bar at the start of {stdout:?}"));
    }
    let last = stdout.rsplit('\r').next().unwrap_or_default();
    let bar = Regex::new(r"^ *\d+ / 60 +\d+\.\d+%( [0-9m]+s)?\n?").expect("regex");
    let rest = bar
        .find(last)
        .map(|m| &last[m.end()..])
        .ok_or_else(|| format!("progress bar's last state {last:?}"))?;
    let lines: Vec<&str> = rest.lines().collect();
    let forms = [
        r"^(PASS: Throughput is|FAIL: Throughput too low:) \d+ writes/s$",
        r"^(PASS: Slowest request took|Slowest request took too long:) \d+\.\d{6}s$",
        r"^(PASS: Stddev is|Stddev too high:) \d+\.\d{6}s$",
        r"^(PASS|FAIL)$",
    ];
    // "FAIL: too many errors" and its error lines may come first.
    let skip = lines
        .iter()
        .take_while(|l| l.starts_with("FAIL: too many errors") || l.starts_with("FAIL: ERROR("))
        .count();
    let judged = &lines[skip..];
    if judged.len() != forms.len() {
        return Err(format!("lines {lines:?}"));
    }
    for (line, form) in judged.iter().zip(forms) {
        if !Regex::new(form).expect("regex").is_match(line) {
            return Err(format!("{line:?} is not {form}"));
        }
    }
    Ok(judged[3] == "PASS")
}

#[test]
fn check_perf_prints_etcdctls_lines() {
    let etcd = Server::start(Kind::Etcd, &[]);
    let keel = Server::start(Kind::Keel, &[]);
    // Three runs of a minute each, side by side: etcdctl on etcd, keelctl on etcd and on Keel.
    let runs: Vec<(Tool, &Server)> = vec![
        (Tool::Etcdctl, &etcd),
        (Tool::Keelctl, &etcd),
        (Tool::Keelctl, &keel),
    ];
    let outputs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .iter()
            .enumerate()
            .map(|(i, (tool, server))| {
                let prefix = format!("--prefix=/perf-{i}/");
                scope.spawn(move || {
                    run_tool(
                        *tool,
                        &server.endpoint,
                        &["check", "perf", "--load=s", &prefix],
                        None,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a check run"))
            .collect()
    });
    for ((tool, server), out) in runs.iter().zip(&outputs) {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let passed = perf_shape(&stdout)
            .unwrap_or_else(|e| panic!("{tool:?} on {:?}: {e}\n{stdout}", server.kind));
        // PASS exits 0, FAIL exits 1 with no Error line.
        let seen = Seen::of(out);
        assert_eq!(
            (seen.code, seen.errors.as_str()),
            (if passed { 0 } else { 1 }, ""),
            "{tool:?} on {:?}",
            server.kind
        );
    }
    // The keys are gone after the check.
    for (i, (_, server)) in runs.iter().enumerate() {
        let listed = run_tool(
            Tool::Etcdctl,
            &server.endpoint,
            &["get", &format!("/perf-{i}/"), "--prefix", "--keys-only"],
            None,
        );
        assert!(
            listed.status.success() && listed.stdout.is_empty(),
            "{listed:?}"
        );
    }
}

#[test]
fn check_refusals_as_etcdctl() {
    let quad = Quad::start(&[]);
    for args in [
        &["check", "perf", "--load=huge"][..],
        &["check", "datascale", "--load=tiny"],
    ] {
        let seen = quad.check(args, None);
        assert_eq!(seen.code, 4, "{args:?}");
    }
    quad.check(&["put", "/etcdctl-check-perf/x", "1"], None);
    quad.check(&["put", "/etcdctl-check-datascale/x", "1"], None);
    // etcdctl 3.5 quotes the delete command in perf's message (3.4.23 does not).
    quad.check_35(&["check", "perf"], None, |seen| Seen {
        errors: seen.errors.replace(
            "Delete with etcdctl del --prefix /etcdctl-check-perf/ first",
            "Delete with 'etcdctl del --prefix /etcdctl-check-perf/' first",
        ),
        ..seen
    });
    let seen = quad.check(&["check", "datascale"], None);
    assert_eq!(seen.code, 3);
}

#[test]
fn check_datascale_prints_etcdctls_lines() {
    let etcd = Server::start(Kind::Etcd, &[]);
    let start = Regex::new(
        r"^Start data scale check for work load \[10000 key-value pairs, 1024 bytes per key-value, 50 concurrent clients\]\.\n\r 0 / 10000    0\.00%",
    )
    .expect("regex");
    let end = Regex::new(
        r"\r 10000 / 10000  100\.00% \d+(m\d+)?s\nPASS: Approximate system memory used : -?\d+\.\d\d MB\.\n$",
    )
    .expect("regex");
    // Keel exports the process collector's process_resident_memory_bytes as etcd does, so
    // both tools run the check against either server with the same lines (the progress
    // bar's intermediate states depend on timing: only its first and last are compared).
    let keel = Server::start(Kind::Keel, &[]);
    for server in [&etcd, &keel] {
        for tool in [Tool::Etcdctl, Tool::Keelctl] {
            let out = run_tool(
                tool,
                &server.endpoint,
                &["check", "datascale", "--load=s"],
                None,
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{tool:?} {:?}: {out:?}", server.kind);
            assert!(
                start.is_match(&stdout) && end.is_match(&stdout),
                "{tool:?} {:?}: {stdout:?}",
                server.kind
            );
        }
    }
}
