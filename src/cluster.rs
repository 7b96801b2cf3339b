//! etcd's cluster identity: `--initial-cluster`, member and cluster ids, and the checks etcd
//! runs before it bootstraps a new cluster.
//!
//! Everything here follows etcd 3.4 so that the same flags give the same ids and the same error
//! texts as upstream etcd (and `tests/cluster_ids.rs` checks the ids against a real etcd):
//!
//! * [`parse_initial_cluster`] reads `--initial-cluster` as etcd's `types.NewURLsMap` does
//!   (`pkg/types/urlsmap.go`): `name=url` pairs separated by commas, a name may repeat and its
//!   URLs are collected.
//! * [`normalize_urls`] is etcd's `types.NewURLs` (`pkg/types/urls.go`): each URL is trimmed,
//!   parsed the way Go's `net/url` parses it, checked (scheme, `host:port`, no path) and
//!   rewritten in Go's `url.URL.String()` form; the list comes back sorted. Ids are hashed from
//!   these normalized strings, so `HTTP://127.0.0.1:2380` and `http://127.0.0.1:2380` give the
//!   same member id, as they do in etcd.
//! * [`member_id`] and [`cluster_id`] are etcd's sha1 derivations
//!   (`etcdserver/api/membership/member.go` `newMember`, `cluster.go` `genID`).
//! * [`validate_bootstrap`] is `ServerConfig.VerifyBootstrap` (`etcdserver/config.go`): this
//!   member is named in the cluster, its `--initial-advertise-peer-urls` match its entry, and no
//!   URL appears twice.
//! * [`bootstrap_members`] is `membership.NewClusterFromURLsMap`: the members and the cluster id
//!   of a new cluster.
//!
//! Data flow at a new cluster's first start: flags → [`parse_initial_cluster`] →
//! [`validate_bootstrap`] → [`bootstrap_members`] → ids stored in the data dir.
//!
//! Where etcd iterates a Go map (names in `--initial-cluster`, URLs in a "missing" list), the
//! order it reports things in varies from run to run; here it is deterministic: names in order
//! of first appearance, URL lists sorted.

use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, ToSocketAddrs};

use sha1::{Digest, Sha1};

/// The context etcd puts before a [`parse_initial_cluster`] error when it refuses to start
/// (`embed/etcd.go`: `error setting up initial cluster: %v`).
pub const INITIAL_CLUSTER_ERROR_CONTEXT: &str = "error setting up initial cluster";

/// The URL schemes etcd accepts for peer and client URLs (`types.NewURLs`).
const URL_SCHEMES: [&str; 4] = ["http", "https", "unix", "unixs"];

/// Why a cluster configuration was refused. Each message is etcd 3.4's text, byte for byte;
/// the comment on each variant names the etcd function that produces it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// Go's `url.Parse` refused a URL; etcd passes its `*url.Error` through unchanged.
    #[error("parse {}: {reason}", go_quote(.url))]
    UrlParse {
        /// The URL text (without its `#fragment` unless the fragment was at fault).
        url: String,
        /// Go's reason, such as `invalid port ":x" after host`.
        reason: String,
    },
    /// `types.NewURLs`: the scheme is not one etcd serves.
    #[error("URL scheme must be http, https, unix, or unixs: {url}")]
    UrlScheme {
        /// The URL as given (trimmed).
        url: String,
    },
    /// `types.NewURLs`: `net.SplitHostPort` refused the URL's host.
    #[error("URL address does not have the form \"host:port\": {url}")]
    UrlNotHostPort {
        /// The URL as given (trimmed).
        url: String,
    },
    /// `types.NewURLs`: the URL has a path (a trailing `/` counts).
    #[error("URL must not contain a path: {url}")]
    UrlHasPath {
        /// The URL as given (trimmed).
        url: String,
    },
    /// `types.NewURLs` with an empty list.
    #[error("no valid URLs given")]
    NoUrls,
    /// `ServerConfig.hasLocalMember`: `--name` is not in `--initial-cluster`.
    #[error(
        "couldn't find local name {} in the initial cluster configuration",
        go_quote(.name)
    )]
    LocalNameMissing {
        /// The `--name` value.
        name: String,
    },
    /// `ServerConfig.advertiseMatchesCluster`: this member's `--initial-cluster` entry has URLs
    /// that `--initial-advertise-peer-urls` lacks.
    #[error(
        "--initial-cluster has {missing} but missing from \
         --initial-advertise-peer-urls={advertised} ({detail})"
    )]
    ClusterUrlNotAdvertised {
        /// `name=url` pairs, comma-separated.
        missing: String,
        /// The advertised peer URLs, sorted and comma-separated.
        advertised: String,
        /// Why the URL lists differ (etcd's `netutil.URLStringsEqual` error).
        detail: String,
    },
    /// `ServerConfig.advertiseMatchesCluster`: `--initial-advertise-peer-urls` has URLs that
    /// this member's `--initial-cluster` entry lacks.
    #[error(
        "--initial-advertise-peer-urls has {missing} but missing from \
         --initial-cluster={advertised_as_cluster}"
    )]
    AdvertisedUrlNotInCluster {
        /// The URLs, comma-separated.
        missing: String,
        /// etcd prints the *advertised* URLs here, as `name=url` pairs (its own quirk).
        advertised_as_cluster: String,
    },
    /// `ServerConfig.advertiseMatchesCluster`: both lists hold the same URLs, yet they are not
    /// equal (one lists a URL twice, or resolving host names gave different addresses).
    #[error(
        "failed to resolve {advertised} to match --initial-cluster={advertised_as_cluster} \
         ({detail})"
    )]
    AdvertisedUrlsUnmatched {
        /// The advertised peer URLs, sorted and comma-separated.
        advertised: String,
        /// The advertised URLs as `name=url` pairs, as etcd prints them.
        advertised_as_cluster: String,
        /// Why the URL lists differ (etcd's `netutil.URLStringsEqual` error).
        detail: String,
    },
    /// `ServerConfig.VerifyBootstrap`: a URL appears twice in `--initial-cluster`.
    #[error("initial cluster {initial_cluster} has duplicate url")]
    DuplicateUrl {
        /// The whole cluster as sorted `name=url` pairs (`types.URLsMap.String`).
        initial_cluster: String,
    },
    /// `membership.NewClusterFromURLsMap`: two members hash to the same id. After
    /// [`validate_bootstrap`] (no duplicate URLs) this takes a sha1 collision.
    #[error("member exists with identical ID {member}")]
    IdenticalMemberId {
        /// The member as Go's `%v` prints a `*Member`.
        member: String,
    },
    /// `membership.NewClusterFromURLsMap`: a member hashed to raft's "no node" id 0.
    #[error("cannot use 0 as member id")]
    ZeroMemberId,
    /// `etcdserver.NewServer` (`isMemberBootstrapped`): a peer already knows this member as
    /// started. Not produced in this module: the server raises it after asking the peers.
    #[error("member {id:x} has already been bootstrapped")]
    AlreadyBootstrapped {
        /// This member's id.
        id: u64,
    },
    /// `membership.ValidateClusterAndAssignIDs`: when joining an existing cluster, the remote
    /// cluster has a different number of members than `--initial-cluster`. Not produced in
    /// this module: the server raises it after fetching the remote member list.
    #[error("member count is unequal")]
    MemberCountUnequal,
}

