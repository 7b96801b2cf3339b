//! Joining a running cluster (`--initial-cluster-state existing`), as etcd's
//! `GetClusterFromRemotePeers` and `ValidateClusterAndAssignIDs` do it.
//!
//! The new member asks the other members named in `--initial-cluster` for the cluster (Keel's
//! `Peer.Members` on their peer URLs, in URL order, 10 s each; the first answer wins). A peer
//! refuses a member whose `--initial-cluster-token` is not the cluster's, so a member started
//! against the wrong cluster never joins it. The answer must describe the cluster
//! `--initial-cluster` describes (as many members, each found by its peer URLs); the member
//! then takes the cluster's id and the id MemberAdd gave its own peer URLs.

use std::time::Duration;

use anyhow::{anyhow, bail};
use keel_proto::etcdserverpb as pb;
use keel_proto::keelpeerpb as peerpb;
use keel_proto::keelpeerpb::peer_client::PeerClient;

use crate::cluster;
use crate::net::ClientOptions;
use crate::raft::transport::member_of;

/// How long each peer has to answer (etcd: 10 s per URL).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The running cluster, as a peer described it.
#[derive(Clone, Debug)]
pub struct Joined {
    /// The cluster's id.
    pub cluster_id: u64,
    /// This member's id (the one MemberAdd gave its peer URLs).
    pub member_id: u64,
    /// Every member, as the peer lists them.
    pub members: Vec<pb::Member>,
}

/// Asks the other members of `initial_cluster` for the cluster and checks it against the flags
/// (`own_peer_urls`: this member's advertised peer URLs). Errors carry etcd's texts.
pub fn fetch_cluster(
    client: &ClientOptions,
    token: &str,
    own_peer_urls: &[String],
    initial_cluster: &[(String, Vec<String>)],
) -> anyhow::Result<Joined> {
    let own = cluster::normalize_urls(own_peer_urls)?;
    let mut urls: Vec<String> = initial_cluster
        .iter()
        .flat_map(|(_, urls)| urls.iter().cloned())
        .filter(|url| !own.contains(url))
        .collect();
    urls.sort();
    urls.dedup();
    let token = token.to_string();
    let client = client.clone();
    let answer = crate::executor::spawn("keel-join", Default::default(), move || async move {
        ask_peers(&client, &token, &urls).await
    })
    .map_err(|e| anyhow!("starting the join thread: {e}"))?
    .join()
    .map_err(|_| anyhow!("the join thread panicked"))?;
    let (cluster_id, members) = answer.map_err(|detail| {
        anyhow!(
            "cannot fetch cluster info from peer urls: could not retrieve cluster information \
             from the given URLs ({detail})"
        )
    })?;
    validate_and_assign(cluster_id, members, &own, initial_cluster)
}

/// Asks each URL in turn; the first answer wins. The error names why each one failed.
async fn ask_peers(
    client: &ClientOptions,
    token: &str,
    urls: &[String],
) -> Result<(u64, Vec<pb::Member>), String> {
    let mut failures = Vec::new();
    for url in urls {
        match ask_peer(client, token, url).await {
            Ok(answer) => return Ok(answer),
            Err(error) => {
                tracing::warn!(%url, %error, "could not get cluster information from a peer");
                failures.push(format!("{url}: {error}"));
            }
        }
    }
    if failures.is_empty() {
        failures.push("--initial-cluster names no other member".to_string());
    }
    Err(failures.join("; "))
}

async fn ask_peer(
    client: &ClientOptions,
    token: &str,
    url: &str,
) -> Result<(u64, Vec<pb::Member>), String> {
    let endpoint = crate::raft::transport::PeerEndpoint::parse("initial-cluster", url)
        .map_err(|e| e.to_string())?;
    let options = ClientOptions {
        connect_timeout: FETCH_TIMEOUT,
        ..client.clone()
    };
    let call = async {
        let channel = endpoint
            .connect(&options)
            .await
            .map_err(|e| e.to_string())?;
        PeerClient::new(channel)
            .members(peerpb::MembersRequest {
                cluster_token: token.to_string(),
            })
            .await
            .map(|r| r.into_inner())
            .map_err(|status| status.message().to_string())
    };
    let response = futures_lite::future::or(call, async {
        glommio::timer::sleep(FETCH_TIMEOUT).await;
        Err("timed out".to_string())
    })
    .await?;
    if response.members.is_empty() {
        return Err("failed to get raft cluster member(s) from the given URLs".to_string());
    }
    Ok((
        response.cluster_id,
        response.members.into_iter().map(member_of).collect(),
    ))
}

