//! `watch`, with etcdctl's arguments (a key or prefix, a range end, `--` and a command to run
//! for each event), `ETCDCTL_WATCH_KEY`/`ETCDCTL_WATCH_RANGE_END`, interactive mode, output
//! formats, messages and exit codes.
//!
//! All watches of one run share one Watch stream, as etcd's Go client shares it. What the
//! client does with each response is mirrored: the creation answer is not shown; a watch the
//! server cancels without a compaction revision ends silently; a compacted one is shown,
//! with `watch was canceled (...)` on stderr, and then ends; answers to a progress request
//! (watch id -1) go to every watch.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, Write};

use clap::Args;
use futures::channel::mpsc;
use futures::StreamExt;
use keel_proto::etcdserverpb::watch_request::RequestUnion;
use keel_proto::etcdserverpb::{
    WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use keel_proto::mvccpb::event::EventType;
use keel_proto::mvccpb::Event;
use tonic::Streaming;

use crate::error::{exit, status_text, CliError};
use crate::global::Format;
use crate::gofmt::{quote, JsonObject};
use crate::goscan::{argify, parse_int};
use crate::print::{self, Out};
use crate::Ctx;

/// `watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]`: watches
/// events stream on keys or prefixes.
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// The key or prefix, and optionally the end of the range (exclusive).
    pub args: Vec<String>,
    /// A command to run for each event (after `--`).
    #[arg(last = true)]
    pub exec: Vec<String>,
    /// Interactive mode.
    #[arg(short, long)]
    pub interactive: bool,
    /// Watch on a prefix if prefix is set.
    #[arg(long)]
    pub prefix: bool,
    /// Revision to start watching.
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// Get the previous key-value pair before the event happens.
    #[arg(long)]
    pub prev_kv: bool,
    /// Get periodic watch progress notification from server.
    #[arg(long)]
    pub progress_notify: bool,
}

const BAD_ARGS_NUM: &str = "bad number of arguments";
const BAD_ARGS_CONFLICT_ENV: &str = "bad number of arguments (found conflicting environment key)";
const BAD_ARGS_SEPARATOR: &str = "bad number of arguments (found separator --, but no commands)";
const CANCELED_BY_SERVER: &str = "watch is canceled by the server";

/// The flags of one watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Flags {
    prefix: bool,
    rev: i64,
    prev_kv: bool,
    progress_notify: bool,
}

/// `ETCDCTL_WATCH_KEY` and `ETCDCTL_WATCH_RANGE_END` (empty when unset).
struct Env {
    key: String,
    range_end: String,
}

impl Env {
    fn read() -> Env {
        Env {
            key: std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default(),
            range_end: std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default(),
        }
    }

    /// The environment's key and range end ahead of `args`, when a key is set.
    fn prepend(&self, args: Vec<String>) -> Vec<String> {
        if self.key.is_empty() {
            return args;
        }
        let mut all = vec![self.key.clone()];
        if !self.range_end.is_empty() {
            all.push(self.range_end.clone());
        }
        all.extend(args);
        all
    }
}

/// The watch arguments left when the command's own words are taken off: what follows the
/// first `--` of the raw arguments is the command, and the positional arguments (which
/// include the command's words) are cut before the last occurrence of its first word, as
/// etcdctl cuts them.
fn split_exec(
    positional: Vec<String>,
    with_separator: &[String],
) -> (Vec<String>, Option<Vec<String>>) {
    let Some(at) = with_separator.iter().position(|a| a == "--") else {
        return (positional, None);
    };
    let exec = with_separator[at + 1..].to_vec();
    let mut positional = positional;
    let first = with_separator.get(at + 1);
    let end = positional
        .iter()
        .rposition(|a| Some(a) == first)
        .unwrap_or(0);
    positional.truncate(end);
    (positional, Some(exec))
}

