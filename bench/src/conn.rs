//! Opening gRPC connections: endpoints, TLS, and picking the leader.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use keel_proto::etcdserverpb::auth_client::AuthClient;
use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_proto::etcdserverpb::{AuthenticateRequest, StatusRequest};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Adds the auth token (when `--user` was given) to every request, as etcd's clients do.
#[derive(Clone, Debug, Default)]
pub struct Token(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Token {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("token", token.clone());
        }
        Ok(request)
    }
}

/// A connection: an HTTP/2 channel whose requests carry the auth token, if any.
pub type Conn = InterceptedService<Channel, Token>;

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ConnSpec {
    /// Endpoint URLs, `http://host:port` (or `https://` with TLS).
    pub endpoints: Vec<String>,
    /// CA bundle (PEM) to verify servers with.
    pub cacert: Option<String>,
    /// Client certificate (PEM) for mutual TLS.
    pub cert: Option<String>,
    /// Client key (PEM) for mutual TLS.
    pub key: Option<String>,
    /// `name:password` to authenticate as (etcd auth); every request then carries the token.
    pub user: Option<String>,
}

impl ConnSpec {
    fn tls(&self) -> Result<Option<ClientTlsConfig>> {
        if self.cacert.is_none() && self.cert.is_none() && self.key.is_none() {
            return Ok(None);
        }
        let mut config = ClientTlsConfig::new();
        if let Some(path) = &self.cacert {
            let pem = std::fs::read(path).with_context(|| format!("reading --cacert {path}"))?;
            config = config.ca_certificate(Certificate::from_pem(pem));
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let cert_pem =
                    std::fs::read(cert).with_context(|| format!("reading --cert {cert}"))?;
                let key_pem = std::fs::read(key).with_context(|| format!("reading --key {key}"))?;
                config = config.identity(Identity::from_pem(cert_pem, key_pem));
            }
            (None, None) => {}
            _ => bail!("--cert and --key go together"),
        }
        Ok(Some(config))
    }

    /// Opens one HTTP/2 connection to `url`.
    pub async fn connect(&self, url: &str) -> Result<Channel> {
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .with_context(|| format!("bad endpoint {url}"))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if let Some(tls) = self.tls()? {
            endpoint = endpoint.tls_config(tls).context("TLS configuration")?;
        }
        endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to {url}"))
    }

    /// Asks each endpoint for its status and returns the one that is the leader.
    pub async fn find_leader(&self) -> Result<String> {
        for url in &self.endpoints {
            let Ok(channel) = self.connect(url).await else {
                continue;
            };
            let mut client = MaintenanceClient::new(channel);
            let Ok(response) = client.status(StatusRequest {}).await else {
                continue;
            };
            let status = response.into_inner();
            let member_id = status.header.as_ref().map(|h| h.member_id).unwrap_or(0);
            if status.leader != 0 && status.leader == member_id {
                return Ok(url.clone());
            }
        }
        bail!(
            "no endpoint of {:?} reports itself as the leader",
            self.endpoints
        )
    }

    /// Opens `conns` connections spread round-robin over the endpoints, or all to the leader
    /// when `target_leader` is set and there is more than one endpoint. Returns the channels
    /// and the endpoints actually used.
    pub async fn open(
        &self,
        conns: usize,
        target_leader: bool,
    ) -> Result<(Vec<Conn>, Vec<String>)> {
        if self.endpoints.is_empty() {
            bail!("no endpoints");
        }
        let used = if target_leader && self.endpoints.len() > 1 {
            vec![self.find_leader().await?]
        } else {
            self.endpoints.clone()
        };
        let mut channels = Vec::with_capacity(conns);
        for c in 0..conns.max(1) {
            channels.push(self.connect(&used[c % used.len()]).await?);
        }
        let token = match &self.user {
            Some(user) => Token(Some(self.authenticate(&channels[0], user).await?)),
            None => Token(None),
        };
        let conns = channels
            .into_iter()
            .map(|channel| InterceptedService::new(channel, token.clone()))
            .collect();
        Ok((conns, used))
    }

    /// A token for `user` (`name:password`), from Authenticate on `channel`.
    pub async fn authenticate(
        &self,
        channel: &Channel,
        user: &str,
    ) -> Result<MetadataValue<Ascii>> {
        let (name, password) = user.split_once(':').context("--user takes name:password")?;
        let token = AuthClient::new(channel.clone())
            .authenticate(AuthenticateRequest {
                name: name.into(),
                password: password.into(),
            })
            .await
            .with_context(|| format!("authenticating as {name}"))?
            .into_inner()
            .token;
        token.parse().context("the auth token is not ASCII")
    }
}
