//! `lock` and `elect`: distributed locks and leader election made on the client from leases,
//! transactions and watches, exactly as etcd's Go `concurrency` package makes them, so that
//! keelctl and etcdctl (or any Go client) contend for the same locks and elections.
//!
//! - A **session** is a lease kept alive in the background (a keep-alive every third of its
//!   TTL); when the lease cannot be renewed within its TTL, or the server says it expired,
//!   the session is over.
//! - A **lock** `<name>` is held by the oldest key under `<name>/`: each contender puts
//!   `<name>/<lease id in hex>` attached to its lease, in a transaction that creates it only
//!   if it does not exist, then waits for the deletion of every key created before its own,
//!   one at a time (the next-lower create revision, watched from the revision last read).
//! - An **election** campaigns the same way with the proposal as the key's value; the leader
//!   is the key with the lowest create revision, and observers watch the leader's key for
//!   changes and its deletion.

use std::time::Duration;

use clap::Args;
use futures::channel::mpsc;
use futures::stream::BoxStream;
use futures::StreamExt;
use keel_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use keel_proto::etcdserverpb::request_op::Request;
use keel_proto::etcdserverpb::response_op::Response;
use keel_proto::etcdserverpb::watch_request::RequestUnion;
use keel_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest,
    RangeRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest, TxnResponse,
    WatchCreateRequest, WatchRequest, WatchResponse,
};
use keel_proto::mvccpb::event::EventType;
use keel_proto::mvccpb::KeyValue;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::Instant;

use crate::client::{Client, Svc};
use crate::error::{exit, status_text, CliError};
use crate::kv::{prefix_end, print_get};
use crate::Ctx;

/// The TTL of a session when none is asked for (etcd's `defaultSessionTTL`), in seconds.
const SESSION_TTL_DEFAULT_SECONDS: i64 = 60;
/// How long the keep-alive waits before reopening a failed stream, or before sending again
/// when an answer is late (the Go client's 500 ms loop).
const KEEP_ALIVE_RETRY: Duration = Duration::from_millis(500);

/// `lock <lockname> [exec-command arg1 arg2 ...]`.
#[derive(Args, Debug)]
pub struct LockArgs {
    /// The lock's name, then optionally a command to run while holding it (after `--` when
    /// it has dashed arguments, as etcdctl needs it).
    pub args: Vec<String>,
    /// Timeout for session.
    #[arg(long, default_value_t = 10)]
    pub ttl: i64,
}

/// `elect <election-name> [proposal]`.
#[derive(Args, Debug)]
pub struct ElectArgs {
    /// The election's name and, to campaign, the proposal.
    pub args: Vec<String>,
    /// Observation mode.
    #[arg(short = 'l', long)]
    pub listen: bool,
}

/// A failed call as etcd's Go client reports it.
fn failed(status: tonic::Status) -> CliError {
    CliError::error(status_text(&status))
}

/// The request for the first key by create revision under `prefix` (`WithFirstCreate`), or
/// the last one created at or before `max_create` (`WithLastCreate` and `WithMaxCreateRev`).
fn top_by_create(prefix: &[u8], order: SortOrder, max_create: i64) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: order as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision: max_create,
        ..Default::default()
    }
}

fn create_revision_is(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
        range_end: vec![],
    }
}

fn op(request: Request) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

/// The range response at `index` of a transaction's responses.
fn range_at(response: &TxnResponse, index: usize) -> Result<&RangeResponse, CliError> {
    match response
        .responses
        .get(index)
        .and_then(|r| r.response.as_ref())
    {
        Some(Response::ResponseRange(range)) => Ok(range),
        _ => Err(CliError::error(
            "the server answered the transaction without the expected range response",
        )),
    }
}

/// A lease kept alive in the background until the process ends or the lease is lost.
pub struct Session {
    /// The lease's id.
    pub lease: i64,
    ended: mpsc::Receiver<()>,
}

