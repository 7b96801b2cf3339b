//! etcd's v3 authentication and role-based access control, as state of the replicated state
//! machine: users (with bcrypt password hashes), roles (with key-range permissions), whether
//! auth is enabled, and the auth revision.
//!
//! Every change applies through the log ([`AuthStore::apply`]), so all members hold the same
//! auth state at the same index; it is carried in checkpoints ([`AuthStore::encode`]). The
//! store is copy-on-write: the raft core replaces the shared `Arc<AuthStore>` after a change,
//! and a request checks permissions against the snapshot it took, never waiting for apply.
//!
//! Checks follow etcd's `isOpPermitted`: nothing is checked while auth is disabled; a request
//! without a user (auth revision 0) is refused with `user name is empty`; a request made at an
//! older auth revision with `revision of auth store is old`; an unknown user, or one whose
//! roles do not cover the keys, with `permission denied`; a user with the `root` role may do
//! anything. Key ranges are checked against the union of the user's permissions of the
//! needed kind ([`KeyRanges`]), so a range is allowed when several permissions together cover
//! it.
//!
//! Password checks (bcrypt) never run here: the API layer checks a password off the raft core
//! and proposes only the outcome; hashes are made there too.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use keel_engine::mvcc::Store;
use keel_proto::authpb;
use keel_proto::etcdserverpb as pb;
use prost::Message;

use crate::server::command::Command;
use crate::server::error::ServerError;

/// The user that must exist, with the root role, before auth can be enabled.
pub const ROOT_USER: &str = "root";

/// The role that may do anything.
pub const ROOT_ROLE: &str = "root";

/// Who sends a request, and at which auth revision their credentials were checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthInfo {
    /// The user name.
    pub username: String,
    /// The auth revision when the token (or certificate) was checked; 0 for no user.
    pub revision: u64,
}

/// The kind of access a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reading keys.
    Read,
    /// Writing keys.
    Write,
}

/// An end of a key interval: a key, or past every key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Key(Vec<u8>),
    Infinity,
}

impl End {
    fn after(&self, key: &[u8]) -> bool {
        match self {
            End::Key(end) => end.as_slice() > key,
            End::Infinity => true,
        }
    }
}

/// A set of keys: sorted, disjoint, non-adjacent half-open intervals `[begin, end)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRanges {
    intervals: Vec<(Vec<u8>, End)>,
}

/// The interval a permission (or a request) names: an empty `range_end` is the key alone,
/// `"\0"` every key from `key` on, anything else `[key, range_end)`.
fn interval(key: &[u8], range_end: &[u8]) -> (Vec<u8>, End) {
    if range_end.is_empty() {
        let mut end = key.to_vec();
        end.push(0);
        (key.to_vec(), End::Key(end))
    } else if range_end == [0] {
        (key.to_vec(), End::Infinity)
    } else {
        (key.to_vec(), End::Key(range_end.to_vec()))
    }
}

impl KeyRanges {
    /// The union of the intervals of `permissions` (key, range_end pairs).
    pub fn from_permissions<'a>(permissions: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Self {
        let mut all: Vec<(Vec<u8>, End)> = permissions
            .map(|(key, range_end)| interval(key, range_end))
            // An empty or inverted interval holds no key.
            .filter(|(begin, end)| end.after(begin))
            .collect();
        all.sort();
        let mut intervals: Vec<(Vec<u8>, End)> = Vec::with_capacity(all.len());
        for (begin, end) in all {
            match intervals.last_mut() {
                // Overlapping or touching the previous one: extend it.
                Some((_, last_end)) if !End::Key(begin.clone()).gt(last_end) => {
                    if end > *last_end {
                        *last_end = end;
                    }
                }
                _ => intervals.push((begin, end)),
            }
        }
        KeyRanges { intervals }
    }

    /// The interval holding `key`, if any.
    fn containing(&self, key: &[u8]) -> Option<&(Vec<u8>, End)> {
        let after = self
            .intervals
            .partition_point(|(begin, _)| begin.as_slice() <= key);
        let candidate = self.intervals.get(after.checked_sub(1)?)?;
        candidate.1.after(key).then_some(candidate)
    }

    /// True when the keys a request names (etcd's key and range_end) are all in the set: for
    /// an empty `range_end` the key itself, for `"\0"` every key from `key` on, else every key
    /// of `[key, range_end)`. A range that holds no key (range_end at or before key) is
    /// allowed when its key is.
    pub fn covers(&self, key: &[u8], range_end: &[u8]) -> bool {
        let Some((_, held_end)) = self.containing(key) else {
            return false;
        };
        if range_end.is_empty() {
            return true;
        }
        let (_, wanted_end) = interval(key, range_end);
        match &wanted_end {
            End::Key(end) if end.as_slice() <= key => true,
            _ => wanted_end <= *held_end,
        }
    }
}