/// etcdctl's checks of the command line of a watch that is not interactive: `raw` is the
/// command line after the word `watch`, `positional` the arguments left once flags are
/// parsed (those after `--` included). Returns the watch arguments and the command to run.
fn plan_command_line(
    raw: &[String],
    positional: Vec<String>,
    env: &Env,
) -> Result<(Vec<String>, Vec<String>), String> {
    let separator = raw.iter().position(|a| a == "--");
    if separator == Some(raw.len().wrapping_sub(1)) {
        return Err(BAD_ARGS_SEPARATOR.into());
    }
    if separator.is_none() && raw.is_empty() && env.key.is_empty() {
        return Err(BAD_ARGS_NUM.into());
    }
    if !env.key.is_empty() {
        let exec_len = separator.map_or(0, |at| raw.len() - at - 1);
        // Positional arguments besides the command conflict with the environment's key.
        if positional.len() > exec_len {
            return Err(BAD_ARGS_CONFLICT_ENV.into());
        }
    }
    let (args, exec) = split_exec(env.prepend(positional), raw);
    Ok((args, exec.unwrap_or_default()))
}

/// Parses one interactive watch line's flags as pflag would: flags anywhere, `--` ends
/// them; `-i`, `--interactive`, `--prefix`, `--rev`, `--prev-kv`, `--progress-notify`.
fn parse_flags(args: &[String], flags: &mut Flags) -> Result<Vec<String>, String> {
    let mut positional = Vec::new();
    let mut i = 0;
    let bool_value = |name: &str, value: Option<&str>| -> Result<bool, String> {
        match value {
            None => Ok(true),
            Some(v) => crate::global::parse_bool(v).map_err(|e| {
                format!(
                    "invalid argument {} for \"--{name}\" flag: {}",
                    quote(v.as_bytes()),
                    e.replace(&format!("{v:?}"), &quote(v.as_bytes()))
                )
            }),
        }
    };
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            positional.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            match name {
                "interactive" => {
                    bool_value(name, value)?;
                }
                "prefix" => flags.prefix = bool_value(name, value)?,
                "prev-kv" => flags.prev_kv = bool_value(name, value)?,
                "progress-notify" => flags.progress_notify = bool_value(name, value)?,
                "rev" => {
                    let text = match value {
                        Some(v) => v.to_string(),
                        None => {
                            let v = args
                                .get(i)
                                .ok_or_else(|| format!("flag needs an argument: --{name}"))?;
                            i += 1;
                            v.clone()
                        }
                    };
                    flags.rev = parse_int(&text, 10).map_err(|e| {
                        format!(
                            "invalid argument {} for \"--rev\" flag: {e}",
                            quote(text.as_bytes())
                        )
                    })?;
                }
                _ => return Err(format!("unknown flag: --{name}")),
            }
        } else if arg.len() > 1 && arg.starts_with('-') {
            for c in arg[1..].chars() {
                if c != 'i' {
                    return Err(format!("unknown shorthand flag: '{c}' in {arg}"));
                }
            }
        } else {
            positional.push(arg.clone());
        }
    }
    Ok(positional)
}

/// etcdctl's checks of an interactive `watch ...` line (its words after `watch`): the watch
/// arguments, the command to run and the flags (`progress_notify` comes from the command
/// line and stays).
fn plan_line(
    words: &[String],
    env: &Env,
    progress_notify: bool,
) -> Result<(Vec<String>, Vec<String>, Flags), String> {
    let separator = words.iter().position(|a| a == "--");
    if separator.is_some() && separator == Some(words.len() - 1) {
        return Err(BAD_ARGS_SEPARATOR.into());
    }
    let mut flags = Flags {
        progress_notify,
        ..Flags::default()
    };
    let positional = parse_flags(words, &mut flags)?;
    if separator.is_none() && env.key.is_empty() && positional.is_empty() {
        return Err(BAD_ARGS_NUM.into());
    }
    if separator.is_none() && !positional.is_empty() && !env.key.is_empty() {
        return Err(BAD_ARGS_CONFLICT_ENV.into());
    }
    let (args, exec) = split_exec(env.prepend(positional), words);
    Ok((args, exec.unwrap_or_default(), flags))
}

