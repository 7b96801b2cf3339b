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
    /// Every format's name, as `-w` takes it.
    pub const NAMES: &'static [&'static str] = &["simple", "json", "protobuf", "table", "fields"];

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

/// The flags every command takes (etcdctl's persistent flags on its root command), with
/// etcdctl's usage texts. Each may also come from the environment as `ETCDCTL_<FLAG>` (upper
/// case, dashes as underscores); `cobra.rs` applies the variables as etcdctl does.
#[derive(Args, Clone, Debug)]
pub struct Global {
    /// gRPC endpoints
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// dial timeout for client connections
    #[arg(long, global = true, default_value = "2s", value_parser = parse_duration)]
    pub dial_timeout: Duration,
    /// timeout for short running command (excluding dial timeout)
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    pub command_timeout: Duration,
    /// keepalive time for client connections
    #[arg(long, global = true, default_value = "2s", value_parser = parse_duration)]
    pub keepalive_time: Duration,
    /// keepalive timeout for client connections
    #[arg(long, global = true, default_value = "6s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,
    /// disable transport security for client connections
    #[arg(long, global = true, default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set,
          value_parser = parse_bool)]
    pub insecure_transport: bool,
    /// accept insecure SRV records describing cluster endpoints
    #[arg(long, global = true, default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set,
          value_parser = parse_bool)]
    pub insecure_discovery: bool,
    /// skip server certificate verification (CAUTION: this option should be enabled only for
    /// testing purposes)
    #[arg(long, global = true, default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set,
          value_parser = parse_bool)]
    pub insecure_skip_tls_verify: bool,
    /// verify certificates of TLS-enabled secure servers using this CA bundle
    #[arg(long, global = true)]
    pub cacert: Option<PathBuf>,
    /// identify secure client using this TLS certificate file
    #[arg(long, global = true)]
    pub cert: Option<PathBuf>,
    /// identify secure client using this TLS key file
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// password for authentication (if this option is used, --user option shouldn't include
    /// password)
    #[arg(long, global = true)]
    pub password: Option<String>,
    /// domain name to query for SRV records describing cluster endpoints
    #[arg(short = 'd', long, global = true)]
    pub discovery_srv: Option<String>,
    /// service name to query when using DNS discovery
    #[arg(long, global = true)]
    pub discovery_srv_name: Option<String>,
    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        value_enum,
        default_value = "simple"
    )]
    pub write_out: Format,
    /// print byte strings as hex encoded strings
    #[arg(long, global = true, default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set,
          value_parser = parse_bool)]
    pub hex: bool,
    /// enable client-side debug logging
    #[arg(long, global = true, default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set,
          value_parser = parse_bool)]
    pub debug: bool,
    /// The global flags given on the command line (pflag's "changed"), by long name.
    #[arg(skip)]
    pub given: Vec<String>,
    /// With `--debug`: the `ETCDCTL_<FLAG>=<value>` lines etcdctl prints to stderr when it
    /// makes its client.
    #[arg(skip)]
    pub debug_lines: Vec<String>,
    /// A `-w` value no printer has: etcdctl accepts any text and fails with `unsupported
    /// output format` (exit 4) when it makes its client.
    #[arg(skip)]
    pub unsupported_write_out: Option<String>,
}

impl Global {
    /// Whether the flag `long` was given on the command line.
    pub fn was_given(&self, long: &str) -> bool {
        self.given.iter().any(|g| g == long)
    }
}

/// Go's `time.Duration.String()`: "2s", "1m30s", "1h0m0s", "1.5s", "500ms", "0s".
pub fn go_duration(duration: Duration) -> String {
    fn with_fraction(value: u128, unit: u128) -> String {
        let whole = value / unit;
        let fraction = value % unit;
        if fraction == 0 {
            return whole.to_string();
        }
        let digits = unit.ilog10() as usize;
        let fraction = format!("{fraction:0digits$}");
        format!("{whole}.{}", fraction.trim_end_matches('0'))
    }
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", with_fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", with_fraction(nanos, 1_000_000));
    }
    let seconds = nanos / 1_000_000_000;
    let (hours, minutes) = (seconds / 3600, seconds % 3600 / 60);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    let rest = nanos - (hours * 3600 + minutes * 60) * 1_000_000_000;
    out.push_str(&format!("{}s", with_fraction(rest, 1_000_000_000)));
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
    fn durations_print_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(2)), "2s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }
}