/// One user's permissions, merged across their roles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct UserPermissions {
    root: bool,
    read: KeyRanges,
    write: KeyRanges,
}

/// The auth state of the state machine.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthStore {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, authpb::User>,
    roles: BTreeMap<String, authpb::Role>,
    /// Derived from users and roles after every change.
    permissions: HashMap<String, UserPermissions>,
}

/// An auth change: what the API layer proposes through the log (passwords already hashed).
#[derive(Clone, Debug, PartialEq)]
pub enum AuthChange {
    /// AuthEnable.
    Enable,
    /// AuthDisable.
    Disable,
    /// UserAdd, with `hashed_password` set (bcrypt) unless the user has no password.
    UserAdd(pb::AuthUserAddRequest),
    /// UserDelete.
    UserDelete(pb::AuthUserDeleteRequest),
    /// UserChangePassword, with `hashed_password` set.
    UserChangePassword(pb::AuthUserChangePasswordRequest),
    /// UserGrantRole.
    UserGrantRole(pb::AuthUserGrantRoleRequest),
    /// UserRevokeRole.
    UserRevokeRole(pb::AuthUserRevokeRoleRequest),
    /// RoleAdd.
    RoleAdd(pb::AuthRoleAddRequest),
    /// RoleDelete.
    RoleDelete(pb::AuthRoleDeleteRequest),
    /// RoleGrantPermission.
    RoleGrantPermission(pb::AuthRoleGrantPermissionRequest),
    /// RoleRevokePermission.
    RoleRevokePermission(pb::AuthRoleRevokePermissionRequest),
}

/// What an applied [`AuthChange`] means for the tokens already handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenEffect {
    /// Tokens stay valid.
    None,
    /// Every token of this user is void (deleted, or a new password).
    InvalidateUser(String),
    /// Every token is void (auth disabled).
    InvalidateAll,
}

fn user_name(user: &authpb::User) -> String {
    String::from_utf8_lossy(&user.name).into_owned()
}

/// The checkpoint form of the auth state: field numbers of Keel's own (etcd keeps these in
/// buckets of its backend), users and roles as etcd's `authpb` messages.
#[derive(Clone, PartialEq, prost::Message)]
struct AuthSection {
    #[prost(bool, tag = "1")]
    enabled: bool,
    #[prost(uint64, tag = "2")]
    revision: u64,
    #[prost(message, repeated, tag = "3")]
    users: Vec<authpb::User>,
    #[prost(message, repeated, tag = "4")]
    roles: Vec<authpb::Role>,
}

impl Default for AuthStore {
    /// A new cluster's auth state: disabled, no users or roles, at auth revision 1 (etcd
    /// commits its first auth revision when it creates the store).
    fn default() -> Self {
        AuthStore {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
            permissions: HashMap::new(),
        }
    }
}

/// etcd's `isValidPermissionRange`: a non-empty key, and a range_end that is empty (the key
/// alone), `"\0"` (every key from it) or after the key.
fn valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || range_end == [0] || key < range_end)
}

impl AuthStore {
    /// True while auth is enabled.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The auth revision: raised by every change to users, roles or permissions.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The user `name`.
    pub fn user(&self, name: &str) -> Option<&authpb::User> {
        self.users.get(name)
    }

    /// The role `name`.
    pub fn role(&self, name: &str) -> Option<&authpb::Role> {
        self.roles.get(name)
    }

    /// User names, sorted.
    pub fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    /// Role names, sorted.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    /// The checkpoint section: encoded users, roles, flag and revision.
    pub fn encode(&self) -> Vec<u8> {
        AuthSection {
            enabled: self.enabled,
            revision: self.revision,
            users: self.users.values().cloned().collect(),
            roles: self.roles.values().cloned().collect(),
        }
        .encode_to_vec()
    }

    /// An auth state from its parts (read from another format, such as etcd's backend
    /// file), checked as a checkpoint section is.
    pub fn from_parts(
        enabled: bool,
        revision: u64,
        users: Vec<authpb::User>,
        roles: Vec<authpb::Role>,
    ) -> Result<AuthStore, String> {
        AuthStore::decode(
            &AuthSection {
                enabled,
                revision,
                users,
                roles,
            }
            .encode_to_vec(),
        )
    }