impl Session {
    /// Grants a lease of `ttl` seconds (the default when not positive) and starts keeping it
    /// alive.
    pub async fn start(client: &Client, ttl: i64) -> Result<Session, CliError> {
        let ttl = if ttl > 0 {
            ttl
        } else {
            SESSION_TTL_DEFAULT_SECONDS
        };
        let granted = client
            .lease()
            .lease_grant(LeaseGrantRequest { ttl, id: 0 })
            .await
            .map_err(failed)?
            .into_inner();
        if !granted.error.is_empty() {
            return Err(CliError::error(granted.error));
        }
        let (mut end_tx, ended) = mpsc::channel(1);
        let lease = client.lease();
        let id = granted.id;
        tokio::spawn(async move {
            keep_alive(lease, id, granted.ttl).await;
            let _ = end_tx.try_send(());
        });
        Ok(Session { lease: id, ended })
    }

    /// Waits until the session is over.
    pub async fn ended(&mut self) {
        let _ = self.ended.next().await;
    }
}

/// Keeps lease `id` alive: a request now and then a third of the TTL after each answer, the
/// stream reopened when it fails. Returns when the server says the lease is gone, or when no
/// answer came within the TTL.
async fn keep_alive(mut lease: LeaseClient<Svc>, id: i64, ttl: i64) {
    let ttl_of = |ttl: i64| Duration::from_secs(u64::try_from(ttl).unwrap_or(1).max(1));
    let mut deadline = Instant::now() + ttl_of(ttl);
    loop {
        if Instant::now() >= deadline {
            return;
        }
        let (mut requests, receiver) = mpsc::channel(4);
        // The first request goes with the stream's opening: servers answer (headers
        // included) only once a request arrived.
        let _ = requests.try_send(LeaseKeepAliveRequest { id });
        let opened = tokio::select! {
            opened = lease.lease_keep_alive(receiver) => opened,
            _ = tokio::time::sleep_until(deadline) => return,
        };
        let mut answers = match opened {
            Ok(response) => response.into_inner(),
            Err(_) => {
                tokio::time::sleep(KEEP_ALIVE_RETRY).await;
                continue;
            }
        };
        let mut next_send = Instant::now() + KEEP_ALIVE_RETRY;
        loop {
            tokio::select! {
                answer = answers.message() => match answer {
                    Ok(Some(answer)) => {
                        if answer.ttl <= 0 {
                            return;
                        }
                        let now = Instant::now();
                        deadline = now + ttl_of(answer.ttl);
                        next_send = now + ttl_of(answer.ttl) / 3;
                    }
                    _ => {
                        tokio::time::sleep(KEEP_ALIVE_RETRY).await;
                        break;
                    }
                },
                _ = tokio::time::sleep_until(next_send) => {
                    if requests.try_send(LeaseKeepAliveRequest { id }).is_err() {
                        break;
                    }
                    next_send = Instant::now() + KEEP_ALIVE_RETRY;
                }
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }
}

/// Waits until `key` is deleted, watching from `revision` (etcd's `waitDelete`).
async fn wait_delete(client: &Client, key: &[u8], revision: i64) -> Result<(), CliError> {
    let mut events = watch(client, key, vec![], revision).await?;
    while let Some(response) = events.next().await {
        let response = response?;
        if response
            .events
            .iter()
            .any(|e| e.r#type == EventType::Delete as i32)
        {
            return Ok(());
        }
    }
    Err(CliError::error("lost watcher waiting for delete"))
}

/// Waits until no key under `prefix` created at or before `max_create` is left, one
/// deletion at a time (etcd's `waitDeletes`); returns the header of the last read.
async fn wait_deletes(
    client: &Client,
    prefix: &[u8],
    max_create: i64,
) -> Result<Option<ResponseHeader>, CliError> {
    loop {
        let response = client
            .kv()
            .range(top_by_create(prefix, SortOrder::Descend, max_create))
            .await
            .map_err(failed)?
            .into_inner();
        let Some(last) = response.kvs.first() else {
            return Ok(response.header);
        };
        let revision = response.header.as_ref().map_or(0, |h| h.revision);
        wait_delete(client, &last.key, revision).await?;
    }
}

/// A watch on `[key, range_end)` from `revision` (the current one when 0): its responses,
/// ended at the first failure. A response that cancels the watch (a compacted revision, a
/// refusal) is an error.
pub async fn watch(
    client: &Client,
    key: &[u8],
    range_end: Vec<u8>,
    revision: i64,
) -> Result<BoxStream<'static, Result<WatchResponse, CliError>>, CliError> {
    let (mut requests, receiver) = mpsc::channel(1);
    let _ = requests.try_send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.to_vec(),
            range_end,
            start_revision: revision,
            ..Default::default()
        })),
    });
    let stream = client
        .watch()
        .watch(receiver)
        .await
        .map_err(failed)?
        .into_inner();
    // The request sender lives as long as the stream, so the watch stays open.
    Ok(futures::stream::unfold(
        (stream, requests, false),
        |(mut stream, requests, done)| async move {
            if done {
                return None;
            }
            match stream.message().await {
                Ok(Some(response)) if response.canceled => {
                    let reason = if response.compact_revision != 0 {
                        "etcdserver: mvcc: required revision has been compacted".to_string()
                    } else if response.cancel_reason.is_empty() {
                        "etcdserver: watch canceled".to_string()
                    } else {
                        response.cancel_reason.clone()
                    };
                    Some((Err(CliError::error(reason)), (stream, requests, true)))
                }
                Ok(Some(response)) => Some((Ok(response), (stream, requests, false))),
                Ok(None) => None,
                Err(status) => Some((Err(failed(status)), (stream, requests, true))),
            }
        },
    )
    .boxed())
}