/// One cluster member, as etcd's `membership.Member` holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The member id ([`member_id`]).
    pub id: u64,
    /// The `--name` (empty until a member added at runtime has started).
    pub name: String,
    /// Normalized peer URLs, sorted.
    pub peer_urls: Vec<String>,
    /// Client URLs, published by the member itself once it runs; empty at bootstrap.
    pub client_urls: Vec<String>,
    /// Whether the member is a raft learner (never at bootstrap).
    pub is_learner: bool,
}

/// Parses `--initial-cluster` as etcd's `types.NewURLsMap` does: items are separated by `,`,
/// empty items are skipped, each item splits at its first `=` into a name (not trimmed; an
/// item without `=` is a name with an empty URL) and a URL. A name may appear several times;
/// its URLs are collected, normalized and sorted ([`normalize_urls`]). Names come back in order
/// of first appearance. An empty text gives an empty list.
///
/// etcd reports these errors after [`INITIAL_CLUSTER_ERROR_CONTEXT`] and `": "`.
pub fn parse_initial_cluster(text: &str) -> Result<Vec<(String, Vec<String>)>, ClusterError> {
    let mut raw: Vec<(String, Vec<String>)> = Vec::new();
    for item in text.split(',').filter(|item| !item.is_empty()) {
        let (name, url) = item.split_once('=').unwrap_or((item, ""));
        push_url(&mut raw, name, url.to_string());
    }
    raw.into_iter()
        .map(|(name, urls)| Ok((name, normalize_urls(&urls)?)))
        .collect()
}

/// etcd's `types.NewURLs`: trims each URL, parses it as Go's `url.Parse` does, requires an
/// `http`, `https`, `unix` or `unixs` scheme, a `host:port` and no path, and returns Go's
/// `url.URL.String()` of each (scheme lowercased, escapes normalized), sorted.
pub fn normalize_urls(urls: &[String]) -> Result<Vec<String>, ClusterError> {
    Ok(parse_urls(urls)?.iter().map(GoUrl::to_go_string).collect())
}

/// etcd's member id (`membership.newMember`): the normalized peer URLs, sorted and
/// concatenated with nothing between them, then the cluster token, then — for a member added
/// at runtime (`MemberAdd`), not at bootstrap — the Unix time in decimal seconds; the first 8
/// bytes of the sha1 of that, big-endian.
///
/// Each URL is normalized as [`normalize_urls`] does; a URL etcd would refuse is hashed as
/// given.
pub fn member_id(peer_urls: &[String], cluster_token: &str, now_unix_seconds: Option<i64>) -> u64 {
    let mut urls: Vec<String> = peer_urls
        .iter()
        .map(|url| {
            normalize_urls(std::slice::from_ref(url))
                .ok()
                .and_then(|mut one| one.pop())
                .unwrap_or_else(|| url.clone())
        })
        .collect();
    urls.sort();
    let mut hasher = Sha1::new();
    for url in &urls {
        hasher.update(url.as_bytes());
    }
    hasher.update(cluster_token.as_bytes());
    if let Some(seconds) = now_unix_seconds {
        hasher.update(seconds.to_string().as_bytes());
    }
    first_8_bytes_big_endian(&hasher.finalize())
}

/// etcd's cluster id (`RaftCluster.genID`): the member ids sorted, each as 8 big-endian bytes,
/// the first 8 bytes of the sha1 of that, big-endian.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut hasher = Sha1::new();
    for id in ids {
        hasher.update(id.to_be_bytes());
    }
    first_8_bytes_big_endian(&hasher.finalize())
}