/// etcd's `ValidateClusterAndAssignIDs`: the remote cluster has the members `--initial-cluster`
/// names (found by their peer URLs); this member is the one with `own` peer URLs.
fn validate_and_assign(
    cluster_id: u64,
    members: Vec<pb::Member>,
    own: &[String],
    initial_cluster: &[(String, Vec<String>)],
) -> anyhow::Result<Joined> {
    let describe = || go_cluster(cluster_id, &members);
    if members.len() != initial_cluster.len() {
        bail!(
            "error validating peerURLs {}: member count is unequal",
            describe()
        );
    }
    for (name, urls) in initial_cluster {
        let urls = cluster::normalize_urls(urls)?;
        let found = members.iter().any(|m| has_urls(m, &urls));
        if !found {
            bail!(
                "error validating peerURLs {}: PeerURLs: no match found for existing member \
                 ({name}, {urls:?}), last resolver error (<nil>)",
                describe()
            );
        }
    }
    let member_id = members
        .iter()
        .find(|m| has_urls(m, own))
        .map(|m| m.id)
        .ok_or_else(|| {
            anyhow!(
                "error validating peerURLs {}: no member has this member's peer URLs {own:?} \
                 (add it with `etcdctl member add` first)",
                describe()
            )
        })?;
    Ok(Joined {
        cluster_id,
        member_id,
        members,
    })
}

/// True when `member`'s peer URLs are `urls` (sorted), in any order.
fn has_urls(member: &pb::Member, urls: &[String]) -> bool {
    let mut theirs = member.peer_ur_ls.clone();
    theirs.sort();
    theirs == urls
}

/// A cluster as etcd's `RaftCluster.String` prints it.
fn go_cluster(cluster_id: u64, members: &[pb::Member]) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|m| {
            format!(
                "&{{ID:{:x} RaftAttributes:{{PeerURLs:[{}] IsLearner:{}}} Attributes:{{Name:{} \
                 ClientURLs:[{}]}}}}",
                m.id,
                m.peer_ur_ls.join(" "),
                m.is_learner,
                m.name,
                m.client_ur_ls.join(" ")
            )
        })
        .collect();
    format!(
        "{{ClusterID:{cluster_id:x} Members:[{}] RemovedMemberIDs:[]}}",
        members.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, name: &str, url: &str) -> pb::Member {
        pb::Member {
            id,
            name: name.to_string(),
            peer_ur_ls: vec![url.to_string()],
            ..Default::default()
        }
    }

    #[test]
    fn the_joining_member_takes_the_clusters_ids() {
        let members = vec![
            member(0x11, "a", "http://127.0.0.1:1"),
            member(0x22, "", "http://127.0.0.1:2"),
        ];
        let flags = vec![
            ("a".to_string(), vec!["http://127.0.0.1:1".to_string()]),
            ("b".to_string(), vec!["http://127.0.0.1:2".to_string()]),
        ];
        let own = vec!["http://127.0.0.1:2".to_string()];
        let joined = validate_and_assign(0xc1, members.clone(), &own, &flags).unwrap();
        assert_eq!((joined.cluster_id, joined.member_id), (0xc1, 0x22));

        let error = validate_and_assign(0xc1, members[..1].to_vec(), &own, &flags).unwrap_err();
        assert!(
            error.to_string().ends_with(": member count is unequal"),
            "{error}"
        );
        let other = vec![
            ("a".to_string(), vec!["http://127.0.0.1:1".to_string()]),
            ("b".to_string(), vec!["http://127.0.0.1:3".to_string()]),
        ];
        let error = validate_and_assign(0xc1, members, &own, &other).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("PeerURLs: no match found for existing member (b, "),
            "{error}"
        );
    }
}