/// The create request of a watch on `args` (key, optional range end; more are ignored).
fn create_request(args: &[String], flags: &Flags) -> Result<WatchCreateRequest, String> {
    let key = args.first().ok_or(BAD_ARGS_NUM)?;
    if args.len() == 2 && flags.prefix {
        return Err("`range_end` and `--prefix` are mutually exclusive".into());
    }
    let range_end = if args.len() == 2 {
        Some(args[1].as_str())
    } else {
        None
    };
    let (key, range_end) = crate::kv::key_range(key, range_end, flags.prefix, false);
    Ok(WatchCreateRequest {
        key,
        range_end,
        start_revision: flags.rev,
        progress_notify: flags.progress_notify,
        prev_kv: flags.prev_kv,
        ..Default::default()
    })
}

/// `watch`.
pub fn watch(ctx: &Ctx, args: &WatchArgs) -> Result<(), CliError> {
    let env = Env::read();
    if env.key.is_empty() && !env.range_end.is_empty() {
        return Err(CliError::bad_args(format!(
            "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}",
            quote(env.range_end.as_bytes())
        )));
    }
    if args.interactive {
        return interactive(ctx, args, &env);
    }
    let raw: Vec<String> = std::env::args()
        .skip(1)
        .skip_while(|a| a != "watch")
        .skip(1)
        .collect();
    let mut positional = args.args.clone();
    positional.extend(args.exec.iter().cloned());
    let (watch_args, exec) =
        plan_command_line(&raw, positional, &env).map_err(CliError::bad_args)?;
    let flags = Flags {
        prefix: args.prefix,
        rev: args.rev,
        prev_kv: args.prev_kv,
        progress_notify: args.progress_notify,
    };
    let client = ctx.client()?;
    let create = create_request(&watch_args, &flags).map_err(CliError::bad_args)?;
    let mut session = Session::new(ctx.out);
    // Where the watch resumes after a broken connection, as etcd's client tracks it.
    let mut next_revision = create.start_revision;
    let canceled = || CliError::new(exit::INTERRUPTED, CANCELED_BY_SERVER);
    client.block_on(async {
        let mut pause = RECONNECT_PAUSE_MIN;
        loop {
            let mut resumed = create.clone();
            resumed.start_revision = next_revision;
            session.reset();
            match session
                .open(client, create_request_union(resumed), exec.clone())
                .await
            {
                Ok(mut stream) => loop {
                    match stream.message().await {
                        Ok(Some(response)) => {
                            pause = RECONNECT_PAUSE_MIN;
                            next_revision = resume_revision(next_revision, &response);
                            if session.handle(response)? == Flow::Ended {
                                return Err(canceled());
                            }
                        }
                        // A stream ended without a status, or a broken connection: etcd's
                        // client connects again and resumes the watch.
                        Ok(None) => break,
                        Err(status) if connection_broke(&status) => break,
                        Err(status) => {
                            eprintln!("watch was canceled ({})", status_text(&status));
                            return Err(canceled());
                        }
                    }
                },
                Err(status) if connection_broke(&status) => {}
                Err(status) => return Err(CliError::error(status_text(&status))),
            }
            loop {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RECONNECT_PAUSE_MAX);
                if client.redial().await {
                    break;
                }
            }
        }
    })
}

/// The first pause before a broken watch connects again; it doubles up to
/// [`RECONNECT_PAUSE_MAX`] while the endpoints stay unreachable (gRPC's backoff).
const RECONNECT_PAUSE_MIN: std::time::Duration = std::time::Duration::from_millis(100);

/// The longest pause between tries to connect a broken watch again.
const RECONNECT_PAUSE_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// The revision a watch resumes from after `response`, as etcd's client 3.5 computes it: the
/// creation's header revision for a watch of "now" (the client's rule: an event at that
/// revision may be shown again after a resume), one past the header's revision for later
/// responses, and one past the last event's revision when it has events.
fn resume_revision(next: i64, response: &WatchResponse) -> i64 {
    let header = response.header.as_ref().map_or(0, |h| h.revision);
    let mut next = if response.created {
        if next == 0 {
            header
        } else {
            next
        }
    } else {
        header + 1
    };
    if let Some(kv) = response.events.last().and_then(|e| e.kv.as_ref()) {
        next = kv.mod_revision + 1;
    }
    next
}