    /// Reads a section written by [`AuthStore::encode`].
    pub fn decode(bytes: &[u8]) -> Result<AuthStore, String> {
        let section = AuthSection::decode(bytes).map_err(|e| e.to_string())?;
        if section.revision == 0 {
            // Every auth state Keel writes is at revision 1 or later.
            return Err("auth section at revision 0".into());
        }
        let mut store = AuthStore {
            enabled: section.enabled,
            revision: section.revision,
            users: section
                .users
                .into_iter()
                .map(|u| (user_name(&u), u))
                .collect(),
            roles: section
                .roles
                .into_iter()
                .map(|r| (String::from_utf8_lossy(&r.name).into_owned(), r))
                .collect(),
            permissions: HashMap::new(),
        };
        store.derive_permissions();
        Ok(store)
    }

    fn derive_permissions(&mut self) {
        let mut permissions = HashMap::with_capacity(self.users.len());
        for (name, user) in &self.users {
            let roles: Vec<&authpb::Role> = user
                .roles
                .iter()
                .filter_map(|r| self.roles.get(r))
                .collect();
            let of_kind = |access: Access| {
                KeyRanges::from_permissions(
                    roles
                        .iter()
                        .flat_map(|role| role.key_permission.iter())
                        .filter(move |p| {
                            // A type etcd does not define grants nothing (etcd skips it).
                            let Ok(kind) = authpb::permission::Type::try_from(p.perm_type) else {
                                return false;
                            };
                            matches!(
                                (kind, access),
                                (authpb::permission::Type::Readwrite, _)
                                    | (authpb::permission::Type::Read, Access::Read)
                                    | (authpb::permission::Type::Write, Access::Write)
                            )
                        })
                        .map(|p| (p.key.as_slice(), p.range_end.as_slice())),
                )
            };
            permissions.insert(
                name.clone(),
                UserPermissions {
                    root: user.roles.iter().any(|r| r == ROOT_ROLE),
                    read: of_kind(Access::Read),
                    write: of_kind(Access::Write),
                },
            );
        }
        self.permissions = permissions;
    }

    fn committed(&mut self) {
        self.revision += 1;
        self.derive_permissions();
    }

    /// etcd's `isOpPermitted`: may `info` read or write the keys `key`..`range_end` (etcd's
    /// encoding of a key, a range or everything from a key)?
    pub fn check_keys(
        &self,
        info: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
        access: Access,
    ) -> Result<(), ServerError> {
        if !self.enabled {
            return Ok(());
        }
        if info.revision == 0 {
            return Err(ServerError::UserEmpty);
        }
        if info.revision < self.revision {
            return Err(ServerError::AuthOldRevision);
        }
        let Some(permissions) = self.permissions.get(&info.username) else {
            return Err(ServerError::PermissionDenied);
        };
        let ranges = match access {
            Access::Read => &permissions.read,
            Access::Write => &permissions.write,
        };
        if permissions.root || ranges.covers(key, range_end) {
            Ok(())
        } else {
            Err(ServerError::PermissionDenied)
        }
    }

    /// etcd's `checkPutAuth`: write access to the key; to every key already attached to the
    /// lease it joins; read access to the key when the previous value is asked for.
    pub fn check_put(
        &self,
        store: &Store,
        info: &AuthInfo,
        request: &pb::PutRequest,
    ) -> Result<(), ServerError> {
        self.check_keys(info, &request.key, &[], Access::Write)?;
        self.check_lease_puts(store, info, request.lease)?;
        if request.prev_kv {
            self.check_keys(info, &request.key, &[], Access::Read)?;
        }
        Ok(())
    }

    /// etcd's `checkLeasePuts`: an admin, or write access to every key attached to lease
    /// `id` (an unknown lease passes: the request fails on its own).
    pub fn check_lease_puts(
        &self,
        store: &Store,
        info: &AuthInfo,
        id: i64,
    ) -> Result<(), ServerError> {
        self.check_lease_keys(store, info, id, Access::Write)
    }

    /// An admin, or `access` to every key attached to lease `id` (an unknown lease passes).
    pub fn check_lease_keys(
        &self,
        store: &Store,
        info: &AuthInfo,
        id: i64,
        access: Access,
    ) -> Result<(), ServerError> {
        if id == 0 || !self.enabled || self.check_admin(info).is_ok() {
            return Ok(());
        }
        let Ok(lease) = store.lease_time_to_live(id, true) else {
            return Ok(());
        };
        lease
            .keys
            .iter()
            .try_for_each(|key| self.check_keys(info, key, &[], access))
    }

