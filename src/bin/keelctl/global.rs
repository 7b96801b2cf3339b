//! etcdctl's global flags, their `ETCDCTL_*` environment variables, and Go's duration syntax.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// The output formats of `-w/--write-out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable lines (the default).
    Simple,
    /// The response as JSON (Go's encoding of etcd's protobuf messages).
    Json,
    /// The response as protobuf bytes.
    Protobuf,
    /// A table (member list, endpoint status/health/hashkv, snapshot status).
    Table,
    /// `"Field" : value` lines.
    Fields,
}

impl Format {
    /// The name etcdctl uses in its messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Protobuf => "protobuf",
            Format::Table => "table",
            Format::Fields => "fields",
        }
    }
}

/// The flags every command takes. Each may also come from the environment as
/// `ETCDCTL_<FLAG>` (upper case, dashes as underscores), as etcdctl reads them; a flag given
/// on the command line wins over its variable.
#[derive(Args, Clone, Debug)]
pub struct Global {
    /// gRPC endpoints (host:port or URLs, comma-separated).
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// Dial timeout for client connections.
    #[arg(long, global = true, default_value = "2s", value_parser = parse_duration)]
    pub dial_timeout: Duration,
    /// Timeout for short running commands (excluding dial timeout).
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    pub command_timeout: Duration,
    /// Keepalive time for client connections.
    #[arg(long, global = true, default_value = "2s", value_parser = parse_duration)]
    pub keepalive_time: Duration,
    /// Keepalive timeout for client connections.
    #[arg(long, global = true, default_value = "6s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,
    /// Disable transport security for client connections.
    #[arg(long, global = true, default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set,
          value_parser = parse_bool)]
    pub insecure_transport: bool,
    /// Accept any certificates during discovery.
    #[arg(long, global = true, default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set,
          value_parser = parse_bool)]
    pub insecure_discovery: bool,
    /// Skip server certificate verification (CAUTION: this option should be enabled only for
    /// testing purposes).
    #[arg(long, global = true, default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set,
          value_parser = parse_bool)]
    pub insecure_skip_tls_verify: bool,
    /// Verify certificates of TLS-enabled secure servers using this CA bundle.
    #[arg(long, global = true)]
    pub cacert: Option<PathBuf>,
    /// Identify secure client using this TLS certificate file.
    #[arg(long, global = true)]
    pub cert: Option<PathBuf>,
    /// Identify secure client using this TLS key file.
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    /// username[:password] for authentication (prompt if password is not supplied).
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// Password for authentication (if this option is used, --user option shouldn't include
    /// password).
    #[arg(long, global = true)]
    pub password: Option<String>,
    /// Domain name to query for SRV records describing cluster endpoints.
    #[arg(short = 'd', long, global = true)]
    pub discovery_srv: Option<String>,
    /// Service name to query when using DNS discovery.
    #[arg(long, global = true)]
    pub discovery_srv_name: Option<String>,
    /// Set the output format (fields, json, protobuf, simple, table).
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        value_enum,
        default_value = "simple"
    )]
    pub write_out: Format,
    /// Print byte strings as hex encoded strings.
    #[arg(long, global = true, default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set,
          value_parser = parse_bool)]
    pub hex: bool,
    /// Enable client-side debug logging.
    #[arg(long, global = true, default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set,
          value_parser = parse_bool)]
    pub debug: bool,
}

/// The global flags' long names, for reading `ETCDCTL_*` variables.
pub const GLOBAL_FLAGS: &[&str] = &[
    "endpoints",
    "dial-timeout",
    "command-timeout",
    "keepalive-time",
    "keepalive-timeout",
    "insecure-transport",
    "insecure-discovery",
    "insecure-skip-tls-verify",
    "cacert",
    "cert",
    "key",
    "user",
    "password",
    "discovery-srv",
    "discovery-srv-name",
    "write-out",
    "hex",
    "debug",
];

/// The command line with every global flag that is not on it but is set in the environment
/// (`ETCDCTL_<FLAG>`) added after the program name, as etcdctl applies its variables. A flag
/// that is on the command line and also in the environment keeps the command line's value,
/// with etcdctl's warning on stderr.
pub fn args_with_env(
    args: Vec<String>,
    env: impl Iterator<Item = (String, String)>,
) -> Vec<String> {
    let env: Vec<(String, String)> = env.collect();
    let mut out = Vec::with_capacity(args.len() + 4);
    let mut args = args.into_iter();
    out.extend(args.next());
    let rest: Vec<String> = args.collect();
    // Arguments after "--" (an exec command line) are not flags of ours.
    let flags_end = rest.iter().position(|a| a == "--").unwrap_or(rest.len());
    for flag in GLOBAL_FLAGS {
        let var = format!("ETCDCTL_{}", flag.to_uppercase().replace('-', "_"));
        let Some((_, value)) = env.iter().find(|(k, _)| *k == var) else {
            continue;
        };
        let long = format!("--{flag}");
        let given = rest[..flags_end].iter().any(|a| {
            a == &long
                || a.starts_with(&format!("{long}="))
                || (*flag == "write-out" && (a == "-w" || a.starts_with("-w")))
                || (*flag == "discovery-srv" && a == "-d")
        });
        if given {
            eprintln!(
                "{{\"level\":\"warn\",\"msg\":\"recognized environment variable {var}, but \
                 unused: shadowed by corresponding flag\"}}"
            );
            continue;
        }
        out.push(format!("{long}={value}"));
    }
    out.extend(rest);
    out
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {text:?}: invalid syntax"
        )),
    }
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units (ns, us, µs, ms, s, m,
/// h), as in "1.5s" or "2m30s"; "0" alone is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.starts_with('-') {
        return Err(invalid());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration {text:?}"))?;
        if number_len == 0 {
            return Err(invalid());
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => return Err(format!("time: unknown unit {unit:?} in duration {text:?}")),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_parses_them() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("3x").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn environment_fills_flags_the_command_line_leaves_out() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let env = vec![
            ("ETCDCTL_ENDPOINTS".to_string(), "a:1,b:2".to_string()),
            ("ETCDCTL_WRITE_OUT".to_string(), "json".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ];
        assert_eq!(
            args_with_env(args(&["keelctl", "get", "k"]), env.clone().into_iter()),
            args(&[
                "keelctl",
                "--endpoints=a:1,b:2",
                "--write-out=json",
                "get",
                "k"
            ])
        );
        assert_eq!(
            args_with_env(
                args(&["keelctl", "-w", "fields", "get", "k"]),
                env.into_iter()
            ),
            args(&["keelctl", "--endpoints=a:1,b:2", "-w", "fields", "get", "k"])
        );
    }
}
