//! The Auth service, and who sends each request.
//!
//! A request names its user with an auth token (gRPC metadata `token`, or `authorization`,
//! optionally `Bearer `-prefixed) from Authenticate, or, with `--client-cert-auth`, with the
//! common name of its verified client certificate ([`Credentials`]). The server core resolves
//! them to an [`AuthInfo`] ([`crate::server::state::Shared::caller`]); the services check
//! reads here and hand writes to the log with their user, so that apply checks them.
//!
//! Passwords are hashed and checked (bcrypt) on a thread of their own: never on a front
//! core's executor, never on the raft core. Only the hash goes through the log.

use keel_proto::authpb;
use keel_proto::etcdserverpb as pb;
use keel_proto::etcdserverpb::auth_server::Auth;
use tonic::{Request, Response, Status};

use crate::net::ClientCommonName;
use crate::server::auth::{AuthChange, AuthInfo};
use crate::server::command::{AuthenticateBody, Command};
use crate::server::error::ServerError;
use crate::server::state::{Applied, Shared, SharedRef};
use crate::server::tokens::Tokens;

/// What a request carries to say who sends it.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    token: Option<String>,
    common_name: Option<ClientCommonName>,
}

impl Credentials {
    /// The token and certificate name of `request` (taken before any `.await`, so that the
    /// request itself is not held across one).
    pub fn of<T>(request: &Request<T>) -> Credentials {
        let metadata = request.metadata();
        // A token that is not text is a token no member issued (empty: invalid), never "no
        // token" (which would fall back to the certificate's name).
        let token = metadata
            .get("token")
            .or_else(|| metadata.get("authorization"))
            .map(|v| v.to_str().unwrap_or_default())
            .map(|t| t.strip_prefix("Bearer ").unwrap_or(t).to_string());
        Credentials {
            token,
            common_name: request.extensions().get::<ClientCommonName>().cloned(),
        }
    }

    /// The user sending the request; `None` while auth is disabled.
    pub async fn caller(&self, shared: &Shared) -> Result<Option<AuthInfo>, ServerError> {
        shared
            .caller(
                self.token.as_deref(),
                self.common_name.as_ref().map(|n| &*n.0),
            )
            .await
    }

    /// etcd's `requireAuthInfo`: while auth is enabled, the request must name a user.
    pub async fn require_user(&self, shared: &Shared) -> Result<Option<AuthInfo>, ServerError> {
        let user = self.caller(shared).await?;
        if user.as_ref().is_some_and(|u| u.username.is_empty()) {
            return Err(ServerError::UserEmpty);
        }
        Ok(user)
    }

    /// While auth is enabled, the request must come from a user with the root role.
    pub async fn require_admin(&self, shared: &Shared) -> Result<Option<AuthInfo>, ServerError> {
        let user = self.caller(shared).await?;
        if let Some(user) = &user {
            shared.auth().check_admin(user)?;
        }
        Ok(user)
    }
}

/// etcd's maintenance RPCs (Defragment, Snapshot, Hash, HashKV) return the auth store's own
/// error rather than the gRPC one: code `Unknown`, text `auth: ...`.
pub fn raw_auth_status(error: ServerError) -> Status {
    let text = match &error {
        ServerError::PermissionDenied
        | ServerError::UserEmpty
        | ServerError::UserNotFound
        | ServerError::InvalidAuthToken
        | ServerError::AuthOldRevision => error.to_string().replacen("etcdserver: ", "auth: ", 1),
        _ => return error.into(),
    };
    Status::unknown(text)
}

/// Password checks and hashes (bcrypt, tens of milliseconds each) waiting for a thread, at
/// most; beyond that a request is refused with `etcdserver: too many requests`.
pub const BCRYPT_QUEUE_MAX: usize = 256;

type BcryptJob = Box<dyn FnOnce() + Send>;

/// The queue of the bcrypt threads: as many threads as cores (at least 2), started on first
/// use and shared by every front core, so that a flood of logins costs a bounded number of
/// threads and never blocks an executor.
fn bcrypt_queue() -> &'static async_channel::Sender<BcryptJob> {
    static QUEUE: std::sync::OnceLock<async_channel::Sender<BcryptJob>> =
        std::sync::OnceLock::new();
    QUEUE.get_or_init(|| {
        let (jobs, queue) = async_channel::bounded::<BcryptJob>(BCRYPT_QUEUE_MAX);
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        for i in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("keel-bcrypt-{i}"))
                .spawn(move || {
                    while let Ok(job) = queue.recv_blocking() {
                        job();
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "starting a bcrypt thread failed");
            }
        }
        jobs
    })
}