/// Whether a watch stream failed because its connection did (the server went away, the
/// network broke), which etcd's client retries, rather than by the server's answer. gRPC's
/// Unavailable and Internal codes are retried as etcd's client retries them, but for
/// `etcdserver: no leader`; a connection reset shows in tonic as Unknown with h2's or the
/// transport's error.
fn connection_broke(status: &tonic::Status) -> bool {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Internal => {
            status.message() != "etcdserver: no leader"
        }
        tonic::Code::Unknown => {
            let message = status.message();
            message.starts_with("h2 protocol error") || message.starts_with("transport error")
        }
        _ => false,
    }
}

fn create_request_union(create: WatchCreateRequest) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(create)),
    }
}

/// `watch -i`: `watch ...` and `progress` lines from stdin until it ends.
fn interactive(ctx: &Ctx, args: &WatchArgs, env: &Env) -> Result<(), CliError> {
    let client = ctx.client()?;
    let (line_tx, mut lines) = mpsc::unbounded::<Result<String, String>>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        loop {
            let mut raw = Vec::new();
            let line = match input.read_until(b'\n', &mut raw) {
                Ok(_) if raw.last() == Some(&b'\n') => {
                    raw.pop();
                    Ok(String::from_utf8_lossy(&raw).into_owned())
                }
                Ok(_) => Err("EOF".to_string()),
                Err(e) => Err(e.to_string()),
            };
            let end = line.is_err();
            if line_tx.unbounded_send(line).is_err() || end {
                return;
            }
        }
    });
    let mut session = Session::new(ctx.out);
    client.block_on(async {
        let mut stream: Option<Streaming<WatchResponse>> = None;
        loop {
            let next = async {
                match stream.as_mut() {
                    Some(stream) => stream.message().await,
                    None => std::future::pending().await,
                }
            };
            let line = tokio::select! {
                line = lines.next() => line,
                response = next => {
                    match response {
                        Ok(Some(response)) => {
                            session.handle(response)?;
                        }
                        // The stream is gone; its watches with it.
                        Ok(None) | Err(_) => {
                            session.active.clear();
                            stream = None;
                        }
                    }
                    continue;
                }
            };
            let line = match line {
                Some(Ok(line)) => line,
                Some(Err(e)) => {
                    return Err(CliError::invalid_input(format!(
                        "error reading watch request line: {e}"
                    )))
                }
                None => return Ok(()),
            };
            let words = argify(&line).map_err(CliError::invalid_input)?;
            let request = match words.first().map(String::as_str) {
                None => {
                    eprintln!("Invalid command: {line} (watch and progress supported)");
                    continue;
                }
                Some("watch") => {
                    if words.len() < 2 && env.key.is_empty() {
                        eprintln!("Invalid command {line} (command type or key is not provided)");
                        continue;
                    }
                    let (watch_args, exec, flags) =
                        plan_line(&words[1..], env, args.progress_notify)
                            .map_err(CliError::bad_args)?;
                    match create_request(&watch_args, &flags) {
                        Ok(create) => (create_request_union(create), Some(exec)),
                        Err(e) => {
                            eprintln!("Invalid command {line} ({e})");
                            continue;
                        }
                    }
                }
                Some("progress") => (
                    WatchRequest {
                        request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
                    },
                    None,
                ),
                Some(_) => {
                    eprintln!("Invalid command {line} (only support watch)");
                    continue;
                }
            };
            let (request, exec) = request;
            match &stream {
                Some(_) => session.send(request, exec),
                None => {
                    stream = Some(
                        session
                            .open(client, request, exec.unwrap_or_default())
                            .await
                            .map_err(|status| CliError::error(status_text(&status)))?,
                    )
                }
            }
        }
    })
}

/// Whether the watch that got a response goes on.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Ended,
}

/// The watches on one stream: those asked for and not yet created (in order: the server
/// answers creations in order), and the live ones by id, each with the command to run for
/// its events.
struct Session {
    out: Out,
    requests: Option<mpsc::UnboundedSender<WatchRequest>>,
    pending: VecDeque<Vec<String>>,
    active: BTreeMap<i64, Vec<String>>,
}

impl Session {
    fn new(out: Out) -> Session {
        Session {
            out,
            requests: None,
            pending: VecDeque::new(),
            active: BTreeMap::new(),
        }
    }