    /// etcd's `checkTxnAuth`: read access to every compared range, then every operation of
    /// both branches (nested txns included), whichever branch runs.
    pub fn check_txn(
        &self,
        store: &Store,
        info: &AuthInfo,
        txn: &pb::TxnRequest,
    ) -> Result<(), ServerError> {
        use pb::request_op::Request;
        for compare in &txn.compare {
            self.check_keys(info, &compare.key, &compare.range_end, Access::Read)?;
        }
        for op in txn.success.iter().chain(&txn.failure) {
            match &op.request {
                Some(Request::RequestRange(r)) => {
                    self.check_keys(info, &r.key, &r.range_end, Access::Read)?
                }
                Some(Request::RequestPut(r)) => self.check_put(store, info, r)?,
                Some(Request::RequestDeleteRange(r)) => {
                    if r.prev_kv {
                        self.check_keys(info, &r.key, &r.range_end, Access::Read)?;
                    }
                    self.check_keys(info, &r.key, &r.range_end, Access::Write)?
                }
                Some(Request::RequestTxn(inner)) => self.check_txn(store, info, inner)?,
                None => {}
            }
        }
        Ok(())
    }

    /// The check a command passes at apply for the user that sent it (etcd's auth applier):
    /// writes by key, lease revocation by the lease's keys, auth changes by the root role.
    pub fn check_command(
        &self,
        store: &Store,
        info: &AuthInfo,
        command: &Command,
    ) -> Result<(), ServerError> {
        if !self.enabled {
            return Ok(());
        }
        match command {
            Command::Put(r) => self.check_put(store, info, r),
            Command::DeleteRange(r) => {
                self.check_keys(info, &r.key, &r.range_end, Access::Write)?;
                if r.prev_kv {
                    self.check_keys(info, &r.key, &r.range_end, Access::Read)?;
                }
                Ok(())
            }
            Command::Txn(r) => self.check_txn(store, info, r),
            Command::LeaseRevoke(r) => self.check_lease_puts(store, info, r.id),
            Command::Auth(_) => self.check_admin(info),
            _ => Ok(()),
        }
    }

    /// etcd's `IsAdminPermitted`: is `info` a user with the root role?
    pub fn check_admin(&self, info: &AuthInfo) -> Result<(), ServerError> {
        if !self.enabled {
            return Ok(());
        }
        if info.username.is_empty() {
            return Err(ServerError::UserEmpty);
        }
        match self.permissions.get(&info.username) {
            None => Err(ServerError::UserNotFound),
            Some(p) if !p.root => Err(ServerError::PermissionDenied),
            Some(_) => Ok(()),
        }
    }

    /// Authenticate at apply: the user still exists and may log in with a password, checked
    /// before proposing at auth revision `checked_revision` (0: not said), which must still
    /// be the store's (else no token is handed out and the password is checked again).
    /// Returns the revision the token carries.
    pub fn authenticate(&self, name: &str, checked_revision: u64) -> Result<u64, ServerError> {
        if !self.enabled {
            return Err(ServerError::AuthNotEnabled);
        }
        if checked_revision != 0 && checked_revision != self.revision {
            return Err(ServerError::AuthOldRevision);
        }
        match self.users.get(name) {
            Some(user) if !no_password(user) => Ok(self.revision),
            _ => Err(ServerError::AuthFailed),
        }
    }