/// The interrupt and termination signals, on which `lock` and `elect` let go and exit.
struct Stop {
    interrupt: Signal,
    terminate: Signal,
}

impl Stop {
    fn new() -> Result<Stop, CliError> {
        let listen =
            |kind| signal(kind).map_err(|e| CliError::error(format!("listening for signals: {e}")));
        Ok(Stop {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// A lock held (or being taken) by a session: etcd's `concurrency.Mutex`.
struct Mutex {
    prefix: Vec<u8>,
    key: Vec<u8>,
    revision: i64,
    header: Option<ResponseHeader>,
}

impl Mutex {
    fn new(name: &str) -> Mutex {
        Mutex {
            prefix: format!("{name}/").into_bytes(),
            key: vec![],
            revision: -1,
            header: None,
        }
    }

    /// Takes the lock, waiting for every holder and waiter before this session.
    async fn lock(&mut self, client: &Client, session: &Session) -> Result<(), CliError> {
        self.key = [
            self.prefix.as_slice(),
            format!("{:x}", session.lease).as_bytes(),
        ]
        .concat();
        let owner = top_by_create(&self.prefix, SortOrder::Ascend, 0);
        let response = client
            .kv()
            .txn(TxnRequest {
                compare: vec![create_revision_is(&self.key, 0)],
                success: vec![
                    op(Request::RequestPut(PutRequest {
                        key: self.key.clone(),
                        lease: session.lease,
                        ..Default::default()
                    })),
                    op(Request::RequestRange(owner.clone())),
                ],
                failure: vec![
                    op(Request::RequestRange(RangeRequest {
                        key: self.key.clone(),
                        ..Default::default()
                    })),
                    op(Request::RequestRange(owner)),
                ],
            })
            .await
            .map_err(failed)?
            .into_inner();
        self.revision = response.header.as_ref().map_or(0, |h| h.revision);
        if !response.succeeded {
            self.revision = range_at(&response, 0)?
                .kvs
                .first()
                .map_or(0, |kv| kv.create_revision);
        }
        let holder = range_at(&response, 1)?.kvs.first();
        if holder.is_none_or(|kv| kv.create_revision == self.revision) {
            self.header = response.header;
            return Ok(());
        }
        if let Err(e) = wait_deletes(client, &self.prefix, self.revision - 1).await {
            let _ = self.unlock(client).await;
            return Err(e);
        }
        // The session may have expired while waiting: the key must still be there.
        let mine = match client
            .kv()
            .range(RangeRequest {
                key: self.key.clone(),
                ..Default::default()
            })
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => {
                let _ = self.unlock(client).await;
                return Err(failed(status));
            }
        };
        if mine.kvs.is_empty() {
            return Err(CliError::error("mutex: session is expired"));
        }
        self.header = mine.header;
        Ok(())
    }

    async fn unlock(&mut self, client: &Client) -> Result<(), CliError> {
        client
            .kv()
            .delete_range(DeleteRangeRequest {
                key: self.key.clone(),
                ..Default::default()
            })
            .await
            .map_err(failed)?;
        self.key = vec![0];
        self.revision = -1;
        Ok(())
    }
}

/// `lock`: takes the lock and prints its key, then holds it until interrupted (or the
/// session ends); with a command, runs it while holding the lock and exits with its status.
pub fn lock(ctx: &Ctx, args: &LockArgs) -> Result<(), CliError> {
    let Some((name, command)) = args.args.split_first() else {
        return Err(CliError::bad_args(
            "lock takes a lock name argument and an optional command to execute",
        ));
    };
    let client = ctx.client()?;
    client.block_on(async {
        let mut stop = Stop::new()?;
        let mut session = Session::start(client, args.ttl).await?;
        let mut mutex = Mutex::new(name);
        let taken = tokio::select! {
            taken = mutex.lock(client, &session) => Some(taken),
            _ = stop.wait() => None,
        };
        match taken {
            Some(taken) => taken?,
            None => {
                let _ = mutex.unlock(client).await;
                return Err(CliError::error("context canceled"));
            }
        }
        if !command.is_empty() {
            let status = run_locked(command, &mutex).await;
            let unlocked = mutex.unlock(client).await;
            status?;
            return unlocked;
        }
        let held = client
            .kv()
            .range(RangeRequest {
                key: mutex.key.clone(),
                ..Default::default()
            })
            .await
            .map_err(failed)?
            .into_inner();
        if held.kvs.is_empty() {
            return Err(CliError::error("lock lost on init"));
        }
        print_get(ctx.out, &held, false)?;
        tokio::select! {
            _ = stop.wait() => mutex.unlock(client).await,
            _ = session.ended() => Err(CliError::error("session expired")),
        }
    })
}

/// Runs `command` while the lock is held, with `ETCD_LOCK_KEY` and `ETCD_LOCK_REV` in its
/// environment (unless already set there) and stdin from /dev/null; a failure carries the
/// command's exit status as etcdctl 3.5 exits with it.
async fn run_locked(command: &[String], mutex: &Mutex) -> Result<(), CliError> {
    let mut child = tokio::process::Command::new(&command[0]);
    child.args(&command[1..]).stdin(std::process::Stdio::null());
    if std::env::var_os("ETCD_LOCK_KEY").is_none() {
        child.env(
            "ETCD_LOCK_KEY",
            String::from_utf8_lossy(&mutex.key).as_ref(),
        );
    }
    if std::env::var_os("ETCD_LOCK_REV").is_none() {
        let revision = mutex.header.as_ref().map_or(0, |h| h.revision);
        child.env("ETCD_LOCK_REV", revision.to_string());
    }
    let status = child.status().await.map_err(|e| {
        let name = &command[0];
        if e.kind() == std::io::ErrorKind::NotFound && !name.contains('/') {
            CliError::error(format!(
                "exec: {}: executable file not found in $PATH",
                crate::gofmt::quote(name.as_bytes())
            ))
        } else {
            CliError::error(format!("fork/exec {name}: {}", go_os_error(&e)))
        }
    })?;
    exit_status(status)
}

/// A child's exit as Go's `exec.ExitError` reports it: `exit status N` with N as the exit
/// code, or `signal: <name>` with 255 (Go exits with -1).
fn exit_status(status: std::process::ExitStatus) -> Result<(), CliError> {
    use std::os::unix::process::ExitStatusExt;
    if status.success() {
        return Ok(());
    }
    if let Some(code) = status.code() {
        return Err(CliError::new(
            u8::try_from(code).unwrap_or(exit::ERROR),
            format!("exit status {code}"),
        ));
    }
    let signal = status.signal().unwrap_or(0);
    let name = match signal {
        libc::SIGHUP => "hangup".to_string(),
        libc::SIGINT => "interrupt".to_string(),
        libc::SIGQUIT => "quit".to_string(),
        libc::SIGABRT => "aborted".to_string(),
        libc::SIGKILL => "killed".to_string(),
        libc::SIGSEGV => "segmentation fault".to_string(),
        libc::SIGPIPE => "broken pipe".to_string(),
        libc::SIGTERM => "terminated".to_string(),
        other => format!("signal {other}"),
    };
    Err(CliError::new(255, format!("signal: {name}")))
}

/// An OS error in Go's words (`syscall.Errno.Error()`: lower case, no code).
fn go_os_error(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => {
            let text = error.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_string();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text,
            }
        }
    }
}

/// `elect`: campaigns with the proposal and prints the leader key once elected, then leads
/// until interrupted and resigns; with `--listen`, prints the leader and each change.
pub fn elect(ctx: &Ctx, args: &ElectArgs) -> Result<(), CliError> {
    let (name, proposal) = match args.args.as_slice() {
        [name] => {
            if !args.listen {
                return Err(CliError::bad_args("no proposal argument but -l not set"));
            }
            (name, None)
        }
        [name, proposal] => {
            if args.listen {
                return Err(CliError::bad_args("proposal given but -l is set"));
            }
            (name, Some(proposal))
        }
        _ => {
            return Err(CliError::bad_args(
                "elect takes one election name argument and an optional proposal argument",
            ))
        }
    };
    let client = ctx.client()?;
    client.block_on(async {
        let mut stop = Stop::new()?;
        let session = Session::start(client, SESSION_TTL_DEFAULT_SECONDS).await?;
        let prefix = format!("{name}/").into_bytes();
        match proposal {
            Some(proposal) => campaign(ctx, client, session, &prefix, proposal, &mut stop).await,
            None => {
                tokio::select! {
                    observed = observe(ctx, client, &prefix) => {
                        observed?;
                        Err(CliError::error("elect: observer lost"))
                    }
                    _ = stop.wait() => Ok(()),
                }
            }
        }
    })
}

/// Campaigns for leadership (etcd's `Election.Campaign`), prints the leader key, leads until
/// stopped, then resigns.
async fn campaign(
    ctx: &Ctx,
    client: &Client,
    mut session: Session,
    prefix: &[u8],
    proposal: &str,
    stop: &mut Stop,
) -> Result<(), CliError> {
    let key = [prefix, format!("{:x}", session.lease).as_bytes()].concat();
    let leader = async {
        let response = client
            .kv()
            .txn(TxnRequest {
                compare: vec![create_revision_is(&key, 0)],
                success: vec![op(Request::RequestPut(PutRequest {
                    key: key.clone(),
                    value: proposal.as_bytes().to_vec(),
                    lease: session.lease,
                    ..Default::default()
                }))],
                failure: vec![op(Request::RequestRange(RangeRequest {
                    key: key.clone(),
                    ..Default::default()
                }))],
            })
            .await
            .map_err(failed)?
            .into_inner();
        let mut revision = response.header.as_ref().map_or(0, |h| h.revision);
        if !response.succeeded {
            let existing = range_at(&response, 0)?.kvs.first().cloned();
            if let Some(existing) = existing {
                revision = existing.create_revision;
                if existing.value != proposal.as_bytes() {
                    proclaim(client, &key, revision, session.lease, proposal).await?;
                }
            }
        }
        wait_deletes(client, prefix, revision - 1).await?;
        Ok::<i64, CliError>(revision)
    };
    let elected = tokio::select! {
        elected = leader => Some(elected),
        _ = stop.wait() => None,
    };
    let Some(elected) = elected else {
        let _ = resign(client, &key, None).await;
        return Err(CliError::error("context canceled"));
    };
    let revision = elected?;
    let response = client
        .kv()
        .range(RangeRequest {
            key: key.clone(),
            ..Default::default()
        })
        .await
        .map_err(failed)?
        .into_inner();
    print_get(ctx.out, &response, false)?;
    tokio::select! {
        _ = stop.wait() => resign(client, &key, Some(revision)).await,
        _ = session.ended() => Err(CliError::error("elect: session expired")),
    }
}

/// Sets the leader key's value if it is still this campaign's key (etcd's `Proclaim`).
async fn proclaim(
    client: &Client,
    key: &[u8],
    revision: i64,
    lease: i64,
    value: &str,
) -> Result<(), CliError> {
    let response = client
        .kv()
        .txn(TxnRequest {
            compare: vec![create_revision_is(key, revision)],
            success: vec![op(Request::RequestPut(PutRequest {
                key: key.to_vec(),
                value: value.as_bytes().to_vec(),
                lease,
                ..Default::default()
            }))],
            failure: vec![],
        })
        .await
        .map_err(failed)?
        .into_inner();
    if !response.succeeded {
        return Err(CliError::error("election: not leader"));
    }
    Ok(())
}

/// Deletes the campaign's key if it is still the one created at `revision` (etcd's
/// `Resign`); with no revision known, whatever the key is.
async fn resign(client: &Client, key: &[u8], revision: Option<i64>) -> Result<(), CliError> {
    let delete = op(Request::RequestDeleteRange(DeleteRangeRequest {
        key: key.to_vec(),
        ..Default::default()
    }));
    let compare = revision
        .map(|r| vec![create_revision_is(key, r)])
        .unwrap_or_default();
    client
        .kv()
        .txn(TxnRequest {
            compare,
            success: vec![delete],
            failure: vec![],
        })
        .await
        .map_err(failed)?;
    Ok(())
}

/// Prints the leader of the election under `prefix` and every change of it, as etcd's
/// `Election.Observe` reports them: the leader when there is one (else the first key put),
/// then each put of the leader's key, then the next leader once it is deleted. Returns
/// `Ok` when a read or a watch fails (the observer is lost), an error only when printing
/// fails.
async fn observe(ctx: &Ctx, client: &Client, prefix: &[u8]) -> Result<(), CliError> {
    loop {
        let Ok(read) = client
            .kv()
            .range(top_by_create(prefix, SortOrder::Ascend, 0))
            .await
        else {
            return Ok(());
        };
        let mut read = read.into_inner();
        let (header, leader): (Option<ResponseHeader>, KeyValue) = match read.kvs.first() {
            Some(kv) => (read.header, kv.clone()),
            None => {
                let revision = read.header.as_ref().map_or(0, |h| h.revision);
                let Ok(mut events) = watch(client, prefix, prefix_end(prefix), revision).await
                else {
                    return Ok(());
                };
                let mut found = None;
                while found.is_none() {
                    let Some(Ok(response)) = events.next().await else {
                        return Ok(());
                    };
                    if let Some(event) = response
                        .events
                        .iter()
                        .find(|e| e.r#type == EventType::Put as i32)
                    {
                        let kv = event.kv.clone().unwrap_or_default();
                        let mut header = response.header.unwrap_or_default();
                        header.revision = kv.mod_revision;
                        found = Some((Some(header), kv));
                    }
                }
                found.unwrap_or_default()
            }
        };
        // The first report is a new response with the leader alone; later ones reuse the read
        // (its count and more flags) with the event's header and key, as Go's client does.
        print_get(
            ctx.out,
            &RangeResponse {
                header,
                kvs: vec![leader.clone()],
                ..Default::default()
            },
            false,
        )?;
        let from = header.as_ref().map_or(0, |h| h.revision) + 1;
        let Ok(mut events) = watch(client, &leader.key, vec![], from).await else {
            return Ok(());
        };
        'leader: loop {
            let Some(Ok(response)) = events.next().await else {
                return Ok(());
            };
            for event in &response.events {
                if event.r#type == EventType::Delete as i32 {
                    break 'leader;
                }
                read.header = response.header;
                read.kvs = event.kv.clone().into_iter().collect();
                print_get(ctx.out, &read, false)?;
            }
        }
    }
}
