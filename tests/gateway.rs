//! etcd's gRPC JSON gateway on the client port (`POST /v3/...` with JSON bodies), driven by
//! a plain HTTP/1.1 client against Keel and upstream etcd side by side: the same requests must
//! give the same statuses and the same JSON once member-specific values (cluster and member
//! ids, raft terms, tokens) are masked.
//!
//! Keel follows etcd 3.5's gateway (grpc-gateway v1.16); the upstream binary here is 3.4.23
//! (grpc-gateway v1.9.5). Where the two differ the test says so: 3.4 orders an error body's
//! fields `error, message, code` where 3.5 writes `error, code, message` (3.5's error is a
//! protobuf message marshaled in field order), so error bodies are compared as parsed JSON and
//! Keel's exact text is checked against 3.5's form.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Kind, Server};
use serde_json::Value;

/// Every socket read or write gives up after this long instead of hanging.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// One HTTP reply.
#[derive(Debug)]
struct Reply {
    status: u16,
    /// Header names in lower case.
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {:?}", self.body))
    }
}

/// Sends one request and reads the status line and headers; the reader is left at the body.
fn send(
    server: &Server,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, BufReader<TcpStream>) {
    let mut stream = TcpStream::connect(&server.endpoint).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        server.endpoint,
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send");
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("header");
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    (status, headers, reader)
}

/// Whether the reply's body is chunked.
fn is_chunked(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
}

/// Reads one chunk of a chunked body; `None` at the last chunk.
fn read_chunk(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut size_line = String::new();
    reader.read_line(&mut size_line).expect("chunk size");
    let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
        .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
    if size == 0 {
        return None;
    }
    let mut chunk = vec![0; size];
    reader.read_exact(&mut chunk).expect("chunk");
    let mut crlf = [0; 2];
    reader.read_exact(&mut crlf).expect("chunk end");
    Some(chunk)
}

/// A request whose whole reply is read.
fn request(
    server: &Server,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let (status, headers, mut reader) = send(server, method, path, body, headers);
    let mut bytes = Vec::new();
    if is_chunked(&headers) {
        while let Some(chunk) = read_chunk(&mut reader) {
            bytes.extend_from_slice(&chunk);
        }
        // Trailers (etcd 3.4 sends `Grpc-Trailer-Content-Type` on errors) are not read.
    } else {
        reader.read_to_end(&mut bytes).expect("body");
    }
    Reply {
        status,
        headers,
        body: String::from_utf8(bytes).expect("UTF-8 body"),
    }
}

fn post(server: &Server, path: &str, body: &str) -> Reply {
    request(server, "POST", path, body, &[])
}

/// A streamed reply, read line by line as it comes.
struct LineStream {
    reader: BufReader<TcpStream>,
    chunked: bool,
    pending: Vec<u8>,
}

impl LineStream {
    fn open(server: &Server, path: &str, body: &str) -> (u16, LineStream) {
        let (status, headers, reader) = send(server, "POST", path, body, &[]);
        let chunked = is_chunked(&headers);
        (
            status,
            LineStream {
                reader,
                chunked,
                pending: Vec::new(),
            },
        )
    }

    /// The next `\n`-terminated line of the body; panics when the stream ends first or no
    /// line comes within the I/O timeout.
    fn next_line(&mut self) -> String {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return String::from_utf8(line)
                    .expect("UTF-8")
                    .trim_end()
                    .to_string();
            }
            let more = if self.chunked {
                read_chunk(&mut self.reader)
            } else {
                let mut buffer = [0; 4096];
                let n = self.reader.read(&mut buffer).expect("read the stream");
                (n > 0).then(|| buffer[..n].to_vec())
            };
            match more {
                Some(bytes) => self.pending.extend_from_slice(&bytes),
                None => panic!(
                    "the stream ended; unterminated rest: {:?}",
                    String::from_utf8_lossy(&self.pending)
                ),
            }
        }
    }
}