    /// The password hash to check a login against, and the revision it was read at: etcd's
    /// `CheckPassword` before the bcrypt comparison.
    pub fn password_hash(&self, name: &str) -> Result<(Vec<u8>, u64), ServerError> {
        if !self.enabled {
            return Err(ServerError::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(ServerError::AuthFailed)?;
        if no_password(user) {
            return Err(ServerError::NoPasswordUser);
        }
        Ok((user.password.clone(), self.revision))
    }

    /// Applies one change, with etcd's checks and errors.
    pub fn apply(&mut self, change: &AuthChange) -> Result<TokenEffect, ServerError> {
        match change {
            AuthChange::Enable => {
                if self.enabled {
                    return Ok(TokenEffect::None);
                }
                let root = self
                    .users
                    .get(ROOT_USER)
                    .ok_or(ServerError::RootUserNotExist)?;
                if !root.roles.iter().any(|r| r == ROOT_ROLE) {
                    return Err(ServerError::RootRoleNotExist);
                }
                self.enabled = true;
                Ok(TokenEffect::None)
            }
            AuthChange::Disable => {
                if !self.enabled {
                    return Ok(TokenEffect::None);
                }
                self.enabled = false;
                self.committed();
                Ok(TokenEffect::InvalidateAll)
            }
            AuthChange::UserAdd(r) => {
                if r.name.is_empty() {
                    return Err(ServerError::UserEmpty);
                }
                if self.users.contains_key(&r.name) {
                    return Err(ServerError::UserAlreadyExist);
                }
                let options = r.options.unwrap_or_default();
                let password = if options.no_password {
                    Vec::new()
                } else {
                    r.hashed_password.as_bytes().to_vec()
                };
                self.users.insert(
                    r.name.clone(),
                    authpb::User {
                        name: r.name.as_bytes().to_vec(),
                        password,
                        roles: Vec::new(),
                        options: Some(options),
                    },
                );
                self.committed();
                Ok(TokenEffect::None)
            }
            AuthChange::UserDelete(r) => {
                if self.enabled && r.name == ROOT_USER {
                    return Err(ServerError::InvalidAuthMgmt);
                }
                if self.users.remove(&r.name).is_none() {
                    return Err(ServerError::UserNotFound);
                }
                self.committed();
                Ok(TokenEffect::InvalidateUser(r.name.clone()))
            }
            AuthChange::UserChangePassword(r) => {
                let user = self
                    .users
                    .get_mut(&r.name)
                    .ok_or(ServerError::UserNotFound)?;
                // A user without a password keeps none (etcd ignores the one given); an
                // empty new password leaves a hash no login matches.
                if !no_password(user) {
                    user.password = r.hashed_password.as_bytes().to_vec();
                }
                self.committed();
                Ok(TokenEffect::InvalidateUser(r.name.clone()))
            }
            AuthChange::UserGrantRole(r) => {
                if !self.users.contains_key(&r.user) {
                    return Err(ServerError::UserNotFound);
                }
                if r.role != ROOT_ROLE && !self.roles.contains_key(&r.role) {
                    return Err(ServerError::RoleNotFound);
                }
                let user = self.users.get_mut(&r.user).expect("checked above");
                match user.roles.binary_search(&r.role) {
                    // etcd ignores a role granted twice.
                    Ok(_) => return Ok(TokenEffect::None),
                    Err(at) => user.roles.insert(at, r.role.clone()),
                }
                self.committed();
                Ok(TokenEffect::None)
            }
            AuthChange::UserRevokeRole(r) => {
                if self.enabled && r.name == ROOT_USER && r.role == ROOT_ROLE {
                    return Err(ServerError::InvalidAuthMgmt);
                }
                let user = self
                    .users
                    .get_mut(&r.name)
                    .ok_or(ServerError::UserNotFound)?;
                let before = user.roles.len();
                user.roles.retain(|role| *role != r.role);
                if user.roles.len() == before {
                    return Err(ServerError::RoleNotGranted);
                }
                self.committed();
                Ok(TokenEffect::None)
            }
            AuthChange::RoleAdd(r) => {
                if r.name.is_empty() {
                    return Err(ServerError::RoleEmpty);
                }
                if self.roles.contains_key(&r.name) {
                    return Err(ServerError::RoleAlreadyExist);
                }
                self.roles.insert(
                    r.name.clone(),
                    authpb::Role {
                        name: r.name.as_bytes().to_vec(),
                        key_permission: Vec::new(),
                    },
                );
                self.committed();
                Ok(TokenEffect::None)
            }
            AuthChange::RoleDelete(r) => {
                if self.enabled && r.role == ROOT_ROLE {
                    return Err(ServerError::InvalidAuthMgmt);
                }
                if self.roles.remove(&r.role).is_none() {
                    return Err(ServerError::RoleNotFound);
                }
                for user in self.users.values_mut() {
                    user.roles.retain(|role| *role != r.role);
                }
                self.committed();
                Ok(TokenEffect::None)
            }
            AuthChange::RoleGrantPermission(r) => {
                let perm = r.perm.clone().ok_or(ServerError::PermissionNotGiven)?;
                if !valid_permission_range(&perm.key, &perm.range_end) {
                    return Err(ServerError::InvalidAuthMgmt);
                }
                let role = self
                    .roles
                    .get_mut(&r.name)
                    .ok_or(ServerError::RoleNotFound)?;
                // As etcd: the first permission at or after the key is updated in place when
                // it names the same range; otherwise the new one joins, in key order.
                let at = role
                    .key_permission
                    .partition_point(|p| p.key.as_slice() < perm.key.as_slice());
                match role.key_permission.get_mut(at) {
                    Some(p) if p.key == perm.key && p.range_end == perm.range_end => {
                        p.perm_type = perm.perm_type
                    }
                    _ => {
                        role.key_permission.push(perm);
                        role.key_permission.sort_by(|a, b| a.key.cmp(&b.key));
                    }
                }
                self.committed();
                Ok(TokenEffect::None)
            }
            AuthChange::RoleRevokePermission(r) => {
                let role = self
                    .roles
                    .get_mut(&r.role)
                    .ok_or(ServerError::RoleNotFound)?;
                let before = role.key_permission.len();
                role.key_permission
                    .retain(|p| !(p.key == r.key && p.range_end == r.range_end));
                if role.key_permission.len() == before {
                    return Err(ServerError::PermissionNotGranted);
                }
                self.committed();
                Ok(TokenEffect::None)
            }
        }
    }

    /// RoleGet's permissions: the role's own, as stored (the root role's powers are implied,
    /// not listed).
    pub fn role_permissions(&self, name: &str) -> Result<Vec<authpb::Permission>, ServerError> {
        let role = self.roles.get(name).ok_or(ServerError::RoleNotFound)?;
        Ok(role.key_permission.clone())
    }

    /// True when user `name` has role `role` (a user may read its own roles).
    pub fn has_role(&self, name: &str, role: &str) -> bool {
        self.users
            .get(name)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }
}

fn no_password(user: &authpb::User) -> bool {
    user.options.is_some_and(|o| o.no_password)
}

/// A shared, copy-on-write auth state.
pub type AuthRef = Arc<AuthStore>;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user_add(name: &str) -> AuthChange {
        AuthChange::UserAdd(pb::AuthUserAddRequest {
            name: name.into(),
            hashed_password: "hash".into(),
            ..Default::default()
        })
    }

    fn grant_role(user: &str, role: &str) -> AuthChange {
        AuthChange::UserGrantRole(pb::AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        })
    }

