//! `--discovery-srv`: the cluster's client endpoints from DNS SRV records, as etcd's
//! `srv.GetClient` finds them: `_etcd-client-ssl._tcp.<domain>` gives `https://` endpoints,
//! `_etcd-client._tcp.<domain>` `http://` ones (with `-<name>` after `etcd-client` when
//! `--discovery-srv-name` is set). The query is a plain DNS query over UDP to the name
//! servers of /etc/resolv.conf, as Go's own resolver sends it.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// Where the name servers are listed.
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// How long one name server may take to answer one query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// The DNS record type of SRV records.
const TYPE_SRV: u16 = 33;
/// The largest UDP answer read.
const ANSWER_BYTES_MAX: usize = 4096;

/// One SRV record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Srv {
    /// The target host, with its trailing dot, as Go returns it.
    pub target: String,
    /// The port.
    pub port: u16,
    /// The priority (lower first).
    pub priority: u16,
    /// The weight among equal priorities.
    pub weight: u16,
}

/// etcd's `GetSRVService`: the service label for `scheme`.
fn service(service_name: &str, scheme: &str) -> String {
    let mut service = "etcd-client".to_string();
    if scheme == "https" {
        service.push_str("-ssl");
    }
    if !service_name.is_empty() {
        service.push('-');
        service.push_str(service_name);
    }
    service
}

/// The client endpoints of `domain`: the https ones first, then the http ones. Fails, with
/// both lookups' errors in etcd's words, only when both lookups fail.
pub fn client_endpoints(domain: &str, service_name: &str) -> Result<Vec<String>, String> {
    let servers = name_servers();
    let mut endpoints = Vec::new();
    let mut errors = Vec::new();
    for scheme in ["https", "http"] {
        let name = format!("_{}._tcp.{domain}", service(service_name, scheme));
        match lookup_srv(&name, &servers) {
            Ok(records) => endpoints.extend(
                records
                    .into_iter()
                    .map(|r| format!("{scheme}://{}", join_host_port(&r.target, r.port))),
            ),
            Err(e) => errors.push(e),
        }
    }
    if errors.len() == 2 {
        return Err(format!(
            "dns lookup errors: {} and {}",
            errors[0], errors[1]
        ));
    }
    Ok(endpoints)
}

/// Go's `net.JoinHostPort`.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The name servers of /etc/resolv.conf (Go's default, 127.0.0.1 and ::1, when none).
fn name_servers() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string(RESOLV_CONF).unwrap_or_default();
    let mut servers: Vec<SocketAddr> = text
        .lines()
        .filter_map(|line| line.strip_prefix("nameserver"))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|ip| ip.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if servers.is_empty() {
        servers = vec![
            SocketAddr::from(([127, 0, 0, 1], 53)),
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 53)),
        ];
    }
    servers
}

/// The SRV records of `name`, sorted by priority (then by weight, heaviest first), or the
/// error in Go's words (`lookup <name> on <server>: no such host`).
fn lookup_srv(name: &str, servers: &[SocketAddr]) -> Result<Vec<Srv>, String> {
    let query = query(name, std::process::id() as u16);
    let mut last = format!("lookup {name}: no name servers");
    for server in servers {
        let fail = |what: &str| format!("lookup {name} on {server}: {what}");
        let bind: SocketAddr = if server.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
        };
        let socket = match UdpSocket::bind(bind) {
            Ok(socket) => socket,
            Err(e) => {
                last = fail(&e.to_string());
                continue;
            }
        };
        let _ = socket.set_read_timeout(Some(QUERY_TIMEOUT));
        if let Err(e) = socket.send_to(&query, server) {
            last = fail(&e.to_string());
            continue;
        }
        let mut buffer = vec![0u8; ANSWER_BYTES_MAX];
        let answer = match socket.recv(&mut buffer) {
            Ok(n) => &buffer[..n],
            Err(_) => {
                last = fail("i/o timeout");
                continue;
            }
        };
        match parse_answer(answer, &query[..2]) {
            Ok(Answer::Records(mut records)) => {
                if records.is_empty() {
                    return Err(fail("no such host"));
                }
                records.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
                return Ok(records);
            }
            Ok(Answer::NoSuchHost) => return Err(fail("no such host")),
            Ok(Answer::ServerFailure) | Err(()) => last = fail("server misbehaving"),
        }
    }
    Err(last)
}