/// Masks what legitimately differs between two members in a gateway JSON value: cluster and
/// member ids and raft terms in headers, and any `extra` top-level keys.
fn masked(mut value: Value, extra: &[&str]) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, field) in map.iter_mut() {
                    if matches!(key.as_str(), "cluster_id" | "member_id" | "raft_term") {
                        *field = Value::String("<masked>".into());
                    } else {
                        walk(field);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    if let Value::Object(map) = &mut value {
        for key in extra {
            if let Some(field) = map.get_mut(*key) {
                *field = Value::String("<masked>".into());
            }
        }
    }
    value
}

/// Runs `steps` on a fresh Keel and a fresh etcd and checks both gave the same replies
/// (status and masked JSON). Each step returns a label and the reply.
fn same_on_both(steps: impl Fn(&Server) -> Vec<(String, u16, Value)>) {
    let keel = Server::start(Kind::Keel, &[]);
    let keel_replies = steps(&keel);
    let etcd = Server::start(Kind::Etcd, &[]);
    let mut etcd_replies = steps(&etcd);
    for (_, status, _) in &mut etcd_replies {
        // The etcd 3.4.23 binary here answers FailedPrecondition with 412; etcd 3.5's
        // grpc-gateway (v1.16) maps it to 400, as Keel does.
        if *status == 412 {
            *status = 400;
        }
    }
    assert_eq!(keel_replies.len(), etcd_replies.len());
    for (k, e) in keel_replies.iter().zip(&etcd_replies) {
        assert_eq!(k, e, "keel (left) and etcd (right) differ");
    }
}

/// A JSON step: POST `body` to `path` and keep the masked reply.
fn step(server: &Server, path: &str, body: &str, extra: &[&str]) -> (String, u16, Value) {
    step_with(server, path, body, &[], extra)
}

fn step_with(
    server: &Server,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
    extra: &[&str],
) -> (String, u16, Value) {
    let reply = request(server, "POST", path, body, headers);
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{path}: {reply:?}"
    );
    (
        format!("{path} {body}"),
        reply.status,
        masked(reply.json(), extra),
    )
}