    fn grant(role: &str, kind: authpb::permission::Type, key: &[u8], end: &[u8]) -> AuthChange {
        AuthChange::RoleGrantPermission(pb::AuthRoleGrantPermissionRequest {
            name: role.into(),
            perm: Some(authpb::Permission {
                perm_type: kind as i32,
                key: key.to_vec(),
                range_end: end.to_vec(),
            }),
        })
    }

    fn role_add(name: &str) -> AuthChange {
        AuthChange::RoleAdd(pb::AuthRoleAddRequest { name: name.into() })
    }

    /// A store with root enabled and user `u` holding role `r`.
    fn enabled_store() -> AuthStore {
        let mut store = AuthStore::default();
        for change in [
            user_add("root"),
            grant_role("root", "root"),
            user_add("u"),
            role_add("r"),
            grant_role("u", "r"),
            AuthChange::Enable,
        ] {
            store.apply(&change).unwrap();
        }
        store
    }

    fn info(store: &AuthStore, user: &str) -> AuthInfo {
        AuthInfo {
            username: user.into(),
            revision: store.revision(),
        }
    }

    #[test]
    fn enable_needs_root_with_the_root_role() {
        let mut store = AuthStore::default();
        assert_eq!(
            store.apply(&AuthChange::Enable),
            Err(ServerError::RootUserNotExist)
        );
        store.apply(&user_add("root")).unwrap();
        assert_eq!(
            store.apply(&AuthChange::Enable),
            Err(ServerError::RootRoleNotExist)
        );
        store.apply(&grant_role("root", "root")).unwrap();
        store.apply(&AuthChange::Enable).unwrap();
        assert!(store.enabled());
        assert_eq!(
            store.apply(&AuthChange::UserDelete(pb::AuthUserDeleteRequest {
                name: "root".into()
            })),
            Err(ServerError::InvalidAuthMgmt)
        );
        assert_eq!(
            store.apply(&AuthChange::UserRevokeRole(pb::AuthUserRevokeRoleRequest {
                name: "root".into(),
                role: "root".into()
            })),
            Err(ServerError::InvalidAuthMgmt)
        );
    }

