//! Auth with real processes: the real etcdctl runs one scripted session (users, roles, prefix,
//! single-key and from-key permissions, enable and disable, wrong passwords, a user without a
//! password, permissions revoked, users and roles deleted, root protected) against Keel and
//! against upstream etcd 3.4.23, and every step's normalized output must agree, except where
//! etcd 3.5 changed the rules (each such step says so and checks both sides).

mod common;

use common::{error_lines, normalize, Kind, Server};

const ROOT: &str = "--user=root:rootpw";
const ALICE: &str = "--user=alice:alicepw";

/// One etcdctl call of the session.
struct Step {
    args: &'static [&'static str],
    /// Fed to etcdctl's stdin.
    stdin: Option<&'static str>,
    /// Where etcd 3.5 (which Keel follows) differs from 3.4.23: (Keel's output, etcd 3.4's).
    differs: Option<(&'static str, &'static str)>,
}

const fn step(args: &'static [&'static str]) -> Step {
    Step {
        args,
        stdin: None,
        differs: None,
    }
}

const SESSION: &[Step] = &[
    step(&["auth", "enable"]),
    step(&["user", "add", "root", "--new-user-password=rootpw"]),
    step(&["role", "add", "root"]),
    step(&["user", "grant-role", "root", "root"]),
    step(&["user", "add", "alice", "--new-user-password=alicepw"]),
    step(&["user", "add", "alice", "--new-user-password=again"]),
    step(&["user", "add", "carol", "--no-password"]),
    step(&["role", "add", "r1"]),
    step(&["role", "add", "r1"]),
    step(&[
        "role",
        "grant-permission",
        "r1",
        "readwrite",
        "foo",
        "--prefix",
    ]),
    step(&["role", "add", "r2"]),
    step(&["role", "grant-permission", "r2", "read", "bar"]),
    step(&[
        "role",
        "grant-permission",
        "r2",
        "write",
        "zz",
        "--from-key",
    ]),
    step(&["role", "grant-permission", "r2", "read", "a", "c"]),
    step(&["role", "grant-permission", "nobody", "read", "a"]),
    step(&["role", "get", "r2"]),
    step(&["user", "grant-role", "alice", "r1"]),
    step(&["user", "grant-role", "alice", "r2"]),
    step(&["user", "grant-role", "alice", "ghost-role"]),
    step(&["user", "get", "alice", "--detail"]),
    step(&["user", "list"]),
    step(&["role", "list"]),
    step(&["auth", "enable"]),
    // No user while auth is enabled.
    step(&["put", "foo1", "v"]),
    step(&["get", "foo1"]),
    // Alice within and outside her roles.
    step(&[ALICE, "put", "foo1", "v1"]),
    step(&[ALICE, "get", "foo", "--prefix"]),
    step(&[ALICE, "put", "bar", "v"]),
    step(&[ROOT, "put", "bar", "b0"]),
    step(&[ALICE, "get", "bar"]),
    step(&[ALICE, "get", "bar", "--prefix"]),
    step(&[ALICE, "put", "zzz", "v"]),
    step(&[ALICE, "get", "zzz"]),
    step(&[ALICE, "get", "a", "c"]),
    step(&[ALICE, "get", "a", "d"]),
    step(&[ALICE, "get", "", "--from-key"]),
    step(&[ROOT, "get", "", "--from-key", "--keys-only"]),
    Step {
        args: &[ALICE, "txn"],
        stdin: Some("value(\"foo1\") = \"v1\"\n\nput foo2 x\n\nput bar y\n\n"),
        differs: None,
    },
    Step {
        args: &[ALICE, "txn"],
        stdin: Some("value(\"foo1\") = \"v1\"\n\nput foo2 x\n\nget foo1\n\n"),
        differs: None,
    },
    step(&[ALICE, "del", "foo2", "--prev-kv"]),
    // Wrong passwords, unknown users, a user with no password.
    step(&["--user=alice:wrong", "get", "foo1"]),
    step(&["--user=ghost:pw", "get", "foo1"]),
    step(&["--user=carol:pw", "get", "foo1"]),
    // Admin-only operations.
    step(&[ALICE, "user", "list"]),
    step(&[ALICE, "role", "get", "root"]),
    step(&[ALICE, "user", "get", "root"]),
    step(&[ALICE, "user", "add", "mallory", "--new-user-password=x"]),
    step(&[ALICE, "auth", "disable"]),
    step(&[ALICE, "member", "list", "-w", "json"]),
    Step {
        args: &[ALICE, "compaction", "1"],
        // etcd 3.5.28 made compaction an admin's; 3.4 let any user compact.
        differs: Some((
            "Error: etcdserver: permission denied",
            "compacted revision 1",
        )),
        stdin: None,
    },
    // Maintenance: defragment and hashes are an admin's, refused with the auth store's own
    // error text (as etcd sends it); reading alarms needs any user.
    step(&[ALICE, "defrag"]),
    step(&[ALICE, "endpoint", "hashkv"]),
    step(&[ALICE, "alarm", "list"]),
    step(&[ROOT, "defrag"]),
    step(&[ROOT, "user", "list"]),
    step(&[ROOT, "role", "get", "r1"]),
    // Taking permissions away.
    step(&[ROOT, "user", "revoke-role", "alice", "r1"]),
    step(&[ROOT, "user", "revoke-role", "alice", "r1"]),
    step(&[ALICE, "get", "foo1"]),
    step(&[ROOT, "role", "revoke-permission", "r2", "bar"]),
    step(&[ROOT, "role", "revoke-permission", "r2", "bar"]),
    step(&[ROOT, "role", "revoke-permission", "r2", "a", "c"]),
    step(&[ALICE, "get", "bar"]),
    Step {
        args: &[ROOT, "user", "passwd", "alice", "--interactive=false"],
        stdin: Some("newpw\n"),
        differs: None,
    },
    step(&[ALICE, "get", "zzz"]),
    step(&["--user=alice:newpw", "put", "zzz", "w"]),
    step(&[ROOT, "user", "delete", "alice"]),
    step(&[ROOT, "user", "delete", "alice"]),
    step(&["--user=alice:newpw", "put", "zzz", "w"]),
    // root stays root while auth is enabled.
    step(&[ROOT, "user", "delete", "root"]),
    step(&[ROOT, "user", "revoke-role", "root", "root"]),
    step(&[ROOT, "role", "delete", "root"]),
    step(&[ROOT, "role", "delete", "r2"]),
    step(&[ROOT, "role", "list"]),
    step(&[ROOT, "auth", "disable"]),
    step(&["put", "foo9", "v"]),
    step(&["user", "list"]),
];

