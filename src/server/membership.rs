//! Membership changes: etcd's checks of a change, and what an applied change does to the
//! member list and to raft's configuration.
//!
//! MemberAdd, MemberRemove and MemberPromote change raft's configuration: each travels as a
//! `ConfChangeV2` entry holding one change (raft-rs applies a single change without joint
//! consensus), whose context is the command's data ([`crate::server::command::encode_data`]:
//! the request id that finds the waiting client, then the command). MemberUpdate changes only
//! the peer URLs and travels as a normal entry.
//!
//! Every member checks a change again when it applies it ([`validate`], etcd's
//! `ValidateConfigurationChange`), against the member list as of that entry, so the same log
//! gives the same members everywhere; a change that fails the check applies as nothing (raft's
//! configuration is left as it was) and its client gets the error. The member that receives
//! the request checks it first too, so most refusals never reach the log.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use keel_proto::etcdserverpb as pb;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState};

use crate::cluster;
use crate::server::command::Command;
use crate::server::error::ServerError;
use crate::server::state::{Applied, PromoteForward, Shared};

/// etcd's check of a configuration change against the current members and the ids removed
/// before (`max_learners`: `--experimental-max-learners`). A removed id is "not found" for
/// every change, as in etcd: it never comes back.
pub fn validate(
    members: &[pb::Member],
    removed: &[u64],
    command: &Command,
    max_learners: usize,
) -> Result<(), ServerError> {
    let target = match command {
        Command::MemberAdd(member) => member.id,
        Command::MemberRemove(request) => request.id,
        Command::MemberPromote(request) => request.id,
        Command::MemberUpdate(request) => request.id,
        _ => 0,
    };
    if target != 0 && removed.contains(&target) {
        return Err(ServerError::MemberNotFound);
    }
    let find = |id: u64| members.iter().find(|m| m.id == id);
    let url_taken = |urls: &[String], except: u64| {
        members
            .iter()
            .filter(|m| m.id != except)
            .any(|m| m.peer_ur_ls.iter().any(|u| urls.contains(u)))
    };
    match command {
        Command::MemberAdd(member) => {
            if find(member.id).is_some() {
                return Err(ServerError::MemberExists);
            }
            if url_taken(&member.peer_ur_ls, 0) {
                return Err(ServerError::PeerUrlExists);
            }
            let learners = members.iter().filter(|m| m.is_learner).count();
            if member.is_learner && learners + 1 > max_learners {
                return Err(ServerError::TooManyLearners);
            }
        }
        Command::MemberRemove(request) => match find(request.id) {
            None => return Err(ServerError::MemberNotFound),
            // raft refuses a configuration without voters; etcd's strict check refuses this
            // as too few started members, and every member refuses it alike.
            Some(member)
                if !member.is_learner && members.iter().filter(|m| !m.is_learner).count() == 1 =>
            {
                return Err(ServerError::NotEnoughStartedMembers)
            }
            Some(_) => {}
        },
        Command::MemberPromote(request) => match find(request.id) {
            None => return Err(ServerError::MemberNotFound),
            Some(member) if !member.is_learner => return Err(ServerError::MemberNotLearner),
            Some(_) => {}
        },
        Command::MemberUpdate(request) => {
            if find(request.id).is_none() {
                return Err(ServerError::MemberNotFound);
            }
            if url_taken(&request.peer_ur_ls, request.id) {
                return Err(ServerError::PeerUrlExists);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Applies a membership command to `members`: checks it ([`validate`]) and, if it passes,
/// changes the list; the result is the list after it (what etcd answers every membership
/// request with). Apply passes no learner limit (`usize::MAX`): `--experimental-max-learners`
/// is a member's own flag, so it is checked when a change is proposed, never where members
/// could disagree.
pub fn apply(
    members: &mut Vec<pb::Member>,
    removed: &mut Vec<u64>,
    command: &Command,
    max_learners: usize,
) -> Result<Applied, ServerError> {
    validate(members, removed, command, max_learners)?;
    apply_to_members(members, command);
    if let Command::MemberRemove(request) = command {
        if !removed.contains(&request.id) {
            removed.push(request.id);
        }
    }
    let mut list = members.clone();
    list.sort_by_key(|m| m.id);
    Ok(Applied::Members(list))
}

/// The member list after `command` (already validated).
pub fn apply_to_members(members: &mut Vec<pb::Member>, command: &Command) {
    match command {
        Command::MemberAdd(member) => {
            members.push(pb::Member {
                id: member.id,
                name: String::new(),
                peer_ur_ls: member.peer_ur_ls.clone(),
                client_ur_ls: Vec::new(),
                is_learner: member.is_learner,
            });
            members.sort_by_key(|m| m.id);
        }
        Command::MemberRemove(request) => members.retain(|m| m.id != request.id),
        Command::MemberPromote(request) => {
            if let Some(member) = members.iter_mut().find(|m| m.id == request.id) {
                member.is_learner = false;
            }
        }
        Command::MemberUpdate(request) => {
            if let Some(member) = members.iter_mut().find(|m| m.id == request.id) {
                member.peer_ur_ls = request.peer_ur_ls.clone();
            }
        }
        _ => {}
    }
}

/// The single raft change a configuration command makes, `None` for other commands.
pub fn raft_change(command: &Command) -> Option<(ConfChangeType, u64)> {
    match command {
        Command::MemberAdd(member) if member.is_learner => {
            Some((ConfChangeType::AddLearnerNode, member.id))
        }
        Command::MemberAdd(member) => Some((ConfChangeType::AddNode, member.id)),
        Command::MemberPromote(request) => Some((ConfChangeType::AddNode, request.id)),
        Command::MemberRemove(request) => Some((ConfChangeType::RemoveNode, request.id)),
        _ => None,
    }
}

/// The `ConfChangeV2` entry for a configuration command; `data` (the command's entry data,
/// with its request id) is its context.
pub fn conf_change(command: &Command, data: Vec<u8>) -> Option<ConfChangeV2> {
    let (change_type, node_id) = raft_change(command)?;
    let mut single = ConfChangeSingle::default();
    single.set_change_type(change_type);
    single.node_id = node_id;
    let mut change = ConfChangeV2::default();
    change.changes.push(single);
    change.context = data.into();
    Some(change)
}

/// raft's configuration after a single change: what raft-rs computes for it, done here for
/// replay at startup, where no raft node runs yet. Voters and learners come back sorted.
pub fn conf_state_after(conf: &ConfState, change: (ConfChangeType, u64)) -> ConfState {
    let (change_type, id) = change;
    let mut voters: Vec<u64> = conf.voters.iter().copied().filter(|v| *v != id).collect();
    let mut learners: Vec<u64> = conf.learners.iter().copied().filter(|v| *v != id).collect();
    match change_type {
        ConfChangeType::AddNode => voters.push(id),
        ConfChangeType::AddLearnerNode => learners.push(id),
        ConfChangeType::RemoveNode => {}
    }
    voters.sort_unstable();
    learners.sort_unstable();
    ConfState::from((voters, learners))
}

/// `conf` with its voters and learners sorted (raft-rs reports them in no set order).
pub fn sorted(conf: &ConfState) -> ConfState {
    let mut voters = conf.voters.clone();
    let mut learners = conf.learners.clone();
    voters.sort_unstable();
    learners.sort_unstable();
    ConfState::from((voters, learners))
}

/// How long a peer connection must have been up to count as healthy for the strict
/// reconfiguration check (etcd's `HealthInterval`).
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Voters connected to this member for at least [`HEALTH_INTERVAL`], this member included
/// (etcd's `numConnectedSince`).
fn connected_voters(shared: &Shared, voters: &[&pb::Member]) -> usize {
    let since = Instant::now().checked_sub(HEALTH_INTERVAL);
    let active = shared
        .peers_active_since
        .lock()
        .expect("peer activity lock");
    voters
        .iter()
        .filter(|m| {
            m.id == shared.member_id
                || active
                    .get(&m.id)
                    .is_some_and(|at| since.is_some_and(|since| *at <= since))
        })
        .count()
}

fn started(member: &pb::Member) -> bool {
    !member.name.is_empty()
}

/// etcd's strict check before adding a member (`mayAddMember`).
fn may_add(shared: &Shared, is_learner: bool) -> Result<(), ServerError> {
    let members = shared.member_list();
    let voters: Vec<&pb::Member> = members.iter().filter(|m| !m.is_learner).collect();
    if !is_learner {
        // The new voter counts as a member that has not started.
        let total = voters.len() + 1;
        let running = voters.iter().filter(|m| started(m)).count();
        let single_member = running == 1 && total == 2;
        if !single_member && running < total / 2 + 1 {
            return Err(ServerError::NotEnoughStartedMembers);
        }
    }
    if voters.len() > 1 && connected_voters(shared, &voters) < voters.len().div_ceil(2) + 1 {
        return Err(ServerError::Unhealthy);
    }
    Ok(())
}

/// etcd's strict check before removing member `id` (`mayRemoveMember`).
fn may_remove(shared: &Shared, id: u64) -> Result<(), ServerError> {
    let members = shared.member_list();
    if members.iter().any(|m| m.id == id && m.is_learner) {
        return Ok(());
    }
    let voters: Vec<&pb::Member> = members.iter().filter(|m| !m.is_learner).collect();
    let remaining: Vec<&&pb::Member> = voters.iter().filter(|m| m.id != id).collect();
    let running = remaining.iter().filter(|m| started(m)).count();
    if running < remaining.len() / 2 + 1 {
        return Err(ServerError::NotEnoughStartedMembers);
    }
    let target_connected = shared
        .peers_active_since
        .lock()
        .expect("peer activity lock")
        .contains_key(&id);
    if id != shared.member_id && !target_connected {
        // A member that is down is safe to remove.
        return Ok(());
    }
    let active = connected_voters(shared, &voters);
    if active.saturating_sub(1) < 1 + (voters.len().saturating_sub(1)) / 2 {
        return Err(ServerError::Unhealthy);
    }
    Ok(())
}

/// etcd's strict check before promoting learner `id` (`IsReadyToPromoteMember`).
pub fn may_promote(shared: &Shared, id: u64) -> Result<(), ServerError> {
    let members = shared.member_list();
    let voters = members.iter().filter(|m| !m.is_learner && m.id != id);
    let (mut total, mut running) = (1, 1);
    for voter in voters {
        total += 1;
        if started(voter) {
            running += 1;
        }
    }
    if running < total / 2 + 1 {
        return Err(ServerError::NotEnoughStartedMembers);
    }
    Ok(())
}

/// [`validate`] against the members and removed ids as this member applied them, with its
/// learner limit.
fn check(shared: &Shared, command: &Command) -> Result<(), ServerError> {
    validate(
        &shared.member_list(),
        &shared.removed_list(),
        command,
        shared.limits.max_learners,
    )
}

fn members_of(applied: Applied) -> Vec<pb::Member> {
    match applied {
        Applied::Members(members) => members,
        _ => Vec::new(),
    }
}

/// MemberAdd: a member with `peer_urls` (a learner if `is_learner`), its id derived as etcd
/// derives it (sha1 of the sorted peer URLs and the current Unix time; etcd's MemberAdd uses
/// no cluster token). Returns the new member and the members after it.
pub async fn add(
    shared: &Shared,
    peer_urls: &[String],
    is_learner: bool,
) -> Result<(pb::Member, Vec<pb::Member>), ServerError> {
    shared.refuse_if_learner()?;
    let urls = cluster::normalize_urls(peer_urls).map_err(|_| ServerError::MemberBadUrls)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let member = pb::Member {
        id: cluster::member_id(&urls, "", Some(now)),
        peer_ur_ls: urls,
        is_learner,
        ..Default::default()
    };
    let command = Command::MemberAdd(member.clone());
    // etcd's order: the strict check first; the change itself is checked when proposed
    // (`RaftNode::propose`) and again when applied.
    if shared.limits.strict_reconfig_check {
        may_add(shared, is_learner)?;
    }
    let members = members_of(shared.propose(command).await?);
    Ok((member, members))
}

/// MemberRemove of member `id`. A leader being removed hands leadership to another voter
/// first, so the cluster need not wait an election timeout for a new one (etcd does not).
pub async fn remove(shared: &Shared, id: u64) -> Result<Vec<pb::Member>, ServerError> {
    shared.refuse_if_learner()?;
    let command = Command::MemberRemove(pb::MemberRemoveRequest { id });
    let members = shared.member_list();
    if shared.limits.strict_reconfig_check {
        may_remove(shared, id)?;
    }
    // Checked before any leadership moves for it.
    check(shared, &command)?;
    let voters = members.iter().filter(|m| !m.is_learner).count();
    if id == shared.leader_id.load(Ordering::Acquire) && voters > 1 {
        // The member asked takes over when the leader is another; the leader picks its most
        // caught-up follower when it is asked itself.
        let target = if shared.is_leader() {
            0
        } else {
            shared.member_id
        };
        if let Err(error) = shared.transfer_leadership(target).await {
            tracing::warn!(%error, "handing leadership over before removing the leader failed; \
                removing it anyway");
        }
    }
    Ok(members_of(shared.propose(command).await?))
}

/// MemberUpdate: member `id`'s peer URLs become `peer_urls`.
pub async fn update(
    shared: &Shared,
    id: u64,
    peer_urls: &[String],
) -> Result<Vec<pb::Member>, ServerError> {
    shared.refuse_if_learner()?;
    let urls = cluster::normalize_urls(peer_urls).map_err(|_| ServerError::MemberBadUrls)?;
    let command = Command::MemberUpdate(pb::MemberUpdateRequest {
        id,
        peer_ur_ls: urls,
    });
    check(shared, &command)?;
    Ok(members_of(shared.propose(command).await?))
}

/// MemberPromote of learner `id`: decided by the leader (it alone knows how far the learner's
/// log is), so a member that does not lead asks the leader over the peer connection.
pub async fn promote(shared: &Shared, id: u64) -> Result<Vec<pb::Member>, ServerError> {
    shared.refuse_if_learner()?;
    match promote_here(shared, id).await {
        Err(ServerError::NotLeader) => {}
        other => return other,
    }
    if !shared.has_leader() {
        return Err(ServerError::NoLeader);
    }
    let (reply, answer) = oneshot::channel();
    shared
        .promote_forwards
        .send(PromoteForward { id, reply })
        .await
        .map_err(|_| ServerError::Stopped)?;
    answer.await.unwrap_or(Err(ServerError::Stopped))
}

/// MemberPromote on this member, which must lead (`not leader` otherwise); counted in the
/// learner promotion metrics as etcd counts them.
pub async fn promote_here(shared: &Shared, id: u64) -> Result<Vec<pb::Member>, ServerError> {
    let command = Command::MemberPromote(pb::MemberPromoteRequest { id });
    let checked = if shared.is_leader() {
        check(shared, &command).and_then(|()| {
            if shared.limits.strict_reconfig_check {
                may_promote(shared, id)
            } else {
                Ok(())
            }
        })
    } else {
        Err(ServerError::NotLeader)
    };
    let result = match checked {
        Ok(()) => shared.propose(command).await.map(members_of),
        Err(error) => Err(error),
    };
    match &result {
        Ok(_) => shared.metrics.learner_promote_successes.inc(),
        Err(ServerError::NotLeader) => {}
        Err(error) => {
            *shared
                .metrics
                .learner_promote_failures
                .lock()
                .expect("promote metrics lock")
                .entry(error.to_string())
                .or_default() += 1;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, url: &str, is_learner: bool) -> pb::Member {
        pb::Member {
            id,
            peer_ur_ls: vec![url.to_string()],
            is_learner,
            ..Default::default()
        }
    }

    #[test]
    fn adds_are_checked_as_etcd_checks_them() {
        let members = vec![
            member(1, "http://a:1", false),
            member(2, "http://b:1", true),
        ];
        let add = |m| Command::MemberAdd(m);
        assert_eq!(
            validate(&members, &[], &add(member(1, "http://c:1", false)), 1),
            Err(ServerError::MemberExists)
        );
        assert_eq!(
            validate(&members, &[], &add(member(3, "http://b:1", false)), 1),
            Err(ServerError::PeerUrlExists)
        );
        assert_eq!(
            validate(&members, &[], &add(member(3, "http://c:1", true)), 1),
            Err(ServerError::TooManyLearners)
        );
        assert_eq!(
            validate(&members, &[], &add(member(3, "http://c:1", true)), 2),
            Ok(())
        );
        assert_eq!(
            validate(&members, &[], &add(member(3, "http://c:1", false)), 1),
            Ok(())
        );
    }

    #[test]
    fn removes_promotes_and_updates_are_checked() {
        let members = vec![
            member(1, "http://a:1", false),
            member(2, "http://b:1", true),
        ];
        let remove = |id| Command::MemberRemove(pb::MemberRemoveRequest { id });
        let promote = |id| Command::MemberPromote(pb::MemberPromoteRequest { id });
        let update = |id, url: &str| {
            Command::MemberUpdate(pb::MemberUpdateRequest {
                id,
                peer_ur_ls: vec![url.to_string()],
            })
        };
        assert_eq!(
            validate(&members, &[], &remove(9), 1),
            Err(ServerError::MemberNotFound)
        );
        assert_eq!(validate(&members, &[], &remove(2), 1), Ok(()));
        assert_eq!(
            validate(&members, &[], &promote(9), 1),
            Err(ServerError::MemberNotFound)
        );
        assert_eq!(
            validate(&members, &[], &promote(1), 1),
            Err(ServerError::MemberNotLearner)
        );
        assert_eq!(validate(&members, &[], &promote(2), 1), Ok(()));
        assert_eq!(
            validate(&members, &[], &update(1, "http://b:1"), 1),
            Err(ServerError::PeerUrlExists)
        );
        // A member may keep its own URL.
        assert_eq!(validate(&members, &[], &update(1, "http://a:1"), 1), Ok(()));
        assert_eq!(
            validate(&members, &[], &update(5, "http://z:1"), 1),
            Err(ServerError::MemberNotFound)
        );
        // A removed id never comes back, whatever the change.
        let readd = Command::MemberAdd(member(9, "http://y:1", false));
        assert_eq!(
            validate(&members, &[9], &readd, 1),
            Err(ServerError::MemberNotFound)
        );
    }

    #[test]
    fn applied_changes_move_members_and_configuration_together() {
        let mut members = vec![member(1, "http://a:1", false)];
        let mut conf = ConfState::from((vec![1], vec![]));
        let steps = [
            Command::MemberAdd(member(3, "http://c:1", true)),
            Command::MemberPromote(pb::MemberPromoteRequest { id: 3 }),
            Command::MemberAdd(member(2, "http://b:1", false)),
            Command::MemberRemove(pb::MemberRemoveRequest { id: 1 }),
        ];
        for step in &steps {
            validate(&members, &[], step, 1).unwrap();
            apply_to_members(&mut members, step);
            conf = conf_state_after(&conf, raft_change(step).unwrap());
        }
        assert_eq!(conf, ConfState::from((vec![2, 3], vec![])));
        let ids: Vec<(u64, bool)> = members.iter().map(|m| (m.id, m.is_learner)).collect();
        assert_eq!(ids, vec![(2, false), (3, false)]);
        let update = Command::MemberUpdate(pb::MemberUpdateRequest {
            id: 2,
            peer_ur_ls: vec!["http://b:2".into()],
        });
        assert!(raft_change(&update).is_none());
        apply_to_members(&mut members, &update);
        assert_eq!(members[0].peer_ur_ls, vec!["http://b:2".to_string()]);
    }

    /// A member (id 1) whose members are `members` and which has been connected for a while
    /// to `connected`.
    fn shared(members: Vec<pb::Member>, connected: &[u64]) -> std::sync::Arc<Shared> {
        use crate::server::state::{Limits, MemberInfo, SharedConfig};
        let meta = crate::raft::records::StateMeta {
            members,
            ..Default::default()
        };
        let (shared, _inputs) = Shared::new(
            SharedConfig {
                cluster_id: 9,
                member_id: 1,
                member: MemberInfo {
                    name: "m1".into(),
                    peer_urls: Vec::new(),
                    client_urls: Vec::new(),
                },
                limits: Limits {
                    request_bytes_max: 1 << 20,
                    txn_ops_max: 128,
                    quota_bytes: 1 << 30,
                    lease_ttl_min_seconds: 1,
                    strict_reconfig_check: true,
                    max_learners: 1,
                },
                watch_progress_interval: Duration::from_secs(600),
                id_seed: Some(1),
                tokens: crate::server::tokens::Tokens::simple(Duration::from_secs(300)),
                bcrypt_cost: 4,
                scratch_dir: std::env::temp_dir(),
            },
            keel_engine::mvcc::Store::new(),
            &meta,
            0,
        );
        let long_ago = Instant::now() - 2 * HEALTH_INTERVAL;
        for id in connected {
            shared.set_peer_active(*id, Some(long_ago));
        }
        shared
    }

    fn voter(id: u64, started: bool) -> pb::Member {
        pb::Member {
            id,
            name: if started {
                format!("m{id}")
            } else {
                String::new()
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_strict_check_counts_started_and_connected_voters_as_etcd() {
        let three = || vec![voter(1, true), voter(2, true), voter(3, true)];
        // Everyone up and connected: a voter or a learner may be added.
        let all = shared(three(), &[2, 3]);
        assert_eq!(may_add(&all, false), Ok(()));
        assert_eq!(may_add(&all, true), Ok(()));
        // Only this member connected: fewer than a quorum of four after the add.
        let alone = shared(three(), &[]);
        assert_eq!(may_add(&alone, false), Err(ServerError::Unhealthy));
        // A connection younger than 5 s does not count yet.
        let fresh = shared(three(), &[]);
        fresh.set_peer_active(2, Some(Instant::now()));
        fresh.set_peer_active(3, Some(Instant::now()));
        assert_eq!(may_add(&fresh, false), Err(ServerError::Unhealthy));
        // Two started of three voters plus the new one: not a quorum of four started.
        let unstarted = shared(vec![voter(1, true), voter(2, true), voter(3, false)], &[2]);
        assert_eq!(
            may_add(&unstarted, false),
            Err(ServerError::NotEnoughStartedMembers)
        );
        // Growing one member to two is allowed (etcd's special case).
        assert_eq!(may_add(&shared(vec![voter(1, true)], &[]), false), Ok(()));

        // Removing a connected voter while another is down: one voter of two left connected.
        let down = shared(three(), &[2]);
        assert_eq!(may_remove(&down, 2), Err(ServerError::Unhealthy));
        // Removing the member that is down is safe.
        assert_eq!(may_remove(&down, 3), Ok(()));
        // Removing a learner is always allowed.
        let mut with_learner = three();
        with_learner.push(pb::Member {
            id: 4,
            is_learner: true,
            ..Default::default()
        });
        assert_eq!(may_remove(&shared(with_learner.clone(), &[]), 4), Ok(()));
        // Promoting counts the learner as started: with two voters unstarted, 2 of 4.
        let mut half = vec![voter(1, true), voter(2, false), voter(3, false)];
        half.push(with_learner[3].clone());
        assert_eq!(
            may_promote(&shared(half, &[]), 4),
            Err(ServerError::NotEnoughStartedMembers)
        );
        assert_eq!(may_promote(&shared(with_learner, &[]), 4), Ok(()));
    }

    #[test]
    fn a_conf_change_carries_its_command_as_context() {
        let command = Command::MemberAdd(member(7, "http://g:1", true));
        let data = crate::server::command::encode_data(42, &command);
        let change = conf_change(&command, data.clone()).unwrap();
        assert_eq!(change.changes.len(), 1);
        assert_eq!(
            change.changes[0].get_change_type(),
            ConfChangeType::AddLearnerNode
        );
        assert_eq!(change.changes[0].node_id, 7);
        assert_eq!(&change.context[..], &data[..]);
        assert!(conf_change(&Command::Compact(Default::default()), Vec::new()).is_none());
    }
}