    /// Opens the Watch stream with `first` as its first request (etcd's server sends its
    /// response headers only with its first message).
    async fn open(
        &mut self,
        client: &crate::client::Client,
        first: WatchRequest,
        exec: Vec<String>,
    ) -> Result<Streaming<WatchResponse>, tonic::Status> {
        let (tx, rx) = mpsc::unbounded();
        self.requests = Some(tx);
        self.send(first, Some(exec));
        let mut request = tonic::Request::new(rx);
        // etcdctl's watches require a leader (clientv3.WithRequireLeader).
        request.metadata_mut().insert(
            "hasleader",
            tonic::metadata::MetadataValue::from_static("true"),
        );
        let response = client.watch().watch(request).await?;
        Ok(response.into_inner())
    }

    /// Forgets the watches of a stream that is gone.
    fn reset(&mut self) {
        self.requests = None;
        self.pending.clear();
        self.active.clear();
    }

    /// Sends a request on the stream; a create request's command waits for its creation.
    fn send(&mut self, request: WatchRequest, exec: Option<Vec<String>>) {
        if let (Some(RequestUnion::CreateRequest(_)), Some(exec)) = (&request.request_union, exec) {
            self.pending.push_back(exec);
        }
        if let Some(requests) = &self.requests {
            let _ = requests.unbounded_send(request);
        }
    }

    /// Handles one response as etcd's client and etcdctl do.
    fn handle(&mut self, response: WatchResponse) -> Result<Flow, CliError> {
        let id = response.watch_id;
        if response.created {
            let Some(exec) = self.pending.pop_front() else {
                return Ok(Flow::Continue);
            };
            if id == -1 || (response.canceled && !response.cancel_reason.is_empty()) {
                // A refused watch: the client closes it with the reason as its error.
                let reason = response.cancel_reason.clone();
                let closing = WatchResponse {
                    canceled: true,
                    ..Default::default()
                };
                eprintln!("watch was canceled ({reason})");
                self.display(&closing, false)?;
                return Ok(Flow::Ended);
            }
            self.active.insert(id, exec);
            return Ok(Flow::Continue);
        }
        if response.canceled && response.compact_revision == 0 {
            self.active.remove(&id);
            return Ok(Flow::Ended);
        }
        if id == -1 && is_progress_notify(&response) {
            let execs: Vec<Vec<String>> = self.active.values().cloned().collect();
            for exec in execs {
                self.deliver(&response, &exec)?;
            }
            return Ok(Flow::Continue);
        }
        let Some(exec) = self.active.get(&id).cloned() else {
            return Ok(Flow::Continue);
        };
        self.deliver(&response, &exec)?;
        if response.canceled {
            self.active.remove(&id);
            return Ok(Flow::Ended);
        }
        Ok(Flow::Continue)
    }

    /// Shows a response to its watch and runs its command for each event.
    fn deliver(&self, response: &WatchResponse, exec: &[String]) -> Result<(), CliError> {
        if response.canceled {
            // Only a compaction cancels a watch with a response the client passes on.
            eprintln!(
                "watch was canceled (etcdserver: mvcc: required revision has been compacted)"
            );
        }
        if is_progress_notify(response) {
            let revision = response.header.as_ref().map_or(0, |h| h.revision);
            println!("progress notify: {revision}");
        }
        self.display(response, true)?;
        if !exec.is_empty() {
            for event in &response.events {
                run_exec(exec, response, event);
            }
        }
        Ok(())
    }

    /// A response in the output format. `events_listed`: the client made the response's
    /// event list (empty, not nil, in JSON) rather than its own closing response.
    fn display(&self, response: &WatchResponse, events_listed: bool) -> Result<(), CliError> {
        let out = self.out;
        match out.format {
            Format::Simple => {
                for event in &response.events {
                    println!("{}", event_type(event));
                    if let Some(prev) = &event.prev_kv {
                        print::simple_kv(prev, out.hex, false);
                    }
                    print::simple_kv(&event.kv.clone().unwrap_or_default(), out.hex, false);
                }
            }
            Format::Json => println!("{}", watch_json(response, events_listed)),
            Format::Fields => {
                let h = response.header.unwrap_or_default();
                println!("\"ClusterID\" : {}", h.cluster_id);
                println!("\"MemberID\" : {}", h.member_id);
                println!("\"Revision\" : {}", h.revision);
                println!("\"RaftTerm\" : {}", h.raft_term);
                for event in &response.events {
                    println!("\"Type\" : {}", event_type(event));
                    if let Some(prev) = &event.prev_kv {
                        print::fields_kv("Prev", prev);
                    }
                    print::fields_kv("", &event.kv.clone().unwrap_or_default());
                }
            }
            Format::Protobuf => print::protobuf(&WatchResponse {
                header: Some(response.header.unwrap_or_default()),
                events: response.events.clone(),
                compact_revision: response.compact_revision,
                canceled: response.canceled,
                created: false,
                ..Default::default()
            }),
            Format::Table => return Err(print::unsupported(out.format)),
        }
        let _ = std::io::stdout().flush();
        Ok(())
    }
}

