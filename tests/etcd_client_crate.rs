//! The third-party `etcd-client` crate (a Rust etcd client) against Keel and upstream etcd
//! side by side: the same calls on both, the same observable answers. It reaches what
//! etcdctl 3.4 cannot: nested txns, many watchers on one stream, progress requests, the
//! keep-alive stream.

mod common;

use std::time::Duration;

use common::{Kind, Server};
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};

/// Every call gives up after this long instead of hanging the test.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

async fn connect(server: &Server) -> Client {
    tokio::time::timeout(CALL_TIMEOUT, Client::connect([server.url()], None))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Runs `scenario` against etcd and Keel and returns both transcripts.
fn on_both<F, Fut>(scenario: F) -> (Vec<String>, Vec<String>)
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut transcripts = Vec::new();
    for kind in [Kind::Etcd, Kind::Keel] {
        let server = Server::start(kind, &[]);
        let transcript = runtime.block_on(async {
            let client = connect(&server).await;
            tokio::time::timeout(Duration::from_secs(120), scenario(client))
                .await
                .unwrap_or_else(|_| panic!("{kind:?} scenario timed out; log:\n{}", server.log()))
        });
        transcripts.push(transcript);
    }
    let keel = transcripts.pop().expect("keel");
    let etcd = transcripts.pop().expect("etcd");
    (etcd, keel)
}

fn describe(response: &TxnOpResponse) -> String {
    match response {
        TxnOpResponse::Put(p) => format!("put rev={:?}", p.header().map(|h| h.revision())),
        TxnOpResponse::Get(g) => format!(
            "get {:?}",
            g.kvs()
                .iter()
                .map(|kv| (
                    kv.key_str().unwrap_or("?").to_string(),
                    kv.value_str().unwrap_or("?").to_string(),
                    kv.mod_revision(),
                    kv.version()
                ))
                .collect::<Vec<_>>()
        ),
        TxnOpResponse::Delete(d) => format!("delete {}", d.deleted()),
        TxnOpResponse::Txn(t) => format!(
            "txn succeeded={} [{}]",
            t.succeeded(),
            t.op_responses()
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[test]
fn nested_txns_match_etcd() {
    let (etcd, keel) = on_both(|mut client| async move {
        let mut lines = Vec::new();
        client.put("a", "1", None).await.expect("put a");
        for expected in ["1", "2"] {
            let inner = Txn::new()
                .when([Compare::version("a", CompareOp::Equal, 1)])
                .and_then([TxnOp::put("b", "from-inner-success", None)])
                .or_else([TxnOp::put("c", "from-inner-failure", None)]);
            let outer = Txn::new()
                .when([Compare::value("a", CompareOp::Equal, expected)])
                .and_then([
                    TxnOp::txn(inner),
                    TxnOp::get("", Some(GetOptions::new().with_from_key())),
                ])
                .or_else([TxnOp::put("a", "2", None)]);
            let response = client.txn(outer).await.expect("txn");
            lines.push(format!(
                "succeeded={} rev={:?} [{}]",
                response.succeeded(),
                response.header().map(|h| h.revision()),
                response
                    .op_responses()
                    .iter()
                    .map(describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        lines
    });
    assert_eq!(etcd, keel);
}

#[test]
fn many_watchers_on_one_stream_match_etcd() {
    const WATCHERS: usize = 120;
    let (etcd, keel) = on_both(|mut client| async move {
        let mut stream = client.watch("key-000", None).await.expect("watch stream");
        for i in 1..WATCHERS {
            stream
                .watch(
                    format!("key-{i:03}"),
                    Some(WatchOptions::new().with_prev_key()),
                )
                .await
                .expect("add a watcher");
        }
        let mut created = Vec::new();
        while created.len() < WATCHERS {
            let response = stream.message().await.expect("message").expect("open");
            assert!(response.created(), "expected created, got {response:?}");
            created.push(response.watch_id());
        }
        for i in 0..WATCHERS {
            client
                .put(format!("key-{i:03}"), "v1", None)
                .await
                .expect("put");
            client
                .put(format!("key-{i:03}"), "v2", None)
                .await
                .expect("put");
        }
        let mut events = Vec::new();
        while events.len() < 2 * WATCHERS {
            let response = stream.message().await.expect("message").expect("open");
            for event in response.events() {
                let kv = event.kv().expect("kv");
                events.push(format!(
                    "watch {} {:?} {} {} prev={:?}",
                    response.watch_id(),
                    event.event_type() == EventType::Put,
                    kv.key_str().unwrap_or("?"),
                    kv.mod_revision(),
                    event
                        .prev_kv()
                        .map(|p| p.value_str().unwrap_or("?").to_string()),
                ));
            }
        }
        // Progress: after everything was delivered, the progress response names the current
        // revision.
        stream.request_progress().await.expect("progress request");
        let progress = stream.message().await.expect("message").expect("open");
        events.sort();
        let mut lines = vec![format!("created {created:?}")];
        lines.extend(events);
        lines.push(format!(
            "progress watch_id={} rev={:?} events={}",
            progress.watch_id(),
            progress.header().map(|h| h.revision()),
            progress.events().len()
        ));
        lines
    });
    assert_eq!(etcd.len(), keel.len());
    for (e, k) in etcd.iter().zip(&keel) {
        assert_eq!(e, k);
    }
}

#[test]
fn lease_keep_alive_stream_matches_etcd() {
    let (etcd, keel) = on_both(|mut client| async move {
        let lease = client.lease_grant(30, None).await.expect("grant");
        let (mut keeper, mut stream) = client.lease_keep_alive(lease.id()).await.expect("stream");
        let mut lines = Vec::new();
        for _ in 0..3 {
            keeper.keep_alive().await.expect("keep alive");
            let response = stream.message().await.expect("message").expect("open");
            lines.push(format!(
                "same id={} ttl={}",
                response.id() == lease.id(),
                response.ttl()
            ));
        }
        client.lease_revoke(lease.id()).await.expect("revoke");
        keeper.keep_alive().await.expect("keep alive after revoke");
        let response = stream.message().await.expect("message").expect("open");
        lines.push(format!("after revoke ttl={}", response.ttl()));
        lines
    });
    assert_eq!(etcd, keel);
}