/// base64 of `text`, as the gateway carries bytes.
fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn kv_requests_and_errors_match_etcd() {
    let (foo, bar, baz) = (b64("foo"), b64("bar"), b64("baz"));
    let (prefix, prefix_end) = (b64("f"), b64("g"));
    same_on_both(|server| {
        let mut replies = vec![
            step(
                server,
                "/v3/kv/put",
                &format!(r#"{{"key":"{foo}","value":"{bar}"}}"#),
                &[],
            ),
            step(
                server,
                "/v3/kv/put",
                &format!(r#"{{"key":"{foo}","value":"{baz}","prev_kv":true}}"#),
                &[],
            ),
            // The lowerCamel JSON names are accepted too, and unknown fields are ignored.
            step(
                server,
                "/v3/kv/put",
                &format!(
                    r#"{{"key":"{}","value":"{bar}","prevKv":true,"nonsense":1}}"#,
                    b64("fz")
                ),
                &[],
            ),
            step(
                server,
                "/v3/kv/range",
                &format!(r#"{{"key":"{foo}"}}"#),
                &[],
            ),
            step(
                server,
                "/v3/kv/range",
                &format!(
                    r#"{{"key":"{prefix}","range_end":"{prefix_end}","limit":1,"sort_order":"DESCEND","sort_target":"KEY"}}"#
                ),
                &[],
            ),
            step(
                server,
                "/v3/kv/range",
                &format!(r#"{{"key":"{prefix}","range_end":"{prefix_end}","count_only":true}}"#),
                &[],
            ),
            // etcd 3.5 rewrites /v3beta/ to /v3/ (3.4 serves both as well).
            step(
                server,
                "/v3beta/kv/range",
                &format!(r#"{{"key":"{foo}","revision":"2"}}"#),
                &[],
            ),
            step(
                server,
                "/v3/kv/txn",
                &format!(
                    r#"{{"compare":[{{"key":"{foo}","target":"VALUE","result":"EQUAL","value":"{baz}"}}],
                        "success":[{{"request_put":{{"key":"{foo}","value":"{bar}"}}}},{{"request_range":{{"key":"{foo}"}}}}],
                        "failure":[{{"request_delete_range":{{"key":"{foo}"}}}}]}}"#
                ),
                &[],
            ),
            step(
                server,
                "/v3/kv/txn",
                &format!(
                    r#"{{"compare":[{{"key":"{foo}","target":"CREATE","result":"GREATER","create_revision":"100"}}],
                        "failure":[{{"request_range":{{"key":"{prefix}","range_end":"{prefix_end}","keys_only":true}}}}]}}"#
                ),
                &[],
            ),
            step(
                server,
                "/v3/kv/deleterange",
                &format!(r#"{{"key":"{}","prev_kv":true}}"#, b64("fz")),
                &[],
            ),
            step(
                server,
                "/v3/kv/compaction",
                r#"{"revision":"3","physical":true}"#,
                &[],
            ),
            // Errors: compacted and future revisions, a missing key, a bad enum.
            step(
                server,
                "/v3/kv/range",
                &format!(r#"{{"key":"{foo}","revision":"2"}}"#),
                &[],
            ),
            step(
                server,
                "/v3/kv/range",
                &format!(r#"{{"key":"{foo}","revision":"1000"}}"#),
                &[],
            ),
            step(server, "/v3/kv/put", r#"{"value":"YQ=="}"#, &[]),
            // An empty body is an empty request (so: no key).
            step(server, "/v3/kv/range", "", &[]),
            // A truncated body: Go's JSON decoder says "unexpected EOF".
            step(server, "/v3/kv/range", r#"{"key":"#, &[]),
            step(server, "/v3/kv/compaction", r#"{"revision":"1"}"#, &[]),
        ];
        // The range after the deletes, with its revision, closes the sequence.
        replies.push(step(
            server,
            "/v3/kv/range",
            &format!(r#"{{"key":"{prefix}","range_end":"{prefix_end}"}}"#),
            &[],
        ));
        replies
    });
}

#[test]
fn keel_writes_errors_and_replies_as_etcd_3_5() {
    let keel = Server::start(Kind::Keel, &[]);
    let reply = post(&keel, "/v3/kv/put", r#"{"value":"YQ=="}"#);
    assert_eq!(reply.status, 400);
    // 3.5's field order (etcd 3.4.23 writes error, message, code).
    assert_eq!(
        reply.body,
        r#"{"error":"etcdserver: key is not provided","code":3,"message":"etcdserver: key is not provided"}"#
    );
    // Go's JSON encoder escapes <, > and & (etcd 3.4.23 writes the same escapes).
    assert_eq!(
        post(&keel, "/v3/auth/role/add", r#"{"name":"a<b&c>"}"#).status,
        200
    );
    let reply = post(&keel, "/v3/auth/role/list", "{}");
    assert!(
        reply
            .body
            .ends_with(r#""roles":["a\u003cb\u0026c\u003e"]}"#),
        "{reply:?}"
    );
    let reply = post(&keel, "/v3/kv/put", r#"{"key":"YQ==","value":"Yg=="}"#);
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("grpc-metadata-content-type"),
        Some("application/grpc")
    );
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    let reply = post(&keel, "/v3/kv/range", r#"{"key":"YQ=="}"#);
    let text = regex::Regex::new(r#""(cluster_id|member_id)":"\d+""#)
        .unwrap()
        .replace_all(&reply.body, r#""$1":"N""#)
        .into_owned();
    assert_eq!(
        text,
        r#"{"header":{"cluster_id":"N","member_id":"N","revision":"2","raft_term":"2"},"kvs":[{"key":"YQ==","create_revision":"2","mod_revision":"2","version":"1","value":"Yg=="}],"count":"1"}"#
    );
}

#[test]
fn unknown_paths_methods_and_bad_json_match_etcd() {
    let keel = Server::start(Kind::Keel, &[]);
    let etcd = Server::start(Kind::Etcd, &[]);
    for server in [&keel, &etcd] {
        let kind = server.kind;
        let reply = request(server, "GET", "/v3/kv/range", "", &[]);
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (405, "Method Not Allowed\n"),
            "{kind:?}"
        );
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        let reply = post(server, "/v3/kv/nothing", "{}");
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (404, "Not Found\n"),
            "{kind:?}"
        );
        let reply = post(server, "/v3/kv/range/", "{}");
        assert_eq!(reply.status, 404, "{kind:?}");
        // A value of the wrong type: the parsers' texts differ (Go's jsonpb and serde's), the
        // status and code do not.
        let reply = post(server, "/v3/kv/range", r#"{"key":12}"#);
        assert_eq!(reply.status, 400, "{kind:?}: {reply:?}");
        assert_eq!(reply.json()["code"], 3, "{kind:?}");
        let reply = post(server, "/v3/kv/range", "not json");
        assert_eq!(reply.status, 400, "{kind:?}: {reply:?}");
        assert_eq!(reply.json()["code"], 3, "{kind:?}");
        // A CORS preflight is answered before routing.
        let reply = request(server, "OPTIONS", "/v3/kv/range", "", &[]);
        assert_eq!(reply.status, 200, "{kind:?}");
        assert_eq!(
            reply.header("access-control-allow-methods"),
            Some("POST, GET, OPTIONS, PUT, DELETE")
        );
    }
}

#[test]
fn leases_match_etcd() {
    let key = b64("leased");
    same_on_both(|server| {
        vec![
            step(
                server,
                "/v3/lease/grant",
                r#"{"TTL":"100","ID":"4242"}"#,
                &[],
            ),
            step(
                server,
                "/v3/kv/put",
                &format!(r#"{{"key":"{key}","value":"dg==","lease":"4242"}}"#),
                &[],
            ),
            step(
                server,
                "/v3/lease/timetolive",
                r#"{"ID":"4242","keys":true}"#,
                &["TTL"],
            ),
            // etcd 3.5's alias paths under /v3/kv/lease/.
            step(
                server,
                "/v3/kv/lease/timetolive",
                r#"{"ID":"4242"}"#,
                &["TTL"],
            ),
            step(server, "/v3/lease/leases", "{}", &[]),
            step(server, "/v3/kv/lease/leases", "", &[]),
            step(
                server,
                "/v3/lease/grant",
                r#"{"TTL":"100","ID":"4242"}"#,
                &[],
            ),
            step(server, "/v3/kv/lease/revoke", r#"{"ID":"4242"}"#, &[]),
            step(server, "/v3/lease/revoke", r#"{"ID":"4242"}"#, &[]),
            step(
                server,
                "/v3/kv/range",
                &format!(r#"{{"key":"{key}"}}"#),
                &[],
            ),
        ]
    });
}

#[test]
fn keepalive_streams_a_result_line() {
    same_on_both(|server| {
        let grant = step(server, "/v3/lease/grant", r#"{"TTL":"100","ID":"77"}"#, &[]);
        let (status, mut stream) =
            LineStream::open(server, "/v3/lease/keepalive", r#"{"ID":"77"}"#);
        let line: Value = serde_json::from_str(&stream.next_line()).expect("JSON line");
        vec![grant, ("keepalive".to_string(), status, masked(line, &[]))]
    });
}

#[test]
fn watch_streams_events_as_they_happen() {
    let (prefix, prefix_end) = (b64("w"), b64("x"));
    same_on_both(|server| {
        let (status, mut stream) = LineStream::open(
            server,
            "/v3/watch",
            &format!(
                r#"{{"create_request":{{"key":"{prefix}","range_end":"{prefix_end}","prev_kv":true}}}}"#
            ),
        );
        let mut lines = vec![("watch".to_string(), status, Value::Null)];
        let read = |stream: &mut LineStream| {
            let line: Value = serde_json::from_str(&stream.next_line()).expect("JSON line");
            ("watch line".to_string(), 200, masked(line, &[]))
        };
        // The created response comes before any event; puts made after it are streamed.
        lines.push(read(&mut stream));
        lines.push(step(
            server,
            "/v3/kv/put",
            &format!(r#"{{"key":"{}","value":"MQ=="}}"#, b64("w1")),
            &[],
        ));
        lines.push(read(&mut stream));
        lines.push(step(
            server,
            "/v3/kv/put",
            &format!(r#"{{"key":"{}","value":"Mg=="}}"#, b64("w1")),
            &[],
        ));
        lines.push(read(&mut stream));
        lines.push(step(
            server,
            "/v3/kv/deleterange",
            &format!(r#"{{"key":"{}"}}"#, b64("w1")),
            &[],
        ));
        lines.push(read(&mut stream));
        lines
    });
}

#[test]
fn watch_of_a_compacted_revision_reports_it() {
    let key = b64("c");
    same_on_both(|server| {
        let mut replies = Vec::new();
        for value in ["MQ==", "Mg==", "Mw=="] {
            replies.push(step(
                server,
                "/v3/kv/put",
                &format!(r#"{{"key":"{key}","value":"{value}"}}"#),
                &[],
            ));
        }
        replies.push(step(
            server,
            "/v3/kv/compaction",
            r#"{"revision":"3"}"#,
            &[],
        ));
        let (status, mut stream) = LineStream::open(
            server,
            "/v3/watch",
            &format!(r#"{{"create_request":{{"key":"{key}","start_revision":"2"}}}}"#),
        );
        for _ in 0..2 {
            let line: Value = serde_json::from_str(&stream.next_line()).expect("JSON line");
            replies.push(("watch".to_string(), status, masked(line, &[])));
        }
        replies
    });
}

#[test]
fn auth_through_the_authorization_header_matches_etcd() {
    let key = b64("secret");
    same_on_both(|server| {
        let mut replies = vec![
            step(server, "/v3/auth/role/add", r#"{"name":"root"}"#, &[]),
            step(
                server,
                "/v3/auth/user/add",
                r#"{"name":"root","password":"rootpw"}"#,
                &[],
            ),
            step(
                server,
                "/v3/auth/user/grant",
                r#"{"user":"root","role":"root"}"#,
                &[],
            ),
            step(
                server,
                "/v3/auth/user/add",
                r#"{"name":"alice","password":"alicepw"}"#,
                &[],
            ),
            step(server, "/v3/auth/role/add", r#"{"name":"reader"}"#, &[]),
            step(
                server,
                "/v3/auth/role/grant",
                &format!(r#"{{"name":"reader","perm":{{"permType":"READ","key":"{key}"}}}}"#),
                &[],
            ),
            step(
                server,
                "/v3/auth/user/grant",
                r#"{"user":"alice","role":"reader"}"#,
                &[],
            ),
            step(server, "/v3/auth/role/get", r#"{"role":"reader"}"#, &[]),
            step(server, "/v3/auth/user/list", "{}", &[]),
            step(server, "/v3/auth/enable", "{}", &[]),
            // Without a token.
            step(
                server,
                "/v3/kv/range",
                &format!(r#"{{"key":"{key}"}}"#),
                &[],
            ),
            step(
                server,
                "/v3/auth/authenticate",
                r#"{"name":"alice","password":"wrong"}"#,
                &[],
            ),
        ];
        let authenticated = request(
            server,
            "POST",
            "/v3/auth/authenticate",
            r#"{"name":"alice","password":"alicepw"}"#,
            &[],
        );
        assert_eq!(authenticated.status, 200, "{authenticated:?}");
        let alice = authenticated.json()["token"]
            .as_str()
            .expect("a token")
            .to_string();
        replies.push((
            "authenticate".into(),
            200,
            masked(authenticated.json(), &["token"]),
        ));
        let root = request(
            server,
            "POST",
            "/v3/auth/authenticate",
            r#"{"name":"root","password":"rootpw"}"#,
            &[],
        )
        .json()["token"]
            .as_str()
            .expect("a token")
            .to_string();
        let as_alice = [("Authorization", alice.as_str())];
        let as_root = [("Authorization", root.as_str())];
        replies.extend([
            step_with(
                server,
                "/v3/kv/range",
                &format!(r#"{{"key":"{key}"}}"#),
                &as_alice,
                &[],
            ),
            // alice may read but not write.
            step_with(
                server,
                "/v3/kv/put",
                &format!(r#"{{"key":"{key}","value":"dg=="}}"#),
                &as_alice,
                &[],
            ),
            step_with(
                server,
                "/v3/kv/put",
                &format!(r#"{{"key":"{key}","value":"dg=="}}"#),
                &as_root,
                &[],
            ),
            // A token that was never issued.
            step_with(
                server,
                "/v3/kv/range",
                &format!(r#"{{"key":"{key}"}}"#),
                &[("Authorization", "bogus.1")],
                &[],
            ),
            step_with(server, "/v3/auth/disable", "{}", &as_root, &[]),
            step(
                server,
                "/v3/kv/range",
                &format!(r#"{{"key":"{key}"}}"#),
                &[],
            ),
        ]);
        if server.kind == Kind::Keel {
            // etcd 3.4.23 has no AuthStatus (3.5 serves it at /v3/auth/status).
            let status = request(server, "POST", "/v3/auth/status", "{}", &as_root);
            assert_eq!(status.status, 200, "{status:?}");
            // Auth is off again: `enabled: false` is a zero value, left out.
            assert_eq!(status.json().get("enabled"), None, "{status:?}");
            assert!(status.json()["authRevision"].is_string(), "{status:?}");
        }
        replies
    });
}

#[test]
fn lock_and_election_match_etcd() {
    let (name, value) = (b64("election"), b64("candidate"));
    same_on_both(|server| {
        let mut replies = vec![step(
            server,
            "/v3/lease/grant",
            r#"{"TTL":"100","ID":"99"}"#,
            &[],
        )];
        let lock = request(
            server,
            "POST",
            "/v3/lock/lock",
            &format!(r#"{{"name":"{}","lease":"99"}}"#, b64("mylock")),
            &[],
        );
        let owned = lock.json()["key"].as_str().expect("lock key").to_string();
        replies.push(("lock".into(), lock.status, masked(lock.json(), &[])));
        replies.push(step(
            server,
            "/v3/lock/unlock",
            &format!(r#"{{"key":"{owned}"}}"#),
            &[],
        ));
        replies.push(step(
            server,
            "/v3/election/campaign",
            &format!(r#"{{"name":"{name}","lease":"99","value":"{value}"}}"#),
            &[],
        ));
        replies.push(step(
            server,
            "/v3/election/leader",
            &format!(r#"{{"name":"{name}"}}"#),
            &[],
        ));
        // Observe streams the current leader first.
        let (status, mut stream) = LineStream::open(
            server,
            "/v3/election/observe",
            &format!(r#"{{"name":"{name}"}}"#),
        );
        let line: Value = serde_json::from_str(&stream.next_line()).expect("JSON line");
        replies.push(("observe".into(), status, masked(line, &[])));
        replies.push(step(
            server,
            "/v3/election/leader",
            &format!(r#"{{"name":"{}"}}"#, b64("nobody")),
            &[],
        ));
        replies
    });
}

#[test]
fn maintenance_and_cluster_replies_carry_etcd_fields() {
    let keel = Server::start(Kind::Keel, &[]);
    let etcd = Server::start(Kind::Etcd, &[]);
    let keys = |server: &Server, path: &str| -> Vec<String> {
        let reply = post(server, path, "{}");
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        match reply.json() {
            Value::Object(map) => map.keys().cloned().collect(),
            other => panic!("{path}: not an object: {other}"),
        }
    };
    for server in [&keel, &etcd] {
        assert_eq!(
            post(server, "/v3/kv/put", r#"{"key":"YQ==","value":"Yg=="}"#).status,
            200
        );
    }
    // etcd 3.4.23's gateway has no /v3/maintenance/hashkv (3.5's has). 3.5 leaves
    // hash_revision (a 3.6 field) unset, so its JSON has no such key.
    let hash_kv = keys(&keel, "/v3/maintenance/hashkv");
    assert_eq!(hash_kv, ["compact_revision", "hash", "header"]);
    // (Alarm is left out: etcd 3.4.23 answers it without a header, 3.5 fills one in.)
    for path in ["/v3/maintenance/hash", "/v3/cluster/member/list"] {
        assert_eq!(keys(&keel, path), keys(&etcd, path), "{path}");
    }
    // Status: etcd 3.4.23 has no `dbSizeQuota` (3.5 has; Keel sends it), the rest agree.
    let mut keel_status = keys(&keel, "/v3/maintenance/status");
    keel_status.retain(|k| k != "dbSizeQuota");
    assert_eq!(keel_status, keys(&etcd, "/v3/maintenance/status"));
    let members = post(&keel, "/v3/cluster/member/list", "{}").json();
    assert_eq!(
        members["members"][0]["clientURLs"][0],
        Value::String(keel.url())
    );
    // A snapshot streams its blob in result lines; the first starts with bbolt's header.
    let (status, mut stream) = LineStream::open(&keel, "/v3/maintenance/snapshot", "{}");
    assert_eq!(status, 200);
    let line: Value = serde_json::from_str(&stream.next_line()).expect("JSON line");
    assert!(
        line["result"]["blob"]
            .as_str()
            .is_some_and(|b| !b.is_empty()),
        "{line}"
    );
    // A member that does not exist.
    let reply = post(&keel, "/v3/cluster/member/remove", r#"{"ID":"1"}"#);
    let etcd_reply = post(&etcd, "/v3/cluster/member/remove", r#"{"ID":"1"}"#);
    assert_eq!(
        (reply.status, reply.json()),
        (etcd_reply.status, etcd_reply.json())
    );
}

#[test]
fn a_stream_failing_first_answers_with_its_error_status() {
    // Auth on and no token: the snapshot stream fails before its first message, so the reply
    // carries the error's HTTP status and grpc-gateway's stream error chunk.
    let steps = |server: &Server| {
        for (path, body) in [
            ("/v3/auth/role/add", r#"{"name":"root"}"#),
            ("/v3/auth/user/add", r#"{"name":"root","password":"pw"}"#),
            ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
            ("/v3/auth/enable", "{}"),
        ] {
            assert_eq!(post(server, path, body).status, 200, "{path}");
        }
        let reply = post(server, "/v3/maintenance/snapshot", "{}");
        (reply.status, reply.json())
    };
    let keel = Server::start(Kind::Keel, &[]);
    let keel_reply = steps(&keel);
    let etcd = Server::start(Kind::Etcd, &[]);
    assert_eq!(keel_reply, steps(&etcd));
    assert!(
        keel_reply.1["error"]["grpc_code"].is_number(),
        "{keel_reply:?}"
    );
}

#[test]
fn the_gateway_can_be_turned_off() {
    for kind in [Kind::Keel, Kind::Etcd] {
        let server = Server::start(kind, &["--enable-grpc-gateway=false"]);
        let reply = post(&server, "/v3/kv/range", r#"{"key":"YQ=="}"#);
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (404, "404 page not found\n"),
            "{kind:?}"
        );
    }
}