fn first_8_bytes_big_endian(digest: &[u8]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The members and the cluster id of a new cluster (`membership.NewClusterFromURLsMap`): one
/// member per name, its id from its peer URLs and `token` ([`member_id`] without a time), no
/// client URLs, no learners. Members come back sorted by id, as etcd lists them. Entries that
/// repeat a name are merged, and URLs are normalized, so the raw or the parsed
/// `--initial-cluster` may be passed.
///
/// Returns a `Result` because etcd refuses two members with one id and the id 0; neither
/// happens without a sha1 collision once [`validate_bootstrap`] has passed.
pub fn bootstrap_members(
    initial_cluster: &[(String, Vec<String>)],
    token: &str,
) -> Result<(u64, Vec<Member>), ClusterError> {
    let mut members: Vec<Member> = Vec::with_capacity(initial_cluster.len());
    for (name, urls) in merge_names(initial_cluster) {
        let peer_urls = normalize_urls(&urls)?;
        let member = Member {
            id: member_id(&peer_urls, token, None),
            name,
            peer_urls,
            client_urls: Vec::new(),
            is_learner: false,
        };
        if members.iter().any(|m| m.id == member.id) {
            return Err(ClusterError::IdenticalMemberId {
                member: go_format_member(&member),
            });
        }
        if member.id == 0 {
            return Err(ClusterError::ZeroMemberId);
        }
        members.push(member);
    }
    members.sort_by_key(|m| m.id);
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    debug_assert!(ids.windows(2).all(|w| w[0] < w[1]), "member ids are unique");
    Ok((cluster_id(&ids), members))
}

/// etcd's `ServerConfig.VerifyBootstrap`, run before a member bootstraps a new cluster:
///
/// 1. `name` must be in `initial_cluster` ([`ClusterError::LocalNameMissing`]);
/// 2. `advertise_peer_urls` must equal `name`'s URLs in `initial_cluster`, compared after
///    normalizing and sorting; like etcd, when the texts differ, host names other than
///    `localhost` are resolved (one attempt, first address) and the addresses compared;
/// 3. no URL may appear twice in `initial_cluster` ([`ClusterError::DuplicateUrl`]).
///
/// URLs are checked with [`normalize_urls`] first, the advertised ones before the cluster's
/// (etcd parses its flags before `--initial-cluster`).
pub fn validate_bootstrap(
    name: &str,
    advertise_peer_urls: &[String],
    initial_cluster: &[(String, Vec<String>)],
) -> Result<(), ClusterError> {
    let advertised = parse_urls(advertise_peer_urls)?;
    let cluster: Vec<(String, Vec<GoUrl>)> = merge_names(initial_cluster)
        .into_iter()
        .map(|(name, urls)| Ok((name, parse_urls(&urls)?)))
        .collect::<Result<_, ClusterError>>()?;
    let Some((_, local)) = cluster.iter().find(|(n, _)| n == name) else {
        return Err(ClusterError::LocalNameMissing {
            name: name.to_string(),
        });
    };
    advertise_matches_cluster(name, &advertised, local)?;
    let mut seen = HashSet::new();
    let strings: Vec<(String, Vec<String>)> = cluster
        .iter()
        .map(|(n, urls)| (n.clone(), urls.iter().map(GoUrl::to_go_string).collect()))
        .collect();
    if !strings
        .iter()
        .flat_map(|(_, urls)| urls)
        .all(|url| seen.insert(url))
    {
        return Err(ClusterError::DuplicateUrl {
            initial_cluster: urls_map_string(&strings),
        });
    }
    Ok(())
}

/// `ServerConfig.advertiseMatchesCluster`.
fn advertise_matches_cluster(
    name: &str,
    advertised: &[GoUrl],
    local: &[GoUrl],
) -> Result<(), ClusterError> {
    let detail = match urls_equal(advertised, local) {
        Ok(()) => return Ok(()),
        Err(detail) => detail,
    };
    let advertised_strings: Vec<String> = advertised.iter().map(GoUrl::to_go_string).collect();
    let local_strings: Vec<String> = local.iter().map(GoUrl::to_go_string).collect();
    let advertised_set: BTreeSet<&String> = advertised_strings.iter().collect();
    let local_set: BTreeSet<&String> = local_strings.iter().collect();
    let advertised_as_cluster = urls_map_string(&[(name.to_string(), advertised_strings.clone())]);

    let not_advertised: Vec<String> = local_set
        .difference(&advertised_set)
        .map(|url| format!("{name}={url}"))
        .collect();
    if !not_advertised.is_empty() {
        return Err(ClusterError::ClusterUrlNotAdvertised {
            missing: not_advertised.join(","),
            advertised: advertised_strings.join(","),
            detail,
        });
    }
    let not_in_cluster: Vec<&str> = advertised_set
        .difference(&local_set)
        .map(|url| url.as_str())
        .collect();
    if !not_in_cluster.is_empty() {
        return Err(ClusterError::AdvertisedUrlNotInCluster {
            missing: not_in_cluster.join(","),
            advertised_as_cluster,
        });
    }
    Err(ClusterError::AdvertisedUrlsUnmatched {
        advertised: advertised_strings.join(","),
        advertised_as_cluster,
        detail,
    })
}

/// etcd's `netutil.URLStringsEqual`; the error is its text.
fn urls_equal(a: &[GoUrl], b: &[GoUrl]) -> Result<(), String> {
    let strings = |urls: &[GoUrl]| -> Vec<String> {
        let mut out: Vec<String> = urls.iter().map(GoUrl::to_go_string).collect();
        out.sort();
        out
    };
    let (a_strings, b_strings) = (strings(a), strings(b));
    if a.len() != b.len() {
        return Err(format!(
            "len({}) != len({})",
            go_quote_list(&a_strings),
            go_quote_list(&b_strings)
        ));
    }
    if a_strings == b_strings {
        return Ok(());
    }
    let resolve_all = |urls: &[GoUrl]| -> Result<Vec<String>, String> {
        let mut out = urls
            .iter()
            .map(resolve_url)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort();
        Ok(out)
    };
    let (a_resolved, b_resolved) = (resolve_all(a)?, resolve_all(b)?);
    for (x, y) in a_resolved.iter().zip(&b_resolved) {
        if x != y {
            return Err(format!("resolved urls: {} != {}", go_quote(x), go_quote(y)));
        }
    }
    Ok(())
}

/// etcd's `netutil.resolveURL`: unix sockets, `localhost` and IP literals stay as they are;
/// other host names are looked up and replaced by `ip:port`. etcd retries a failed lookup every
/// second for up to 30 s; this tries once, and the lookup error text is the OS resolver's, not
/// Go's.
fn resolve_url(url: &GoUrl) -> Result<String, String> {
    let text = url.to_go_string();
    if url.scheme == "unix" || url.scheme == "unixs" {
        return Ok(text);
    }
    let host_port = String::from_utf8_lossy(&url.host).into_owned();
    let Some((host, _)) = split_host_port(&host_port) else {
        return Err(format!(
            "failed to resolve {} (missing port in address)",
            go_quote(&text)
        ));
    };
    if host == "localhost" || host.parse::<IpAddr>().is_ok() {
        return Ok(text);
    }
    let address = host_port
        .to_socket_addrs()
        .and_then(|mut addresses| {
            addresses
                .next()
                .ok_or_else(|| std::io::Error::other("no addresses"))
        })
        .map_err(|e| format!("failed to resolve {} ({e})", go_quote(&text)))?;
    let mut resolved = url.clone();
    resolved.host = address.to_string().into_bytes();
    Ok(resolved.to_go_string())
}

/// `types.URLsMap.String`: `name=url` pairs, sorted, comma-separated.
fn urls_map_string(entries: &[(String, Vec<String>)]) -> String {
    let mut pairs: Vec<String> = entries
        .iter()
        .flat_map(|(name, urls)| urls.iter().map(move |url| format!("{name}={url}")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

fn push_url(entries: &mut Vec<(String, Vec<String>)>, name: &str, url: String) {
    match entries.iter_mut().find(|(n, _)| n == name) {
        Some((_, urls)) => urls.push(url),
        None => entries.push((name.to_string(), vec![url])),
    }
}

/// Entries with the same name merged (a Go map keyed by name), in order of first appearance.
fn merge_names(entries: &[(String, Vec<String>)]) -> Vec<(String, Vec<String>)> {
    let mut merged: Vec<(String, Vec<String>)> = Vec::with_capacity(entries.len());
    for (name, urls) in entries {
        for url in urls {
            push_url(&mut merged, name, url.clone());
        }
        if urls.is_empty() && !merged.iter().any(|(n, _)| n == name) {
            merged.push((name.clone(), Vec::new()));
        }
    }
    merged
}

/// Go's `%v` of a `*membership.Member`: `&{id {[peer urls] is_learner} {name [client urls]}}`,
/// the id in hex (`types.ID.String`).
fn go_format_member(member: &Member) -> String {
    format!(
        "&{{{:x} {{[{}] {}}} {{{} [{}]}}}}",
        member.id,
        member.peer_urls.join(" "),
        member.is_learner,
        member.name,
        member.client_urls.join(" ")
    )
}

/// `types.NewURLs`, keeping the parsed URLs; sorted by their string form.
fn parse_urls(urls: &[String]) -> Result<Vec<GoUrl>, ClusterError> {
    if urls.is_empty() {
        return Err(ClusterError::NoUrls);
    }
    let mut parsed = Vec::with_capacity(urls.len());
    for given in urls {
        let given = given.trim();
        let url = GoUrl::parse(given)?;
        if !URL_SCHEMES.contains(&url.scheme.as_str()) {
            return Err(ClusterError::UrlScheme {
                url: given.to_string(),
            });
        }
        if split_host_port(&String::from_utf8_lossy(&url.host)).is_none() {
            return Err(ClusterError::UrlNotHostPort {
                url: given.to_string(),
            });
        }
        if !url.path.is_empty() {
            return Err(ClusterError::UrlHasPath {
                url: given.to_string(),
            });
        }
        parsed.push(url);
    }
    parsed.sort_by_cached_key(GoUrl::to_go_string);
    Ok(parsed)
}

/// Go's `net.SplitHostPort`: `Some((host, port))` where Go returns no error.
fn split_host_port(host_port: &str) -> Option<(&str, &str)> {
    let last_colon = host_port.rfind(':')?;
    let (host, after_host) = if host_port.starts_with('[') {
        let close = host_port.find(']')?;
        if close + 1 != last_colon {
            return None;
        }
        (&host_port[1..close], close + 1)
    } else {
        let host = &host_port[..last_colon];
        if host.contains(':') {
            return None;
        }
        (host, 0)
    };
    let opening_allowed_from = if host_port.starts_with('[') { 1 } else { 0 };
    if host_port[opening_allowed_from..].contains('[') || host_port[after_host..].contains(']') {
        return None;
    }
    Some((host, &host_port[last_colon + 1..]))
}

/// The parts of a Go `url.URL` that peer URLs use, in Go's representation: the host, user and
/// fragment decoded (Go keeps them unescaped and escapes them again in `String`), the query raw.
#[derive(Clone, Debug)]
struct GoUrl {
    scheme: String,
    opaque: String,
    /// Username and, if set, password.
    user: Option<(Vec<u8>, Option<Vec<u8>>)>,
    host: Vec<u8>,
    path: Vec<u8>,
    force_query: bool,
    raw_query: String,
    fragment: Vec<u8>,
    /// The fragment as written, which Go prints again when it is a valid encoding.
    raw_fragment: String,
}

/// Go's `net/url` encoding modes that appear in peer URLs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Path,
    Host,
    Zone,
    UserPassword,
    Fragment,
}

impl GoUrl {
    /// Go's `url.Parse`.
    fn parse(raw: &str) -> Result<GoUrl, ClusterError> {
        let (before_fragment, fragment) = match raw.split_once('#') {
            Some((before, fragment)) => (before, fragment),
            None => (raw, ""),
        };
        let mut url = GoUrl::parse_without_fragment(before_fragment).map_err(|reason| {
            ClusterError::UrlParse {
                url: before_fragment.to_string(),
                reason,
            }
        })?;
        if !fragment.is_empty() {
            url.fragment =
                unescape(fragment, Mode::Fragment).map_err(|reason| ClusterError::UrlParse {
                    url: raw.to_string(),
                    reason,
                })?;
            url.raw_fragment = fragment.to_string();
        }
        Ok(url)
    }

    fn parse_without_fragment(raw: &str) -> Result<GoUrl, String> {
        if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err("net/url: invalid control character in URL".to_string());
        }
        let mut url = GoUrl {
            scheme: String::new(),
            opaque: String::new(),
            user: None,
            host: Vec::new(),
            path: Vec::new(),
            force_query: false,
            raw_query: String::new(),
            fragment: Vec::new(),
            raw_fragment: String::new(),
        };
        let (scheme, mut rest) = go_scheme(raw)?;
        url.scheme = scheme.to_ascii_lowercase();
        if rest.ends_with('?') && rest.matches('?').count() == 1 {
            url.force_query = true;
            rest = &rest[..rest.len() - 1];
        } else if let Some((before, query)) = rest.split_once('?') {
            rest = before;
            url.raw_query = query.to_string();
        }
        if !rest.starts_with('/') {
            if !url.scheme.is_empty() {
                url.opaque = rest.to_string();
                return Ok(url);
            }
            let first_segment = rest.split('/').next().unwrap_or("");
            if first_segment.contains(':') {
                return Err("first path segment in URL cannot contain colon".to_string());
            }
        }
        if (!url.scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
            let authority = &rest[2..];
            let (authority, after) = match authority.find('/') {
                Some(i) => (&authority[..i], &authority[i..]),
                None => (authority, ""),
            };
            rest = after;
            let (user, host) = parse_authority(authority)?;
            url.user = user;
            url.host = host;
        }
        url.path = unescape(rest, Mode::Path)?;
        Ok(url)
    }

    /// Go's `url.URL.String`.
    fn to_go_string(&self) -> String {
        let mut out = String::new();
        if !self.scheme.is_empty() {
            out.push_str(&self.scheme);
            out.push(':');
        }
        if !self.opaque.is_empty() {
            out.push_str(&self.opaque);
        } else {
            if !self.scheme.is_empty() || !self.host.is_empty() || self.user.is_some() {
                if !self.host.is_empty() || !self.path.is_empty() || self.user.is_some() {
                    out.push_str("//");
                }
                if let Some((username, password)) = &self.user {
                    out.push_str(&escape(username, Mode::UserPassword));
                    if let Some(password) = password {
                        out.push(':');
                        out.push_str(&escape(password, Mode::UserPassword));
                    }
                    out.push('@');
                }
                out.push_str(&escape(&self.host, Mode::Host));
            }
            let path = escape(&self.path, Mode::Path);
            if !path.is_empty() && !path.starts_with('/') && !self.host.is_empty() {
                out.push('/');
            }
            if out.is_empty() && path.split('/').next().unwrap_or("").contains(':') {
                out.push_str("./");
            }
            out.push_str(&path);
        }
        if self.force_query || !self.raw_query.is_empty() {
            out.push('?');
            out.push_str(&self.raw_query);
        }
        if !self.fragment.is_empty() {
            out.push('#');
            // Go's EscapedFragment: the fragment as written when that is a valid encoding.
            if valid_encoded(&self.raw_fragment, Mode::Fragment) {
                out.push_str(&self.raw_fragment);
            } else {
                out.push_str(&escape(&self.fragment, Mode::Fragment));
            }
        }
        out
    }
}

/// Go's `getScheme`: `(scheme, rest)`.
fn go_scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' => {
                if i == 0 {
                    return Ok(("", raw));
                }
            }
            b':' => {
                if i == 0 {
                    return Err("missing protocol scheme".to_string());
                }
                return Ok((&raw[..i], &raw[i + 1..]));
            }
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

type UserInfo = (Vec<u8>, Option<Vec<u8>>);

/// Go's `parseAuthority`: the user info and the decoded host.
fn parse_authority(authority: &str) -> Result<(Option<UserInfo>, Vec<u8>), String> {
    let at = authority.rfind('@');
    let host = parse_host(match at {
        Some(i) => &authority[i + 1..],
        None => authority,
    })?;
    let Some(at) = at else {
        return Ok((None, host));
    };
    let user_info = &authority[..at];
    if !user_info
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&b))
    {
        return Err("net/url: invalid userinfo".to_string());
    }
    let user = match user_info.split_once(':') {
        None => (unescape(user_info, Mode::UserPassword)?, None),
        Some((username, password)) => (
            unescape(username, Mode::UserPassword)?,
            Some(unescape(password, Mode::UserPassword)?),
        ),
    };
    Ok((Some(user), host))
}