    #[test]
    fn checks_follow_etcds_order() {
        let mut store = enabled_store();
        let u = info(&store, "u");
        assert_eq!(
            store.check_keys(&AuthInfo::default(), b"a", b"", Access::Read),
            Err(ServerError::UserEmpty)
        );
        assert_eq!(
            store.check_keys(&u, b"a", b"", Access::Read),
            Err(ServerError::PermissionDenied)
        );
        store
            .apply(&grant("r", authpb::permission::Type::Read, b"a", b"c"))
            .unwrap();
        // The grant raised the revision: the old credentials are stale.
        assert_eq!(
            store.check_keys(&u, b"a", b"", Access::Read),
            Err(ServerError::AuthOldRevision)
        );
        let u = info(&store, "u");
        assert_eq!(store.check_keys(&u, b"b", b"", Access::Read), Ok(()));
        assert_eq!(store.check_keys(&u, b"a", b"c", Access::Read), Ok(()));
        assert_eq!(
            store.check_keys(&u, b"a", b"d", Access::Read),
            Err(ServerError::PermissionDenied)
        );
        assert_eq!(
            store.check_keys(&u, b"b", b"", Access::Write),
            Err(ServerError::PermissionDenied)
        );
        assert_eq!(
            store.check_keys(&info(&store, "ghost"), b"b", b"", Access::Read),
            Err(ServerError::PermissionDenied)
        );
        assert_eq!(store.check_admin(&info(&store, "root")), Ok(()));
        assert_eq!(
            store.check_admin(&info(&store, "u")),
            Err(ServerError::PermissionDenied)
        );
        assert_eq!(
            store.check_admin(&info(&store, "ghost")),
            Err(ServerError::UserNotFound)
        );
        assert_eq!(
            store.check_keys(&info(&store, "root"), b"\0", b"\0", Access::Write),
            Ok(())
        );
        // Admin checks ignore the revision (etcd's IsAdminPermitted), key checks do not.
        let stale_root = AuthInfo {
            username: "root".into(),
            revision: 1,
        };
        assert_eq!(store.check_admin(&stale_root), Ok(()));
    }

    #[test]
    fn authenticate_refuses_a_stale_password_check_and_odd_types_grant_nothing() {
        let mut store = enabled_store();
        let checked = store.revision();
        assert_eq!(store.authenticate("u", checked), Ok(checked));
        store.apply(&role_add("other")).unwrap();
        assert_eq!(
            store.authenticate("u", checked),
            Err(ServerError::AuthOldRevision)
        );
        assert_eq!(store.authenticate("ghost", 0), Err(ServerError::AuthFailed));
        // A permission type etcd does not define is stored but grants nothing.
        store
            .apply(&AuthChange::RoleGrantPermission(
                pb::AuthRoleGrantPermissionRequest {
                    name: "r".into(),
                    perm: Some(authpb::Permission {
                        perm_type: 7,
                        key: b"k".to_vec(),
                        range_end: Vec::new(),
                    }),
                },
            ))
            .unwrap();
        assert_eq!(
            store.check_keys(&info(&store, "u"), b"k", b"", Access::Read),
            Err(ServerError::PermissionDenied)
        );
    }

    #[test]
    fn role_delete_takes_the_role_from_its_users() {
        let mut store = enabled_store();
        store
            .apply(&grant("r", authpb::permission::Type::Readwrite, b"k", b""))
            .unwrap();
        store
            .apply(&AuthChange::RoleDelete(pb::AuthRoleDeleteRequest {
                role: "r".into(),
            }))
            .unwrap();
        assert!(store.user("u").unwrap().roles.is_empty());
        assert_eq!(
            store.check_keys(&info(&store, "u"), b"k", b"", Access::Read),
            Err(ServerError::PermissionDenied)
        );
    }

    #[test]
    fn grants_replace_the_same_range_and_sort() {
        let mut store = enabled_store();
        assert_eq!(
            store.apply(&grant("r", authpb::permission::Type::Read, b"b", b"a")),
            Err(ServerError::InvalidAuthMgmt)
        );
        assert_eq!(
            store.apply(&grant("r", authpb::permission::Type::Read, b"", b"")),
            Err(ServerError::InvalidAuthMgmt)
        );
        for change in [
            grant("r", authpb::permission::Type::Read, b"b", b""),
            grant("r", authpb::permission::Type::Read, b"a", b"\0"),
            grant("r", authpb::permission::Type::Write, b"b", b""),
        ] {
            store.apply(&change).unwrap();
        }
        let perms = store.role_permissions("r").unwrap();
        assert_eq!(perms.len(), 2);
        assert_eq!(perms[0].key, b"a");
        assert_eq!(perms[1].perm_type, authpb::permission::Type::Write as i32);
        let revoke = |key: &[u8], end: &[u8]| {
            AuthChange::RoleRevokePermission(pb::AuthRoleRevokePermissionRequest {
                role: "r".into(),
                key: key.to_vec(),
                range_end: end.to_vec(),
            })
        };
        assert_eq!(
            store.apply(&revoke(b"a", b"")),
            Err(ServerError::PermissionNotGranted)
        );
        store.apply(&revoke(b"a", b"\0")).unwrap();
    }