/// What `args` printed: normalized stdout, then etcdctl's `Error:` lines.
fn run(server: &Server, step: &Step) -> String {
    let output = server.etcdctl(step.args, step.stdin);
    let stdout = normalize(&String::from_utf8_lossy(&output.stdout));
    format!("{}{}", stdout, error_lines(&output))
        .trim()
        .to_string()
}

#[test]
fn etcdctl_auth_session_matches_etcd() {
    let etcd = Server::start(Kind::Etcd, &[]);
    let keel = Server::start(Kind::Keel, &[]);
    let mut mismatches = Vec::new();
    for (i, step) in SESSION.iter().enumerate() {
        let (from_etcd, from_keel) = (run(&etcd, step), run(&keel, step));
        let agrees = match step.differs {
            None => from_keel == from_etcd,
            Some((keel_35, etcd_34)) => from_keel == keel_35 && from_etcd == etcd_34,
        };
        if !agrees {
            mismatches.push(format!(
                "step {i} {:?}:\n  etcd: {from_etcd:?}\n  keel: {from_keel:?}",
                step.args
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} steps differ:\n{}\n--- keel log ---\n{}",
        mismatches.len(),
        SESSION.len(),
        mismatches.join("\n"),
        keel.log()
    );
}

mod grpc {
    //! The same tokens seen through a long-lived gRPC client, as a program holding a token
    //! sees them: a permission revoked while the token lives, an invalid token, a password
    //! change, watches and leases without a user, simple tokens expiring, and JWT tokens
    //! outdated by an auth change.

    use std::time::{Duration, Instant};

    use keel_proto::etcdserverpb as pb;
    use keel_proto::etcdserverpb::auth_client::AuthClient;
    use keel_proto::etcdserverpb::kv_client::KvClient;
    use keel_proto::etcdserverpb::lease_client::LeaseClient;
    use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
    use keel_proto::etcdserverpb::watch_client::WatchClient;
    use tonic::transport::Channel;

    use super::common::{etcdctl, Cluster, Kind, Server};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Runtime::new().expect("tokio")
    }

    async fn channel(server: &Server) -> Channel {
        channel_to(&server.endpoint).await
    }

    async fn channel_to(endpoint: &str) -> Channel {
        Channel::from_shared(format!("http://{endpoint}"))
            .expect("uri")
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .connect()
            .await
            .expect("connect")
    }

    fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("token", token.parse().expect("ascii token"));
        }
        request
    }

    /// `ok`, or the status code and message.
    fn outcome<T>(result: Result<T, tonic::Status>) -> String {
        match result {
            Ok(_) => "ok".into(),
            Err(status) => format!("{:?}: {}", status.code(), status.message()),
        }
    }

    async fn authenticate(channel: &Channel, name: &str, password: &str) -> String {
        AuthClient::new(channel.clone())
            .authenticate(pb::AuthenticateRequest {
                name: name.into(),
                password: password.into(),
            })
            .await
            .expect("authenticate")
            .into_inner()
            .token
    }

    async fn put(channel: &Channel, token: Option<&str>, key: &str) -> String {
        let request = pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        outcome(
            KvClient::new(channel.clone())
                .put(with_token(request, token))
                .await,
        )
    }

    /// Users root and alice (role r1: read-write on the prefix `foo/`), auth enabled.
    fn set_up(server: &Server) {
        set_up_at(&server.endpoint);
    }

    fn set_up_at(endpoint: &str) {
        for args in [
            &["user", "add", "root", "--new-user-password=rootpw"][..],
            &["role", "add", "root"],
            &["user", "grant-role", "root", "root"],
            &["user", "add", "alice", "--new-user-password=alicepw"],
            &["role", "add", "r1"],
            &[
                "role",
                "grant-permission",
                "r1",
                "readwrite",
                "foo/",
                "--prefix",
            ],
            &["user", "grant-role", "alice", "r1"],
            &["auth", "enable"],
        ] {
            let output = etcdctl(endpoint, args, None);
            assert!(output.status.success(), "{args:?}: {output:?}");
        }
    }

    /// A watch created on `key` with `token`: what the server answers first.
    async fn watch(channel: &Channel, token: Option<&str>, key: &str) -> String {
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: key.as_bytes().to_vec(),
                    range_end: b"foo0".to_vec(),
                    ..Default::default()
                },
            )),
        };
        let requests = futures::stream::iter(vec![create]).chain(futures::stream::pending());
        let mut responses = WatchClient::new(channel.clone())
            .watch(with_token(requests, token))
            .await
            .expect("watch stream")
            .into_inner();
        match responses.message().await {
            Ok(Some(r)) => format!(
                "watch {} created {} canceled {} {:?}",
                r.watch_id, r.created, r.canceled, r.cancel_reason
            ),
            other => format!("watch ended: {other:?}"),
        }
    }

    use futures::StreamExt;

    /// The session against one server.
    async fn session(server: &Server) -> Vec<String> {
        let channel = channel(server).await;
        let alice = authenticate(&channel, "alice", "alicepw").await;
        let mut out = vec![
            put(&channel, Some(&alice), "foo/a").await,
            put(&channel, Some(&alice), "bar").await,
            put(&channel, Some("bogus.1"), "foo/a").await,
            put(&channel, None, "foo/a").await,
            watch(&channel, Some(&alice), "foo/").await,
        ];
        // The permission goes while alice's token lives: the token still names her, and
        // her roles no longer allow the write.
        let revoked = server.etcdctl(
            &[
                "--user=root:rootpw",
                "role",
                "revoke-permission",
                "r1",
                "foo/",
                "--prefix",
            ],
            None,
        );
        assert!(revoked.status.success(), "{revoked:?}");
        out.push(put(&channel, Some(&alice), "foo/a").await);
        out.push(watch(&channel, Some(&alice), "foo/").await);
        // A new password voids her tokens.
        let changed = server.etcdctl(
            &[
                "--user=root:rootpw",
                "user",
                "passwd",
                "alice",
                "--interactive=false",
            ],
            Some("other\n"),
        );
        assert!(changed.status.success(), "{changed:?}");
        out.push(put(&channel, Some(&alice), "foo/a").await);
        out
    }

    /// What etcd 3.5 changed since 3.4.23, asked without a user: etcd 3.4 answers these.
    async fn without_a_user(server: &Server) -> Vec<String> {
        let channel = channel(server).await;
        vec![
            watch(&channel, None, "foo/").await,
            outcome(
                LeaseClient::new(channel.clone())
                    .lease_grant(pb::LeaseGrantRequest { ttl: 60, id: 0 })
                    .await,
            ),
            outcome(
                MaintenanceClient::new(channel.clone())
                    .status(pb::StatusRequest {})
                    .await,
            ),
        ]
    }

    #[test]
    fn tokens_and_live_revocations_match_etcd() {
        runtime().block_on(async {
            let etcd = Server::start(Kind::Etcd, &[]);
            let keel = Server::start(Kind::Keel, &[]);
            set_up(&etcd);
            set_up(&keel);
            let (from_etcd, from_keel) = (session(&etcd).await, session(&keel).await);
            assert_eq!(from_keel, from_etcd, "{}", keel.log());
            let denied = "PermissionDenied: etcdserver: permission denied";
            let expected = [
                "ok",
                denied,
                "Unauthenticated: etcdserver: invalid auth token",
                "InvalidArgument: etcdserver: user name is empty",
                "watch 0 created true canceled false \"\"",
                denied,
                "watch -1 created true canceled true \"rpc error: code = PermissionDenied desc = \
                 etcdserver: permission denied\"",
                "Unauthenticated: etcdserver: invalid auth token",
            ];
            assert_eq!(from_keel, expected);
            // etcd 3.5.28+ wants a user for watches, lease grants and status; 3.4 did not.
            let (from_etcd, from_keel) =
                (without_a_user(&etcd).await, without_a_user(&keel).await);
            assert_eq!(
                from_keel,
                [
                    "watch -1 created true canceled true \"rpc error: code = InvalidArgument desc = \
                     etcdserver: user name is empty\"",
                    "InvalidArgument: etcdserver: user name is empty",
                    "InvalidArgument: etcdserver: user name is empty",
                ],
                "etcd 3.4 answered {from_etcd:?}"
            );
        });
    }

    /// Simple tokens live `--auth-token-ttl` seconds after their last use, on Keel as on
    /// etcd.
    #[test]
    fn simple_tokens_expire_after_their_ttl() {
        runtime().block_on(async {
            for kind in [Kind::Etcd, Kind::Keel] {
                let server = Server::start(kind, &["--auth-token-ttl=1"]);
                set_up(&server);
                let channel = channel(&server).await;
                let token = authenticate(&channel, "alice", "alicepw").await;
                assert_eq!(put(&channel, Some(&token), "foo/a").await, "ok", "{kind:?}");
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let answer = put(&channel, Some(&token), "foo/a").await;
                    if answer == "Unauthenticated: etcdserver: invalid auth token" {
                        break;
                    }
                    assert_eq!(answer, "ok", "{kind:?}");
                    assert!(
                        Instant::now() < deadline,
                        "{kind:?}: the token never expired"
                    );
                    // Used only now and then, so that its TTL runs out.
                    tokio::time::sleep(Duration::from_millis(2500)).await;
                }
            }
        });
    }

    /// JWT tokens (`--auth-token jwt,...` with an ES256 key pair made here) carry the auth
    /// revision they were issued at: an auth change outdates them, on Keel as on etcd.
    #[test]
    fn jwt_tokens_are_outdated_by_an_auth_change() {
        runtime().block_on(async {
            let keys = tempfile::tempdir().expect("temp dir");
            let pair = rcgen::KeyPair::generate().expect("ES256 key pair");
            let (private, public) = (keys.path().join("jwt.key"), keys.path().join("jwt.pub"));
            std::fs::write(&private, pair.serialize_pem()).expect("write");
            std::fs::write(&public, pair.public_key_pem()).expect("write");
            let flag = format!(
                "--auth-token=jwt,pub-key={},priv-key={},sign-method=ES256,ttl=10m",
                public.display(),
                private.display()
            );
            let mut answers = Vec::new();
            for kind in [Kind::Etcd, Kind::Keel] {
                let server = Server::start(kind, &[&flag]);
                set_up(&server);
                let channel = channel(&server).await;
                let token = authenticate(&channel, "alice", "alicepw").await;
                assert_eq!(token.split('.').count(), 3, "{kind:?}: {token}");
                let mut seen = vec![put(&channel, Some(&token), "foo/a").await];
                let added = server.etcdctl(&["--user=root:rootpw", "role", "add", "r2"], None);
                assert!(added.status.success(), "{added:?}");
                seen.push(put(&channel, Some(&token), "foo/a").await);
                let fresh = authenticate(&channel, "alice", "alicepw").await;
                seen.push(put(&channel, Some(&fresh), "foo/a").await);
                answers.push(seen);
            }
            assert_eq!(answers[1], answers[0]);
            assert_eq!(
                answers[1],
                [
                    "ok",
                    "InvalidArgument: etcdserver: revision of auth store is old",
                    "ok"
                ]
            );
        });
    }

    /// Auth state goes through the log: every member of a three-member Keel cluster checks with
    /// the same users and roles, a simple token from one member works on the others, a member that
    /// was down while the roles changed learns them from a checkpoint (the log behind it is
    /// compacted), and a restarted member keeps auth enabled.
    #[test]
    fn auth_is_replicated_and_survives_checkpoints_and_restarts() {
        runtime().block_on(async {
            let mut cluster = Cluster::start(
                Kind::Keel,
                3,
                &[
                    "--snapshot-count=20",
                    "--experimental-snapshot-catchup-entries=5",
                ],
            );
            let endpoints: Vec<String> =
                cluster.members.iter().map(|m| m.endpoint.clone()).collect();
            set_up_at(&endpoints[0]);
            let first = channel_to(&endpoints[0]).await;
            let token = authenticate(&first, "alice", "alicepw").await;
            for endpoint in &endpoints {
                let channel = channel_to(endpoint).await;
                assert_eq!(
                    put(&channel, Some(&token), "foo/a").await,
                    "ok",
                    "{endpoint}"
                );
                assert_eq!(
                    put(&channel, Some(&token), "bar").await,
                    "PermissionDenied: etcdserver: permission denied"
                );
            }
            // Member 3 is down while alice loses her role and many writes compact the log.
            cluster.kill(2);
            let root = ["--user=root:rootpw"];
            let revoked = etcdctl(
                &endpoints[0],
                &[root[0], "user", "revoke-role", "alice", "r1"],
                None,
            );
            assert!(revoked.status.success(), "{revoked:?}");
            for i in 0..60 {
                let key = format!("foo/k{i}");
                let out = etcdctl(&endpoints[0], &[root[0], "put", &key, "v"], None);
                assert!(out.status.success(), "{out:?}");
            }
            cluster.restart(2);
            cluster.wait_healthy(2);
            let third = channel_to(&endpoints[2]).await;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                // Once caught up, member 3 refuses alice (a fresh token, checked there).
                let fresh = authenticate(&third, "alice", "alicepw").await;
                let answer = put(&third, Some(&fresh), "foo/b").await;
                if answer == "PermissionDenied: etcdserver: permission denied" {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "member 3 never learned the revocation: {answer}\n{}",
                    cluster.logs()
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert!(
                cluster.members[2]
                    .log()
                    .contains("installed a snapshot from the leader"),
                "member 3 caught up without a snapshot; the test did not cover it"
            );
            // A restarted member replays its checkpoint and log: auth stays enabled.
            cluster.restart(0);
            cluster.wait_healthy(0);
            let first = channel_to(&endpoints[0]).await;
            assert_eq!(
                put(&first, None, "foo/c").await,
                "InvalidArgument: etcdserver: user name is empty"
            );
            let root_token = authenticate(&first, "root", "rootpw").await;
            assert_eq!(put(&first, Some(&root_token), "foo/c").await, "ok");
        });
    }
}