/// Go's `parseHost`: validates the port and decodes the host.
fn parse_host(host: &str) -> Result<Vec<u8>, String> {
    let invalid_port =
        |colon_port: &str| format!("invalid port {} after host", go_quote(colon_port));
    if host.starts_with('[') {
        let close = host.rfind(']').ok_or("missing ']' in host")?;
        let colon_port = &host[close + 1..];
        if !valid_optional_port(colon_port) {
            return Err(invalid_port(colon_port));
        }
        if let Some(zone) = host[..close].find("%25") {
            let mut decoded = unescape(&host[..zone], Mode::Host)?;
            decoded.extend(unescape(&host[zone..close], Mode::Zone)?);
            decoded.extend(unescape(&host[close..], Mode::Host)?);
            return Ok(decoded);
        }
    } else if let Some(colon) = host.rfind(':') {
        let colon_port = &host[colon..];
        if !valid_optional_port(colon_port) {
            return Err(invalid_port(colon_port));
        }
    }
    unescape(host, Mode::Host)
}

/// Empty, or `:` followed by digits only.
fn valid_optional_port(colon_port: &str) -> bool {
    colon_port.is_empty()
        || colon_port
            .strip_prefix(':')
            .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Go's `shouldEscape` for the modes peer URLs use.
fn should_escape(c: u8, mode: Mode) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    if (mode == Mode::Host || mode == Mode::Zone) && b"!$&'()*+,;=:[]<>\"".contains(&c) {
        return false;
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => false,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => match mode {
            Mode::Path => c == b'?',
            Mode::UserPassword => matches!(c, b'@' | b'/' | b'?' | b':'),
            Mode::Fragment => false,
            Mode::Host | Mode::Zone => true,
        },
        b'!' | b'(' | b')' | b'*' if mode == Mode::Fragment => false,
        _ => true,
    }
}