/// Runs `work` (a bcrypt hash or check) on a bcrypt thread.
async fn off_core<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServerError> {
    let (done, result) = futures::channel::oneshot::channel();
    let job: BcryptJob = Box::new(move || {
        let _ = done.send(work());
    });
    bcrypt_queue()
        .try_send(job)
        .map_err(|_| ServerError::TooManyRequests)?;
    result.await.map_err(|_| ServerError::TooManyRequests)
}

/// The bcrypt hash of `password` at the member's cost.
async fn hash_password(shared: &Shared, password: String) -> Result<String, Status> {
    let cost = shared.bcrypt_cost;
    off_core(move || bcrypt::hash(password, cost))
        .await?
        .map_err(|e| Status::internal(format!("etcdserver: hashing the password failed: {e}")))
}

/// The Auth service.
pub struct AuthService {
    shared: SharedRef,
}

impl AuthService {
    /// A service over `shared`.
    pub fn new(shared: SharedRef) -> AuthService {
        AuthService { shared }
    }

    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        self.shared.header().at(revision)
    }

    /// Proposes an auth change on behalf of the caller (apply checks the root role) and
    /// answers with the header of the result.
    async fn change<T>(
        &self,
        request: &Request<T>,
        change: AuthChange,
    ) -> Result<Option<pb::ResponseHeader>, Status> {
        let credentials = Credentials::of(request);
        self.change_as(credentials, change).await
    }

    async fn change_as(
        &self,
        credentials: Credentials,
        change: AuthChange,
    ) -> Result<Option<pb::ResponseHeader>, Status> {
        self.shared.refuse_if_learner()?;
        let user = credentials.caller(&self.shared).await?;
        match self.shared.propose_as(user, Command::Auth(change)).await? {
            Applied::Auth { revision } => Ok(self.header(revision)),
            other => Err(Status::internal(format!(
                "etcdserver: unexpected apply result {other:?}"
            ))),
        }
    }

    /// For the auth reads (status, gets, lists): a linearizable view, and the caller, who
    /// must be an admin unless `allowed_anyway` says otherwise.
    async fn reader<T>(
        &self,
        request: &Request<T>,
        allowed_anyway: impl FnOnce(&crate::server::auth::AuthStore, &AuthInfo) -> bool,
    ) -> Result<crate::server::auth::AuthRef, Status> {
        self.shared.refuse_if_learner()?;
        let credentials = Credentials::of(request);
        self.shared.linearizable_barrier().await?;
        let user = credentials.caller(&self.shared).await?;
        let auth = self.shared.auth();
        if let Some(user) = user {
            if let Err(error) = auth.check_admin(&user) {
                if !allowed_anyway(&auth, &user) {
                    return Err(error.into());
                }
            }
        }
        Ok(auth)
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: Request<pb::AuthEnableRequest>,
    ) -> Result<Response<pb::AuthEnableResponse>, Status> {
        let header = self.change(&request, AuthChange::Enable).await?;
        Ok(Response::new(pb::AuthEnableResponse { header }))
    }

    async fn auth_disable(
        &self,
        request: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        let header = self.change(&request, AuthChange::Disable).await?;
        Ok(Response::new(pb::AuthDisableResponse { header }))
    }

    async fn auth_status(
        &self,
        request: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        let auth = self.reader(&request, |_, _| false).await?;
        Ok(Response::new(pb::AuthStatusResponse {
            header: self.header(self.shared.current_revision()),
            enabled: auth.enabled(),
            auth_revision: auth.revision(),
        }))
    }

    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        self.shared.refuse_if_learner()?;
        let request = request.into_inner();
        self.shared.linearizable_barrier().await?;
        loop {
            // etcd's CheckPassword: the hash as of an auth revision, compared off the core.
            let (hash, checked_revision) = self.shared.auth().password_hash(&request.name)?;
            let password = request.password.clone();
            let matches = off_core(move || {
                bcrypt::verify(password, &String::from_utf8_lossy(&hash)).unwrap_or(false)
            })
            .await?;
            if !matches {
                tracing::info!(user = %request.name, "authentication failed: invalid password");
                return Err(ServerError::AuthFailed.into());
            }
            let command = Command::Authenticate(AuthenticateBody {
                name: request.name.clone(),
                simple_token: Tokens::new_prefix(),
                checked_revision,
            });
            let applied = match self.shared.propose(command).await {
                // Users or roles changed between the password check and the entry: apply
                // handed out no token; check the password again.
                Err(ServerError::AuthOldRevision) => {
                    tracing::info!("revision when password checked became stale; retrying");
                    continue;
                }
                other => other?,
            };
            let Applied::Authenticated {
                username,
                auth_revision,
                token,
                revision,
            } = applied
            else {
                return Err(Status::internal("etcdserver: unexpected apply result"));
            };
            let token = match token {
                Some(token) => token,
                None => self.shared.tokens.sign_jwt(&username, auth_revision)?,
            };
            return Ok(Response::new(pb::AuthenticateResponse {
                header: self.header(revision),
                token,
            }));
        }
    }

    async fn user_add(
        &self,
        request: Request<pb::AuthUserAddRequest>,
    ) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        let credentials = Credentials::of(&request);
        let mut request = request.into_inner();
        // Only an admin may make a user hash a password (apply checks again).
        credentials.require_admin(&self.shared).await?;
        if !request.options.is_some_and(|o| o.no_password) {
            let password = std::mem::take(&mut request.password);
            request.hashed_password = hash_password(&self.shared, password).await?;
        } else {
            request.password.clear();
            request.hashed_password.clear();
        }
        let header = self
            .change_as(credentials, AuthChange::UserAdd(request))
            .await?;
        Ok(Response::new(pb::AuthUserAddResponse { header }))
    }

    async fn user_get(
        &self,
        request: Request<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        let name = request.get_ref().name.clone();
        let auth = self
            .reader(&request, |_, user| user.username == name)
            .await?;
        let user = auth
            .user(&request.get_ref().name)
            .ok_or(ServerError::UserNotFound)?;
        Ok(Response::new(pb::AuthUserGetResponse {
            header: self.header(self.shared.current_revision()),
            roles: user.roles.clone(),
        }))
    }

    async fn user_list(
        &self,
        request: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        let auth = self.reader(&request, |_, _| false).await?;
        Ok(Response::new(pb::AuthUserListResponse {
            header: self.header(self.shared.current_revision()),
            users: auth.user_names(),
        }))
    }

    async fn user_delete(
        &self,
        request: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        let change = AuthChange::UserDelete(request.get_ref().clone());
        let header = self.change(&request, change).await?;
        Ok(Response::new(pb::AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        request: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        let credentials = Credentials::of(&request);
        let mut request = request.into_inner();
        credentials.require_admin(&self.shared).await?;
        let password = std::mem::take(&mut request.password);
        // etcd hashes only a non-empty password; an empty one leaves a hash no login matches.
        request.hashed_password = if password.is_empty() {
            String::new()
        } else {
            hash_password(&self.shared, password).await?
        };
        let header = self
            .change_as(credentials, AuthChange::UserChangePassword(request))
            .await?;
        Ok(Response::new(pb::AuthUserChangePasswordResponse { header }))
    }

    async fn user_grant_role(
        &self,
        request: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        let change = AuthChange::UserGrantRole(request.get_ref().clone());
        let header = self.change(&request, change).await?;
        Ok(Response::new(pb::AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        request: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        let change = AuthChange::UserRevokeRole(request.get_ref().clone());
        let header = self.change(&request, change).await?;
        Ok(Response::new(pb::AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(
        &self,
        request: Request<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        let change = AuthChange::RoleAdd(request.get_ref().clone());
        let header = self.change(&request, change).await?;
        Ok(Response::new(pb::AuthRoleAddResponse { header }))
    }

    async fn role_get(
        &self,
        request: Request<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        let role = request.get_ref().role.clone();
        let auth = self
            .reader(&request, |auth, user| auth.has_role(&user.username, &role))
            .await?;
        let perm: Vec<authpb::Permission> = auth.role_permissions(&request.get_ref().role)?;
        Ok(Response::new(pb::AuthRoleGetResponse {
            header: self.header(self.shared.current_revision()),
            perm,
        }))
    }

    async fn role_list(
        &self,
        request: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        let auth = self.reader(&request, |_, _| false).await?;
        Ok(Response::new(pb::AuthRoleListResponse {
            header: self.header(self.shared.current_revision()),
            roles: auth.role_names(),
        }))
    }

    async fn role_delete(
        &self,
        request: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        let change = AuthChange::RoleDelete(request.get_ref().clone());
        let header = self.change(&request, change).await?;
        Ok(Response::new(pb::AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        request: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        let change = AuthChange::RoleGrantPermission(request.get_ref().clone());
        let header = self.change(&request, change).await?;
        Ok(Response::new(pb::AuthRoleGrantPermissionResponse {
            header,
        }))
    }

    async fn role_revoke_permission(
        &self,
        request: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        let change = AuthChange::RoleRevokePermission(request.get_ref().clone());
        let header = self.change(&request, change).await?;
        Ok(Response::new(pb::AuthRoleRevokePermissionResponse {
            header,
        }))
    }
}