/// A DNS query for the SRV records of `name`, recursion desired.
fn query(name: &str, id: u16) -> Vec<u8> {
    let mut message = Vec::with_capacity(name.len() + 18);
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        let label = &label.as_bytes()[..label.len().min(63)];
        message.push(label.len() as u8);
        message.extend_from_slice(label);
    }
    message.push(0);
    message.extend_from_slice(&TYPE_SRV.to_be_bytes());
    message.extend_from_slice(&1u16.to_be_bytes());
    message
}

enum Answer {
    Records(Vec<Srv>),
    NoSuchHost,
    ServerFailure,
}

/// The SRV records of a DNS answer whose id is `id`.
fn parse_answer(message: &[u8], id: &[u8]) -> Result<Answer, ()> {
    let header = message.get(..12).ok_or(())?;
    if &header[..2] != id || header[2] & 0x80 == 0 {
        return Err(());
    }
    match header[3] & 0x0f {
        0 => {}
        3 => return Ok(Answer::NoSuchHost),
        _ => return Ok(Answer::ServerFailure),
    }
    let questions = u16::from_be_bytes([header[4], header[5]]);
    let answers = u16::from_be_bytes([header[6], header[7]]);
    let mut at = 12;
    for _ in 0..questions {
        read_name(message, &mut at)?;
        at += 4;
    }
    let mut records = Vec::new();
    for _ in 0..answers {
        read_name(message, &mut at)?;
        let fixed = message.get(at..at + 10).ok_or(())?;
        let kind = u16::from_be_bytes([fixed[0], fixed[1]]);
        let length = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        at += 10;
        let data_end = at + length;
        if data_end > message.len() {
            return Err(());
        }
        if kind == TYPE_SRV {
            let data = message.get(at..at + 6).ok_or(())?;
            let mut target_at = at + 6;
            let target = read_name(message, &mut target_at)?;
            records.push(Srv {
                priority: u16::from_be_bytes([data[0], data[1]]),
                weight: u16::from_be_bytes([data[2], data[3]]),
                port: u16::from_be_bytes([data[4], data[5]]),
                target,
            });
        }
        at = data_end;
    }
    Ok(Answer::Records(records))
}

/// A (possibly compressed) domain name at `*at`, with a trailing dot; `*at` moves past it.
fn read_name(message: &[u8], at: &mut usize) -> Result<String, ()> {
    let mut name = String::new();
    let mut position = *at;
    let mut jumped = false;
    // Each pointer must go backwards, which bounds the loop.
    let mut limit = position;
    loop {
        let length = *message.get(position).ok_or(())?;
        if length & 0xc0 == 0xc0 {
            let low = *message.get(position + 1).ok_or(())?;
            let target = usize::from(u16::from_be_bytes([length & 0x3f, low]));
            if target >= limit {
                return Err(());
            }
            if !jumped {
                *at = position + 2;
                jumped = true;
            }
            limit = target;
            position = target;
            continue;
        }
        if length == 0 {
            if !jumped {
                *at = position + 1;
            }
            break;
        }
        let label = message
            .get(position + 1..position + 1 + usize::from(length))
            .ok_or(())?;
        name.push_str(&String::from_utf8_lossy(label));
        name.push('.');
        position += 1 + usize::from(length);
    }
    if name.is_empty() {
        name.push('.');
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srv_answers_parse_with_compressed_names() {
        let id = [0x12, 0x34];
        let mut message = query("_etcd-client._tcp.example.com", 0x1234);
        message[2] = 0x81;
        message[3] = 0x80;
        message[7] = 2;
        for (priority, port, target) in [(10u16, 2379u16, "b"), (0, 2380, "a")] {
            // The answer's name points at the question's name (offset 12).
            message.extend_from_slice(&[0xc0, 12]);
            message.extend_from_slice(&TYPE_SRV.to_be_bytes());
            message.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            let mut data = Vec::new();
            data.extend_from_slice(&priority.to_be_bytes());
            data.extend_from_slice(&5u16.to_be_bytes());
            data.extend_from_slice(&port.to_be_bytes());
            data.push(1);
            data.extend_from_slice(target.as_bytes());
            // "example.com" of the question: after "_etcd-client" (13) and "_tcp" (5).
            data.extend_from_slice(&[0xc0, 12 + 13 + 5]);
            message.extend_from_slice(&(data.len() as u16).to_be_bytes());
            message.extend_from_slice(&data);
        }
        let Ok(Answer::Records(records)) = parse_answer(&message, &id) else {
            panic!("the answer does not parse");
        };
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].target, "b.example.com.");
        assert_eq!(records[1].port, 2380);
        assert_eq!(records[1].priority, 0);
        assert_eq!(service("", "https"), "etcd-client-ssl");
        assert_eq!(service("prod", "http"), "etcd-client-prod");
    }
}