/// Go's `unescape`; the error is Go's text.
fn unescape(text: &str, mode: Mode) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let escape_error = |part: &[u8]| format!("invalid URL escape {}", go_quote_bytes(part));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'%' {
            if i + 2 >= bytes.len()
                || !bytes[i + 1].is_ascii_hexdigit()
                || !bytes[i + 2].is_ascii_hexdigit()
            {
                return Err(escape_error(&bytes[i..(i + 3).min(bytes.len())]));
            }
            let escaped = &bytes[i..i + 3];
            let value = (hex_value(bytes[i + 1]) << 4) | hex_value(bytes[i + 2]);
            // Hosts may %-encode only non-ASCII bytes, except "%25" before an IPv6 zone.
            if mode == Mode::Host && hex_value(bytes[i + 1]) < 8 && escaped != b"%25" {
                return Err(escape_error(escaped));
            }
            if mode == Mode::Zone
                && escaped != b"%25"
                && value != b' '
                && should_escape(value, Mode::Host)
            {
                return Err(escape_error(escaped));
            }
            out.push(value);
            i += 3;
        } else {
            if (mode == Mode::Host || mode == Mode::Zone) && c < 0x80 && should_escape(c, mode) {
                return Err(format!(
                    "invalid character {} in host name",
                    go_quote_bytes(&[c])
                ));
            }
            out.push(c);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// Go's `escape`: `%XX` (upper-case hex) for every byte the mode must escape.
fn escape(bytes: &[u8], mode: Mode) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    for &c in bytes {
        if should_escape(c, mode) {
            out.push('%');
            out.push(char::from(HEX[usize::from(c >> 4)]));
            out.push(char::from(HEX[usize::from(c & 15)]));
        } else {
            out.push(char::from(c));
        }
    }
    out
}