/// etcd's client's test for a progress notification.
fn is_progress_notify(response: &WatchResponse) -> bool {
    response.events.is_empty()
        && !response.canceled
        && !response.created
        && response.compact_revision == 0
        && response.header.as_ref().is_some_and(|h| h.revision != 0)
}

/// "PUT" or "DELETE".
fn event_type(event: &Event) -> &'static str {
    match EventType::try_from(event.r#type) {
        Ok(EventType::Delete) => "DELETE",
        _ => "PUT",
    }
}

/// A watch response as etcdctl prints Go's client `WatchResponse` struct in JSON: its
/// fields by their Go names, the header always present, `Events` a list (`null` for the
/// client's own closing response), the event type a number left out for PUT.
fn watch_json(response: &WatchResponse, events_listed: bool) -> String {
    let header = print::header_json(&response.header).unwrap_or_else(|| "{}".to_string());
    let events = if response.events.is_empty() {
        if events_listed { "[]" } else { "null" }.to_string()
    } else {
        let items: Vec<String> = response
            .events
            .iter()
            .map(|event| {
                JsonObject::new()
                    .i64("type", i64::from(event.r#type))
                    .raw("kv", event.kv.as_ref().map(print::kv_json))
                    .raw("prev_kv", event.prev_kv.as_ref().map(print::kv_json))
                    .finish()
            })
            .collect();
        format!("[{}]", items.join(","))
    };
    JsonObject::new()
        .raw("Header", Some(header))
        .raw("Events", Some(events))
        .i64_always("CompactRevision", response.compact_revision)
        .bool_always("Canceled", response.canceled)
        .bool_always("Created", response.created)
        .finish()
}

/// Runs the watch's command for one event with `ETCD_WATCH_*` describing it (values in Go's
/// `%q`), its output going where keelctl's goes. A command that fails ends keelctl with
/// status 1, as etcdctl ends.
fn run_exec(exec: &[String], response: &WatchResponse, event: &Event) {
    let _ = std::io::stdout().flush();
    let kv = event.kv.clone().unwrap_or_default();
    let revision = response.header.as_ref().map_or(0, |h| h.revision);
    let status = std::process::Command::new(&exec[0])
        .args(&exec[1..])
        .env("ETCD_WATCH_REVISION", revision.to_string())
        .env(
            "ETCD_WATCH_EVENT_TYPE",
            format!("\"{}\"", event_type(event)),
        )
        .env("ETCD_WATCH_KEY", quote(&kv.key))
        .env("ETCD_WATCH_VALUE", quote(&kv.value))
        .status();
    let error = match status {
        Ok(status) if status.success() => return,
        Ok(status) => exit_status_text(status),
        Err(e) => spawn_error_text(&exec[0], &e),
    };
    let words: Vec<String> = exec.iter().map(|a| quote(a.as_bytes())).collect();
    eprintln!("command [{}] error ({error})", words.join(" "));
    std::process::exit(1);
}

/// Go's text for a command that ran and failed (`exit status 3`, `signal: killed`).
fn exit_status_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    let signal = status.signal().unwrap_or(0);
    let name = match signal {
        libc::SIGHUP => "hangup",
        libc::SIGINT => "interrupt",
        libc::SIGQUIT => "quit",
        libc::SIGABRT => "aborted",
        libc::SIGKILL => "killed",
        libc::SIGSEGV => "segmentation fault",
        libc::SIGPIPE => "broken pipe",
        libc::SIGTERM => "terminated",
        _ => return format!("signal {signal}"),
    };
    format!("signal: {name}")
}

/// Go's text for a command that could not start.
fn spawn_error_text(program: &str, error: &std::io::Error) -> String {
    let reason = match error.kind() {
        std::io::ErrorKind::NotFound if !program.contains('/') => {
            return format!(
                "exec: {}: executable file not found in $PATH",
                quote(program.as_bytes())
            )
        }
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => error.to_string(),
    };
    format!("fork/exec {program}: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn no_env() -> Env {
        Env {
            key: String::new(),
            range_end: String::new(),
        }
    }

    #[test]
    fn command_lines_split_as_etcdctl_splits_them() {
        let env = no_env();
        assert_eq!(
            plan_command_line(
                &strings(&["foo", "--", "echo", "hi"]),
                strings(&["foo", "echo", "hi"]),
                &env
            ),
            Ok((strings(&["foo"]), strings(&["echo", "hi"])))
        );
        assert_eq!(
            plan_command_line(&strings(&["foo", "--"]), strings(&["foo"]), &env),
            Err(BAD_ARGS_SEPARATOR.to_string())
        );
        assert_eq!(
            plan_command_line(&[], vec![], &env),
            Err(BAD_ARGS_NUM.to_string())
        );
        let env = Env {
            key: "k".into(),
            range_end: "z".into(),
        };
        assert_eq!(
            plan_command_line(&strings(&["--", "echo"]), strings(&["echo"]), &env),
            Ok((strings(&["k", "z"]), strings(&["echo"])))
        );
        assert_eq!(
            plan_command_line(
                &strings(&["foo", "--", "echo"]),
                strings(&["foo", "echo"]),
                &env
            ),
            Err(BAD_ARGS_CONFLICT_ENV.to_string())
        );
        assert_eq!(
            plan_command_line(&strings(&["foo"]), strings(&["foo"]), &env),
            Err(BAD_ARGS_CONFLICT_ENV.to_string())
        );
    }

    #[test]
    fn interactive_lines_parse_flags_as_pflag() {
        let env = no_env();
        let (args, exec, flags) = plan_line(
            &strings(&["a", "--rev", "3", "--prefix", "--", "echo", "x"]),
            &env,
            true,
        )
        .unwrap();
        assert_eq!((args, exec), (strings(&["a"]), strings(&["echo", "x"])));
        assert_eq!(
            flags,
            Flags {
                prefix: true,
                rev: 3,
                prev_kv: false,
                progress_notify: true
            }
        );
        assert_eq!(
            plan_line(&strings(&["--bogus"]), &env, false),
            Err("unknown flag: --bogus".to_string())
        );
        assert_eq!(
            plan_line(&strings(&["a", "--rev"]), &env, false),
            Err("flag needs an argument: --rev".to_string())
        );
        assert_eq!(
            plan_line(&strings(&["a", "--rev=x"]), &env, false),
            Err(
                "invalid argument \"x\" for \"--rev\" flag: strconv.ParseInt: parsing \"x\": \
                 invalid syntax"
                    .to_string()
            )
        );
        assert_eq!(
            plan_line(&strings(&["--prefix"]), &env, false),
            Err(BAD_ARGS_NUM.to_string())
        );
    }

    #[test]
    fn json_is_gos_encoding_of_the_clients_struct() {
        let response = WatchResponse {
            canceled: true,
            ..Default::default()
        };
        assert_eq!(
            watch_json(&response, false),
            r#"{"Header":{},"Events":null,"CompactRevision":0,"Canceled":true,"Created":false}"#
        );
        let response = WatchResponse {
            events: vec![Event {
                r#type: EventType::Delete as i32,
                kv: Some(keel_proto::mvccpb::KeyValue {
                    key: b"w".to_vec(),
                    mod_revision: 15,
                    ..Default::default()
                }),
                prev_kv: None,
            }],
            ..Default::default()
        };
        assert_eq!(
            watch_json(&response, true),
            r#"{"Header":{},"Events":[{"type":1,"kv":{"key":"dw==","mod_revision":15}}],"CompactRevision":0,"Canceled":false,"Created":false}"#
        );
    }
}
