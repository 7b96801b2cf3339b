//! keelctl's get, put and del against etcdctl's, each tool against etcd and against Keel
//! (tests/common/ctl.rs): the same normalized output in every format, the same errors and
//! exit codes.

mod common;

use common::ctl::{run_tool, Quad, Seen, Tool};
use common::{Kind, Server};

const FORMATS: [&str; 4] = ["simple", "json", "fields", "protobuf"];

#[test]
fn put_get_del_in_every_format() {
    let quad = Quad::start(&[]);
    quad.check(&["put", "foo", "bar"], None);
    quad.check(&["put", "foo", "bar2", "--prev-kv"], None);
    quad.check(&["put", "foo/a", "1"], None);
    quad.check(&["put", "foo/b", "2"], None);
    quad.check(&["put", "zeta", "z"], None);
    // A value from stdin (the whole input, its newline included) and one with bytes Go
    // quotes in -w fields.
    quad.check(&["put", "stdin"], Some("from stdin\n"));
    quad.check(&["put", "quoted", "tab\there \"q\" é \u{1}"], None);
    for format in FORMATS {
        let w = format!("-w={format}");
        quad.check(&[&w, "get", "foo"], None);
        quad.check(&[&w, "get", "foo", "--prefix"], None);
        quad.check(&[&w, "get", "foo", "foo/b"], None);
        quad.check(&[&w, "get", "foo", "--from-key", "--limit=2"], None);
        quad.check(
            &[
                &w,
                "get",
                "",
                "--prefix",
                "--order=DESCEND",
                "--sort-by=VALUE",
            ],
            None,
        );
        quad.check(&[&w, "get", "foo", "--rev=2"], None);
        quad.check(&[&w, "get", "quoted"], None);
        quad.check(&[&w, "get", "stdin"], None);
        quad.check(&[&w, "get", "missing"], None);
        quad.check(&[&w, "put", "p", format, "--prev-kv"], None);
        quad.check(&[&w, "put", "p", "again", "--prev-kv"], None);
        quad.check(&[&w, "del", "p", "--prev-kv"], None);
        quad.check(&[&w, "del", "nothing"], None);
    }
    quad.check(&["get", "foo", "--prefix", "--print-value-only"], None);
    quad.check(
        &[
            "get",
            "foo",
            "--prefix",
            "--consistency=s",
            "--sort-by=create",
        ],
        None,
    );
    quad.check(&["--hex", "get", "foo", "--prefix"], None);
    quad.check(&["--hex", "-w", "fields", "get", "foo"], None);
    quad.check(&["del", "foo", "--prefix", "--prev-kv"], None);
    quad.check(&["del", "", "--from-key"], None);
    quad.check(&["get", "", "--prefix"], None);
}

#[test]
fn keys_only_and_ignore_flags() {
    let quad = Quad::start(&[]);
    quad.check(&["put", "k1", "v1"], None);
    quad.check(&["put", "k2", "v2"], None);
    quad.check(&["get", "k", "--prefix", "--keys-only"], None);
    quad.check(&["-w", "json", "get", "k", "--prefix", "--keys-only"], None);
    quad.check(&["put", "k1", "--ignore-value"], None);
    quad.check(&["get", "k1", "-w", "fields"], None);
    quad.check(&["put", "k1", "v", "--ignore-lease", "--prev-kv"], None);
}

#[test]
fn bad_arguments_fail_as_etcdctl_fails() {
    let quad = Quad::start(&[]);
    for args in [
        &["get"][..],
        &["get", "a", "--prefix", "--from-key"],
        &["get", "a", "z", "--prefix"],
        &["get", "a", "--consistency=x"],
        &["get", "a", "--order=sideways"],
        &["get", "a", "--sort-by=colour"],
        &["-w", "json", "get", "a", "--print-value-only"],
        &["-w", "table", "get", "a"],
        &["-w", "table", "put", "a", "b"],
        &["put"],
        &["put", "a", "b", "--ignore-value"],
        &["put", "a", "b", "--lease=xyz"],
        &["put", "a", "b", "--lease=1234"],
        &["del"],
        &["del", "a", "b", "--prefix"],
        &["del", "a", "--prefix", "--from-key"],
    ] {
        let seen = quad.check(args, None);
        assert_ne!(seen.code, 0, "{args:?} should fail");
    }
    // etcdctl ignores arguments after the range end.
    quad.check(&["get", "a", "b", "c"], None);
    // No value on the command line and nothing on stdin.
    quad.check(&["put", "a"], Some(""));
}

/// `get --count-only` is new in etcdctl 3.5 (3.4.23 has no such flag): the count alone, in
/// `-w fields`; any other format is refused after the call, as 3.5 does.
#[test]
fn count_only_as_etcdctl_3_5() {
    for kind in [Kind::Etcd, Kind::Keel] {
        let server = Server::start(kind, &[]);
        for key in ["c1", "c2", "c3"] {
            let out = run_tool(Tool::Keelctl, &server.endpoint, &["put", key, "v"], None);
            assert!(out.status.success(), "{out:?}");
        }
        let out = run_tool(
            Tool::Keelctl,
            &server.endpoint,
            &["-w", "fields", "get", "c", "--prefix", "--count-only"],
            None,
        );
        let seen = Seen::of(&out);
        assert_eq!(seen.code, 0, "{out:?}");
        assert!(
            seen.stdout.contains("\"Count\" : 3\n"),
            "{kind:?}: {}",
            seen.stdout
        );
        assert!(!seen.stdout.contains("Key"), "{kind:?}: {}", seen.stdout);
        let out = run_tool(
            Tool::Keelctl,
            &server.endpoint,
            &["get", "c", "--prefix", "--count-only"],
            None,
        );
        let seen = Seen::of(&out);
        assert_eq!(
            (seen.code, seen.errors.as_str()),
            (128, "Error: --count-only is only for `--write-out=fields`"),
            "{kind:?}"
        );
    }
}