    #[test]
    fn the_section_round_trips() {
        let mut store = enabled_store();
        store
            .apply(&grant("r", authpb::permission::Type::Write, b"x", b"y"))
            .unwrap();
        let decoded = AuthStore::decode(&store.encode()).unwrap();
        assert_eq!(decoded, store);
        assert!(AuthStore::decode(&[0xff, 0xff]).is_err());
    }

    /// Keys of at most 3 bytes over {0, 'a', 'b'}: every permission end below (keys of at
    /// most 2 bytes, and a key followed by 0) is among them, so a gap in a union of
    /// permissions always begins at one of them and checking these keys is exact.
    fn universe() -> Vec<Vec<u8>> {
        let alphabet = [0u8, b'a', b'b'];
        let mut keys = vec![Vec::new()];
        let mut last = vec![Vec::new()];
        for _ in 0..3 {
            let next: Vec<Vec<u8>> = last
                .iter()
                .flat_map(|k: &Vec<u8>| {
                    alphabet.iter().map(move |c| {
                        let mut k = k.clone();
                        k.push(*c);
                        k
                    })
                })
                .collect();
            keys.extend(next.iter().cloned());
            last = next;
        }
        keys.sort();
        keys
    }

    /// The model: a key is allowed when one permission of the kind holds it.
    fn model_holds(perms: &[(u8, Vec<u8>, Vec<u8>)], access: Access, key: &[u8]) -> bool {
        perms.iter().any(|(kind, pkey, pend)| {
            let kind_ok = match access {
                Access::Read => *kind != 1,
                Access::Write => *kind != 0,
            };
            let holds = if pend.is_empty() {
                key == pkey.as_slice()
            } else if pend == &[0] {
                key >= pkey.as_slice()
            } else {
                key >= pkey.as_slice() && key < pend.as_slice()
            };
            kind_ok && holds
        })
    }

    fn short_key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(vec![0u8, b'a', b'b']), 1..=2)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// No range edge case lets a read or write through: the merged check agrees with the
        /// model on every key of a request, for random roles and requests.
        #[test]
        fn range_checks_agree_with_the_model(
            perms in prop::collection::vec((0u8..3, short_key(), prop::sample::select(vec![
                Vec::new(), vec![0], b"a".to_vec(), b"b".to_vec(), b"ab".to_vec(), b"b\0".to_vec(),
                b"ba".to_vec(), vec![0, 0],
            ])), 0..5),
            split in 0usize..5,
            key in short_key(),
            end in prop::sample::select(vec![
                Vec::new(), vec![0], b"a".to_vec(), b"b".to_vec(), b"aa".to_vec(),
                b"b\0".to_vec(), b"bb".to_vec(), vec![0, 0], b"a\0".to_vec(),
            ]),
            write in any::<bool>(),
        ) {
            let mut store = enabled_store();
            store.apply(&role_add("r2")).unwrap();
            store.apply(&grant_role("u", "r2")).unwrap();
            for (i, (kind, pkey, pend)) in perms.iter().enumerate() {
                let role = if i < split { "r" } else { "r2" };
                let kind = authpb::permission::Type::try_from(*kind as i32).unwrap();
                let granted = store.apply(&grant(role, kind, pkey, pend));
                // etcd refuses a range that ends at or before its key.
                let valid = pend.is_empty() || pend == &[0] || pkey < pend;
                prop_assert_eq!(granted.is_ok(), valid);
            }
            let access = if write { Access::Write } else { Access::Read };
            // The stored permissions (a grant of the same range replaced the earlier one).
            let stored: Vec<(u8, Vec<u8>, Vec<u8>)> = ["r", "r2"]
                .iter()
                .flat_map(|r| store.role_permissions(r).unwrap())
                .map(|p| (p.perm_type as u8, p.key, p.range_end))
                .collect();
            let wanted: Vec<Vec<u8>> = if end.is_empty() {
                vec![key.clone()]
            } else {
                universe()
                    .into_iter()
                    .filter(|k| {
                        k.as_slice() >= key.as_slice()
                            && (end == [0] || k.as_slice() < end.as_slice())
                    })
                    .collect()
            };
            let expected = if wanted.is_empty() {
                // A range with no key in it is checked as its key alone.
                model_holds(&stored, access, &key)
            } else {
                wanted.iter().all(|k| model_holds(&stored, access, k))
            };
            let got = store.check_keys(&info(&store, "u"), &key, &end, access).is_ok();
            prop_assert_eq!(got, expected, "stored {:?} key {:?} end {:?}", stored, key, end);
        }
    }
}
