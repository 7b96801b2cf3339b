//! Set-up for the secure comparison (perf/compare.sh --secure): certificates for TLS and
//! mutual TLS, and etcd auth with a benchmark user.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use keel_proto::authpb;
use keel_proto::etcdserverpb as pb;
use keel_proto::etcdserverpb::auth_client::AuthClient;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

use crate::Common;

/// Flags of `keel-bench certs`.
#[derive(Args, Debug)]
pub struct CertsArgs {
    /// Directory to write ca.pem, server.pem, server.key, client.pem and client.key to.
    #[arg(long)]
    pub dir: PathBuf,
}

/// Writes a CA and, signed by it, a certificate for 127.0.0.1/localhost usable by servers and
/// clients (client CN "bench").
pub fn certs(args: CertsArgs) -> Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let mut ca_params = CertificateParams::new(Vec::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "keel-bench CA");
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let write = |name: &str, text: &str| {
        let path = args.dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("ca.pem", &ca.pem())?;
    for (name, common_name) in [("server", "server"), ("client", "bench")] {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        write(&format!("{name}.pem"), &cert.pem())?;
        write(&format!("{name}.key"), &key.serialize_pem())?;
    }
    Ok(())
}

/// Flags of `keel-bench auth-setup`.
#[derive(Args, Debug)]
pub struct AuthSetupArgs {
    #[command(flatten)]
    pub common: Common,
    /// The benchmark user to create, name:password: it gets read-write access to every key
    /// through a role of its own (not the root role, so its requests are checked).
    #[arg(long, default_value = "bench:bench")]
    pub bench_user: String,
    /// The root user's password.
    #[arg(long, default_value = "root")]
    pub root_password: String,
}

/// Creates root (with the root role) and the benchmark user, then enables auth.
pub async fn auth_setup(args: AuthSetupArgs) -> Result<()> {
    let (channels, _) = args.common.open().await?;
    let mut auth = AuthClient::new(channels[0].clone());
    let (name, password) = args
        .bench_user
        .split_once(':')
        .context("--bench-user takes name:password")?;
    auth.user_add(pb::AuthUserAddRequest {
        name: "root".into(),
        password: args.root_password.clone(),
        ..Default::default()
    })
    .await?;
    auth.role_add(pb::AuthRoleAddRequest {
        name: "root".into(),
    })
    .await?;
    auth.user_grant_role(pb::AuthUserGrantRoleRequest {
        user: "root".into(),
        role: "root".into(),
    })
    .await?;
    auth.user_add(pb::AuthUserAddRequest {
        name: name.into(),
        password: password.into(),
        ..Default::default()
    })
    .await?;
    auth.role_add(pb::AuthRoleAddRequest { name: name.into() })
        .await?;
    // Every key from "\0" on: all the keys the workloads use.
    auth.role_grant_permission(pb::AuthRoleGrantPermissionRequest {
        name: name.into(),
        perm: Some(authpb::Permission {
            perm_type: authpb::permission::Type::Readwrite as i32,
            key: vec![0],
            range_end: vec![0],
        }),
    })
    .await?;
    auth.user_grant_role(pb::AuthUserGrantRoleRequest {
        user: name.into(),
        role: name.into(),
    })
    .await?;
    auth.auth_enable(pb::AuthEnableRequest {}).await?;
    Ok(())
}