/// Go's `validEncoded`.
fn valid_encoded(text: &str, mode: Mode) -> bool {
    text.bytes()
        .all(|c| b"!$&'()*+,;=:@[]%".contains(&c) || !should_escape(c, mode))
}

/// Go's `strconv.Quote` (what `%q` prints for a string).
fn go_quote(text: &str) -> String {
    go_quote_bytes(text.as_bytes())
}

/// Go's `strconv.Quote` of bytes that need not be UTF-8: invalid bytes print as `\xNN`.
fn go_quote_bytes(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{b}' => out.push_str("\\v"),
                // Go prints letters, marks, numbers, punctuation, symbols and the ASCII space;
                // this approximates its `unicode.IsPrint` with Rust's character classes.
                c if !c.is_control() && (c == ' ' || !c.is_whitespace()) => out.push(c),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push_str(&format!("\\U{:08x}", c as u32)),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out.push('"');
    out
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| go_quote(item)).collect();
    format!("[{}]", quoted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn cluster(text: &str) -> Vec<(String, Vec<String>)> {
        parse_initial_cluster(text).expect("valid --initial-cluster")
    }

    fn error_text(result: Result<impl std::fmt::Debug, ClusterError>) -> String {
        result.expect_err("an error").to_string()
    }

    /// The ids every etcd prints when started without flags: `--name default`,
    /// `--initial-advertise-peer-urls http://localhost:2380`, token `etcd-cluster`.
    #[test]
    fn default_single_member_ids_match_etcd() {
        let member = member_id(&strings(&["http://localhost:2380"]), "etcd-cluster", None);
        assert_eq!(member, 0x8e9e05c52164694d);
        assert_eq!(cluster_id(&[member]), 0xcdf818194e3a8c32);

        let (cluster, members) =
            bootstrap_members(&cluster("default=http://localhost:2380"), "etcd-cluster")
                .expect("bootstrap");
        assert_eq!(cluster, 0xcdf818194e3a8c32);
        assert_eq!(
            members,
            vec![Member {
                id: 0x8e9e05c52164694d,
                name: "default".to_string(),
                peer_urls: strings(&["http://localhost:2380"]),
                client_urls: Vec::new(),
                is_learner: false,
            }]
        );
    }

    /// Ids taken from etcd 3.4.23 started with `--initial-cluster-token probe-token` and
    /// `--initial-cluster m0=http://127.0.0.1:23801,m1=http://127.0.0.1:23812,
    /// m1=http://127.0.0.1:23811,m2=http://localhost:23821` (its peer `/members` endpoint).
    #[test]
    fn multi_member_ids_match_etcd() {
        let (cluster, members) = bootstrap_members(
            &cluster(
                "m0=http://127.0.0.1:23801,m1=http://127.0.0.1:23812,\
                 m1=http://127.0.0.1:23811,m2=http://localhost:23821",
            ),
            "probe-token",
        )
        .expect("bootstrap");
        assert_eq!(cluster, 0x7a3f2ea5f9c288e6);
        let ids: Vec<(u64, &str)> = members.iter().map(|m| (m.id, m.name.as_str())).collect();
        assert_eq!(
            ids,
            vec![
                (3503195760574141361, "m1"),
                (11155866476525543251, "m2"),
                (15924227028705766830, "m0"),
            ]
        );
        assert_eq!(
            members[0].peer_urls,
            strings(&["http://127.0.0.1:23811", "http://127.0.0.1:23812"])
        );
    }

    #[test]
    fn member_id_sorts_and_normalizes_urls() {
        let token = "t";
        let sorted = member_id(&strings(&["http://a:1", "http://b:2"]), token, None);
        let unsorted = member_id(&strings(&["http://b:2", "http://a:1"]), token, None);
        let untidy = member_id(&strings(&[" HTTP://b:2 ", "http://a:1"]), token, None);
        assert_eq!(sorted, unsorted);
        assert_eq!(sorted, untidy);
        // The concatenation has no separator: etcd hashes "http://a:1http://b:2t".
        let mut hasher = Sha1::new();
        hasher.update(b"http://a:1http://b:2t");
        assert_eq!(sorted, first_8_bytes_big_endian(&hasher.finalize()));
    }

    #[test]
    fn member_id_with_time_appends_decimal_seconds() {
        let urls = strings(&["http://127.0.0.1:2380"]);
        let mut hasher = Sha1::new();
        hasher.update(b"http://127.0.0.1:2380etcd-cluster1700000000");
        assert_eq!(
            member_id(&urls, "etcd-cluster", Some(1_700_000_000)),
            first_8_bytes_big_endian(&hasher.finalize())
        );
        assert_ne!(
            member_id(&urls, "etcd-cluster", Some(1_700_000_000)),
            member_id(&urls, "etcd-cluster", None)
        );
    }

    #[test]
    fn cluster_id_ignores_member_order() {
        let mut hasher = Sha1::new();
        hasher.update(1u64.to_be_bytes());
        hasher.update(2u64.to_be_bytes());
        let expected = first_8_bytes_big_endian(&hasher.finalize());
        assert_eq!(cluster_id(&[2, 1]), expected);
        assert_eq!(cluster_id(&[1, 2]), expected);
    }

    #[test]
    fn parse_collects_repeated_names_in_first_appearance_order() {
        assert_eq!(
            cluster("b=http://b:2,a=http://a2:1,,b=http://a:9,a=http://a1:1"),
            vec![
                ("b".to_string(), strings(&["http://a:9", "http://b:2"])),
                ("a".to_string(), strings(&["http://a1:1", "http://a2:1"])),
            ]
        );
        assert_eq!(cluster(""), Vec::new());
        assert_eq!(cluster(",,"), Vec::new());
    }

    #[test]
    fn parse_trims_urls_but_not_names() {
        assert_eq!(
            cluster("a= http://127.0.0.1:1 , b=http://127.0.0.1:2"),
            vec![
                ("a".to_string(), strings(&["http://127.0.0.1:1"])),
                (" b".to_string(), strings(&["http://127.0.0.1:2"])),
            ]
        );
        // The name ends at the first '='.
        assert_eq!(
            cluster("a=http://h:1?x=y"),
            vec![("a".to_string(), strings(&["http://h:1?x=y"]))]
        );
    }

    /// The normalized forms were read from etcd 3.4.23's own error messages, which print them
    /// (and list them in this order).
    #[test]
    fn urls_are_normalized_as_go_prints_them() {
        assert_eq!(
            normalize_urls(&strings(&[
                "HTTP://Us%65r:p@127.0.0.1:1?q#F%41%2f",
                "unix://h:1"
            ])),
            Ok(strings(&[
                "http://User:p@127.0.0.1:1?q#F%41%2f",
                "unix://h:1"
            ]))
        );
        assert_eq!(
            normalize_urls(&strings(&["http://ex%C3%A9.com:1", "http://é:2"])),
            Ok(strings(&["http://%C3%A9:2", "http://ex%C3%A9.com:1"]))
        );
        assert_eq!(
            normalize_urls(&strings(&[
                "https://[::1]:2380",
                "http://:2380",
                "http://h:"
            ])),
            Ok(strings(&[
                "http://:2380",
                "http://h:",
                "https://[::1]:2380"
            ]))
        );
        assert_eq!(normalize_urls(&[]), Err(ClusterError::NoUrls));
    }

    /// Each text was produced by etcd 3.4.23 with the same `--initial-cluster` (after its
    /// "error setting up initial cluster: " context).
    #[test]
    fn parse_errors_are_etcds() {
        let cases = [
            (
                "a=127.0.0.1:1",
                r#"parse "127.0.0.1:1": first path segment in URL cannot contain colon"#,
            ),
            (
                "a=localhost:1",
                "URL scheme must be http, https, unix, or unixs: localhost:1",
            ),
            (
                "a=http://127.0.0.1:x",
                r#"parse "http://127.0.0.1:x": invalid port ":x" after host"#,
            ),
            ("a", "URL scheme must be http, https, unix, or unixs: "),
            (
                "a=http://127.0.0.1:1/",
                "URL must not contain a path: http://127.0.0.1:1/",
            ),
            (
                "a=http://127.0.0.1:1,a=http://[::1:2",
                r#"parse "http://[::1:2": missing ']' in host"#,
            ),
            (
                "a=http://127.0.0.1:1,b=http://::1:2",
                r#"URL address does not have the form "host:port": http://::1:2"#,
            ),
            (
                "a=http://127.0.0.1:1,b=http://a%zz:2",
                r#"parse "http://a%zz:2": invalid URL escape "%zz""#,
            ),
            (
                "a=http://127.0.0.1:1,b=http://a b:2",
                r#"parse "http://a b:2": invalid character " " in host name"#,
            ),
            (
                "a=http://127.0.0.1",
                r#"URL address does not have the form "host:port": http://127.0.0.1"#,
            ),
            ("a=://h:1", r#"parse "://h:1": missing protocol scheme"#),
            (
                "a=http://h:1\u{1}",
                r#"parse "http://h:1\x01": net/url: invalid control character in URL"#,
            ),
            (
                "a=ftp://h:1",
                "URL scheme must be http, https, unix, or unixs: ftp://h:1",
            ),
            (
                "a=http://127.0.0.1:1,b=http://h:1#%zz",
                r#"parse "http://h:1#%zz": invalid URL escape "%zz""#,
            ),
            (
                "a=http://127.0.0.1:1,b=http://a{b@h:1",
                r#"parse "http://a{b@h:1": net/url: invalid userinfo"#,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(error_text(parse_initial_cluster(text)), expected, "{text}");
        }
    }

    /// Each text was produced by etcd 3.4.23 with the same `--name`,
    /// `--initial-advertise-peer-urls` and `--initial-cluster`.
    #[test]
    fn bootstrap_errors_are_etcds() {
        let cases = [
            (
                "b",
                "http://127.0.0.1:1",
                "a=http://127.0.0.1:1",
                r#"couldn't find local name "b" in the initial cluster configuration"#,
            ),
            (
                "a\"x",
                "http://127.0.0.1:1",
                "a=http://127.0.0.1:1",
                r#"couldn't find local name "a\"x" in the initial cluster configuration"#,
            ),
            (
                "a",
                "http://127.0.0.1:1",
                "a=http://127.0.0.1:1,a=http://127.0.0.1:2",
                r#"--initial-cluster has a=http://127.0.0.1:2 but missing from --initial-advertise-peer-urls=http://127.0.0.1:1 (len(["http://127.0.0.1:1"]) != len(["http://127.0.0.1:1" "http://127.0.0.1:2"]))"#,
            ),
            (
                "a",
                "http://127.0.0.1:1,http://127.0.0.1:2",
                "a=http://127.0.0.1:1",
                "--initial-advertise-peer-urls has http://127.0.0.1:2 but missing from --initial-cluster=a=http://127.0.0.1:1,a=http://127.0.0.1:2",
            ),
            (
                "a",
                "http://127.0.0.1:2",
                "a=http://127.0.0.1:1",
                r#"--initial-cluster has a=http://127.0.0.1:1 but missing from --initial-advertise-peer-urls=http://127.0.0.1:2 (resolved urls: "http://127.0.0.1:2" != "http://127.0.0.1:1")"#,
            ),
            (
                "a",
                "http://127.0.0.1:1,http://127.0.0.1:1",
                "a=http://127.0.0.1:1",
                r#"failed to resolve http://127.0.0.1:1,http://127.0.0.1:1 to match --initial-cluster=a=http://127.0.0.1:1,a=http://127.0.0.1:1 (len(["http://127.0.0.1:1" "http://127.0.0.1:1"]) != len(["http://127.0.0.1:1"]))"#,
            ),
            (
                "a",
                "http://127.0.0.1:1",
                "a=http://127.0.0.1:1,b=http://127.0.0.1:1",
                "initial cluster a=http://127.0.0.1:1,b=http://127.0.0.1:1 has duplicate url",
            ),
            (
                "a",
                "http://localhost:1",
                "a=http://127.0.0.1:1",
                r#"--initial-cluster has a=http://127.0.0.1:1 but missing from --initial-advertise-peer-urls=http://localhost:1 (resolved urls: "http://localhost:1" != "http://127.0.0.1:1")"#,
            ),
            (
                "a",
                "http://User:p@127.0.0.1:1?q#F%41%2f,unix://h:1",
                "a=http://127.0.0.1:1",
                r#"--initial-cluster has a=http://127.0.0.1:1 but missing from --initial-advertise-peer-urls=http://User:p@127.0.0.1:1?q#F%41%2f,unix://h:1 (len(["http://User:p@127.0.0.1:1?q#F%41%2f" "unix://h:1"]) != len(["http://127.0.0.1:1"]))"#,
            ),
            (
                " b",
                "http://127.0.0.1:2",
                "a= http://127.0.0.1:1 , b=http://127.0.0.1:3",
                r#"--initial-cluster has  b=http://127.0.0.1:3 but missing from --initial-advertise-peer-urls=http://127.0.0.1:2 (resolved urls: "http://127.0.0.1:2" != "http://127.0.0.1:3")"#,
            ),
            (
                "a",
                "http://127.0.0.1:1",
                "a=http://127.0.0.1:1,b=http://h:,b=HTTPS://[::1]:2380,b=http://h:1?x=y,\
                 c=http://:2380,c=http://127.0.0.1:1",
                "initial cluster a=http://127.0.0.1:1,b=http://h:,b=http://h:1?x=y,\
                 b=https://[::1]:2380,c=http://127.0.0.1:1,c=http://:2380 has duplicate url",
            ),
        ];
        for (name, advertised, initial_cluster, expected) in cases {
            let advertised: Vec<String> = advertised.split(',').map(str::to_string).collect();
            let result = validate_bootstrap(name, &advertised, &cluster(initial_cluster));
            assert_eq!(
                error_text(result),
                expected,
                "{name} {advertised:?} {initial_cluster}"
            );
        }
    }

    #[test]
    fn matching_bootstrap_passes() {
        let initial = cluster("a=http://127.0.0.1:2,b=http://127.0.0.1:3,a=http://127.0.0.1:1");
        let advertised = strings(&["HTTP://127.0.0.1:1", "http://127.0.0.1:2"]);
        assert_eq!(validate_bootstrap("a", &advertised, &initial), Ok(()));
        assert_eq!(
            validate_bootstrap("b", &strings(&["http://127.0.0.1:3"]), &initial),
            Ok(())
        );
        // Unparsed entries are merged by name and normalized too.
        let raw = vec![
            ("a".to_string(), strings(&["http://127.0.0.1:2"])),
            ("a".to_string(), strings(&[" http://127.0.0.1:1"])),
        ];
        assert_eq!(validate_bootstrap("a", &advertised, &raw), Ok(()));
        assert_eq!(
            bootstrap_members(&raw, "t").map(|(id, _)| id),
            bootstrap_members(&initial[..1], "t").map(|(id, _)| id)
        );
    }

    #[test]
    fn invalid_advertised_urls_are_reported_first() {
        assert_eq!(
            error_text(validate_bootstrap(
                "x",
                &strings(&["localhost:1"]),
                &cluster("a=http://127.0.0.1:1")
            )),
            "URL scheme must be http, https, unix, or unixs: localhost:1"
        );
        assert_eq!(
            validate_bootstrap("a", &[], &cluster("a=http://127.0.0.1:1")),
            Err(ClusterError::NoUrls)
        );
    }

    #[test]
    fn identical_member_ids_are_refused() {
        let same = vec![
            ("a".to_string(), strings(&["http://h:1", "http://h:2"])),
            ("b".to_string(), strings(&["http://h:2", "http://h:1"])),
        ];
        let id = member_id(&strings(&["http://h:1", "http://h:2"]), "t", None);
        assert_eq!(
            error_text(bootstrap_members(&same, "t")),
            format!("member exists with identical ID &{{{id:x} {{[http://h:1 http://h:2] false}} {{b []}}}}")
        );
    }

    #[test]
    fn runtime_error_texts() {
        assert_eq!(
            ClusterError::AlreadyBootstrapped {
                id: 0x8e9e05c52164694d
            }
            .to_string(),
            "member 8e9e05c52164694d has already been bootstrapped"
        );
        assert_eq!(
            ClusterError::MemberCountUnequal.to_string(),
            "member count is unequal"
        );
        assert_eq!(
            ClusterError::ZeroMemberId.to_string(),
            "cannot use 0 as member id"
        );
    }

    #[test]
    fn go_quote_escapes_like_strconv_quote() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\n\t\u{1}\u{7f}é"), r#""\n\t\x01\x7fé""#);
        assert_eq!(go_quote_bytes(&[b'%', 0xc3]), r#""%\xc3""#);
        assert_eq!(go_quote("\u{a0}"), r#""\u00a0""#);
    }

    #[test]
    fn split_host_port_matches_go() {
        assert_eq!(split_host_port("h:1"), Some(("h", "1")));
        assert_eq!(split_host_port("[::1]:1"), Some(("::1", "1")));
        assert_eq!(split_host_port(":1"), Some(("", "1")));
        assert_eq!(split_host_port("h:"), Some(("h", "")));
        assert_eq!(split_host_port("h"), None);
        assert_eq!(split_host_port("::1:2"), None);
        assert_eq!(split_host_port("[::1]"), None);
        assert_eq!(split_host_port("[::1]x:1"), None);
        assert_eq!(split_host_port("a[b:1"), None);
        assert_eq!(split_host_port("a]b:1"), None);
    }
}
