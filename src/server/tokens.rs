//! Auth tokens, as etcd's `--auth-token` chooses them.
//!
//! * `simple` (the default): a random 16-letter prefix and the raft index of the Authenticate
//!   entry that assigned it (`"xKqWpLmNbVcXzAsD.42"`). The token is assigned through the log,
//!   so every member knows it once it has applied that index; each member keeps its tokens in
//!   memory only (a restart forgets them, as etcd's). A token lives `--auth-token-ttl` seconds
//!   after its last use.
//! * `jwt,pub-key=F,priv-key=F,sign-method=M,ttl=D`: a signed JSON web token carrying the user
//!   name, the auth revision and an expiry; any member holding the public key verifies it.
//!   A member with only `pub-key` verifies tokens but cannot issue them.
//!
//! Deleting a user or changing their password voids their simple tokens; disabling auth voids
//! all of them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;

use crate::server::auth::AuthInfo;
use crate::server::error::ServerError;

/// `--auth-token-ttl`'s default, in seconds.
pub const SIMPLE_TOKEN_TTL_DEFAULT: u64 = 300;

/// A JWT token's lifetime when `ttl` is not given.
pub const JWT_TTL_DEFAULT: Duration = Duration::from_secs(5 * 60);

/// Letters of a simple token's prefix.
const SIMPLE_TOKEN_PREFIX_LEN: usize = 16;

/// `--auth-token` as parsed: which tokens the member hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSpec {
    /// `simple`.
    Simple,
    /// `jwt,...`.
    Jwt {
        /// `sign-method`.
        sign_method: String,
        /// `pub-key`: the file with the public key (or the secret for HS methods).
        pub_key: Option<String>,
        /// `priv-key`: the file with the private key (or the secret for HS methods).
        priv_key: Option<String>,
        /// `ttl`.
        ttl: Duration,
    },
}

/// Parses `--auth-token` as etcd does: `simple`, or `jwt` followed by comma-separated
/// `key=value` options.
pub fn parse_token_spec(flag: &str) -> Result<TokenSpec, String> {
    let mut parts = flag.split(',');
    let kind = parts.next().unwrap_or_default();
    match kind {
        "simple" => Ok(TokenSpec::Simple),
        "jwt" => {
            let (mut sign_method, mut pub_key, mut priv_key, mut ttl) =
                (None, None, None, JWT_TTL_DEFAULT);
            for option in parts {
                let (key, value) = option.split_once('=').ok_or_else(|| {
                    format!("invalid auth token option {option:?} (want key=value)")
                })?;
                match key {
                    "sign-method" => sign_method = Some(value.to_string()),
                    "pub-key" => pub_key = Some(value.to_string()),
                    "priv-key" => priv_key = Some(value.to_string()),
                    "ttl" => {
                        ttl = crate::config::parse_duration(value).ok_or_else(|| {
                            format!(
                            "invalid ttl {value:?} in --auth-token (want a duration such as 5m)"
                        )
                        })?
                    }
                    other => return Err(format!("unknown auth token option {other:?}")),
                }
            }
            let sign_method =
                sign_method.ok_or("jwt auth token needs a sign-method".to_string())?;
            algorithm(&sign_method)?;
            if pub_key.is_none() && priv_key.is_none() {
                return Err("jwt auth token needs pub-key or priv-key".into());
            }
            Ok(TokenSpec::Jwt {
                sign_method,
                pub_key,
                priv_key,
                ttl,
            })
        }
        other => Err(format!("unknown token type: {other}")),
    }
}

fn algorithm(sign_method: &str) -> Result<Algorithm, String> {
    Ok(match sign_method {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        other => return Err(format!("unsupported JWT sign-method {other:?}")),
    })
}

/// The claims of Keel's (and etcd's) JWT tokens.
#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

struct Jwt {
    algorithm: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    ttl: Duration,
}

/// Simple tokens: token -> (user, expiry), and the size at which expired ones are swept next
/// (so that a sweep costs amortized constant time per token handed out).
#[derive(Default)]
struct SimpleTable {
    tokens: HashMap<String, (String, Instant)>,
    sweep_at: usize,
}

enum Kind {
    Simple {
        table: Mutex<SimpleTable>,
        ttl: Duration,
    },
    Jwt(Box<Jwt>),
}

/// The member's token provider.
pub struct Tokens {
    kind: Kind,
}

impl Tokens {
    /// Simple tokens living `ttl` after their last use.
    pub fn simple(ttl: Duration) -> Tokens {
        Tokens {
            kind: Kind::Simple {
                table: Mutex::new(SimpleTable::default()),
                ttl,
            },
        }
    }

    /// The provider `spec` names, reading its key files; `simple_ttl` is `--auth-token-ttl`.
    pub fn from_spec(spec: &TokenSpec, simple_ttl: Duration) -> Result<Tokens, String> {
        let TokenSpec::Jwt {
            sign_method,
            pub_key,
            priv_key,
            ttl,
        } = spec
        else {
            return Ok(Tokens::simple(simple_ttl));
        };
        let algorithm = algorithm(sign_method)?;
        let read = |path: &str| {
            std::fs::read(path).map_err(|e| format!("reading JWT key file {path}: {e}"))
        };
        let bad = |path: &str, e: jsonwebtoken::errors::Error| {
            format!("JWT key file {path} does not hold a {sign_method} key: {e}")
        };
        let (encoding, decoding) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let path = priv_key.as_deref().or(pub_key.as_deref()).expect("parsed");
                let secret = read(path)?;
                (
                    Some(EncodingKey::from_secret(&secret)),
                    DecodingKey::from_secret(&secret),
                )
            }
            _ => {
                let encoding = match priv_key {
                    Some(path) => {
                        let pem = read(path)?;
                        Some(
                            match algorithm {
                                Algorithm::ES256 | Algorithm::ES384 => {
                                    EncodingKey::from_ec_pem(&pem)
                                }
                                Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
                                _ => EncodingKey::from_rsa_pem(&pem),
                            }
                            .map_err(|e| bad(path, e))?,
                        )
                    }
                    None => None,
                };
                let path = pub_key
                    .as_deref()
                    .ok_or("jwt auth token needs pub-key to verify tokens".to_string())?;
                let pem = read(path)?;
                let decoding = match algorithm {
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                    _ => DecodingKey::from_rsa_pem(&pem),
                }
                .map_err(|e| bad(path, e))?;
                (encoding, decoding)
            }
        };
        Ok(Tokens {
            kind: Kind::Jwt(Box::new(Jwt {
                algorithm,
                encoding,
                decoding,
                ttl: *ttl,
            })),
        })
    }

    /// True for simple tokens (assigned through the log).
    pub fn is_simple(&self) -> bool {
        matches!(self.kind, Kind::Simple { .. })
    }

    /// A fresh random prefix for a simple token.
    pub fn new_prefix() -> String {
        let mut rng = rand::thread_rng();
        (0..SIMPLE_TOKEN_PREFIX_LEN)
            .map(|_| {
                let letter = rng.gen_range(0..52u8);
                if letter < 26 {
                    (b'a' + letter) as char
                } else {
                    (b'A' + letter - 26) as char
                }
            })
            .collect()
    }

    /// Records simple token `token` for `user` (applying an Authenticate entry).
    pub fn assign_simple(&self, token: String, user: &str) {
        if let Kind::Simple { table, ttl } = &self.kind {
            let mut table = table.lock().expect("token lock");
            let now = Instant::now();
            // Expired tokens go whenever the table has doubled since the last sweep, so it
            // stays within twice the live tokens at a constant cost per token.
            if table.tokens.len() >= table.sweep_at {
                table.tokens.retain(|_, (_, deadline)| *deadline > now);
                table.sweep_at = 2 * table.tokens.len() + 64;
            }
            table.tokens.insert(token, (user.to_string(), now + *ttl));
        }
    }

    /// A signed JWT for `user` at auth `revision`.
    pub fn sign_jwt(&self, user: &str, revision: u64) -> Result<String, ServerError> {
        let Kind::Jwt(jwt) = &self.kind else {
            return Err(ServerError::AuthFailed);
        };
        let Some(key) = &jwt.encoding else {
            return Err(ServerError::TokenVerifyOnly);
        };
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(jwt.ttl)
            .as_secs();
        let claims = Claims {
            username: user.to_string(),
            revision,
            exp,
        };
        jsonwebtoken::encode(&Header::new(jwt.algorithm), &claims, key).map_err(|e| {
            tracing::warn!(error = %e, "signing a JWT failed");
            ServerError::AuthFailed
        })
    }

    /// The index of the Authenticate entry a simple token was assigned at (the member waits
    /// until it applied it before looking the token up, as etcd does).
    pub fn simple_token_index(&self, token: &str) -> Option<u64> {
        if !self.is_simple() {
            return None;
        }
        token.rsplit_once('.')?.1.parse().ok()
    }

    /// Who `token` belongs to. Simple tokens carry no revision: they are checked at the
    /// store's `current_revision` (and renewed); a JWT carries the revision it was issued at.
    pub fn info(&self, token: &str, current_revision: u64) -> Result<AuthInfo, ServerError> {
        match &self.kind {
            Kind::Simple { table, ttl } => {
                let mut table = table.lock().expect("token lock");
                let now = Instant::now();
                match table.tokens.get_mut(token) {
                    Some((user, deadline)) if *deadline > now => {
                        *deadline = now + *ttl;
                        Ok(AuthInfo {
                            username: user.clone(),
                            revision: current_revision,
                        })
                    }
                    _ => Err(ServerError::InvalidAuthToken),
                }
            }
            Kind::Jwt(jwt) => {
                let mut validation = Validation::new(jwt.algorithm);
                validation.leeway = 0;
                validation.set_required_spec_claims(&["exp"]);
                let data = jsonwebtoken::decode::<Claims>(token, &jwt.decoding, &validation)
                    .map_err(|_| ServerError::InvalidAuthToken)?;
                Ok(AuthInfo {
                    username: data.claims.username,
                    revision: data.claims.revision,
                })
            }
        }
    }

    /// Voids `user`'s simple tokens.
    pub fn invalidate_user(&self, user: &str) {
        if let Kind::Simple { table, .. } = &self.kind {
            table
                .lock()
                .expect("token lock")
                .tokens
                .retain(|_, (owner, _)| owner != user);
        }
    }

    /// Voids every simple token.
    pub fn invalidate_all(&self) {
        if let Kind::Simple { table, .. } = &self.kind {
            table.lock().expect("token lock").tokens.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_parses_as_etcds() {
        assert_eq!(parse_token_spec("simple"), Ok(TokenSpec::Simple));
        assert_eq!(
            parse_token_spec("jwt,pub-key=a.pub,priv-key=a,sign-method=RS256,ttl=10m"),
            Ok(TokenSpec::Jwt {
                sign_method: "RS256".into(),
                pub_key: Some("a.pub".into()),
                priv_key: Some("a".into()),
                ttl: Duration::from_secs(600),
            })
        );
        assert!(parse_token_spec("jwt,pub-key=a.pub").is_err());
        assert!(parse_token_spec("jwt,sign-method=XX,pub-key=a").is_err());
        assert!(parse_token_spec("jwt,sign-method=RS256,nonsense").is_err());
        assert!(parse_token_spec("magic").is_err());
    }

    #[test]
    fn simple_tokens_expire_and_are_voided() {
        let tokens = Tokens::simple(Duration::from_secs(60));
        let prefix = Tokens::new_prefix();
        assert_eq!(prefix.len(), SIMPLE_TOKEN_PREFIX_LEN);
        assert!(prefix.chars().all(|c| c.is_ascii_alphabetic()));
        let token = format!("{prefix}.42");
        assert_eq!(tokens.simple_token_index(&token), Some(42));
        tokens.assign_simple(token.clone(), "alice");
        assert_eq!(tokens.info(&token, 7).unwrap().username, "alice");
        assert_eq!(tokens.info(&token, 7).unwrap().revision, 7);
        tokens.invalidate_user("bob");
        assert!(tokens.info(&token, 7).is_ok());
        tokens.invalidate_user("alice");
        assert_eq!(tokens.info(&token, 7), Err(ServerError::InvalidAuthToken));
        let short = Tokens::simple(Duration::ZERO);
        short.assign_simple("t.1".into(), "alice");
        assert_eq!(short.info("t.1", 1), Err(ServerError::InvalidAuthToken));
    }

    #[test]
    fn jwt_tokens_carry_user_and_revision() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"0123456789abcdef0123456789abcdef").unwrap();
        let spec = parse_token_spec(&format!(
            "jwt,priv-key={},sign-method=HS256,ttl=1m",
            secret.display()
        ))
        .unwrap();
        let tokens = Tokens::from_spec(&spec, Duration::from_secs(300)).unwrap();
        let token = tokens.sign_jwt("carol", 9).unwrap();
        let info = tokens.info(&token, 100).unwrap();
        assert_eq!((info.username.as_str(), info.revision), ("carol", 9));
        let mut forged = token.clone();
        forged.pop();
        assert_eq!(tokens.info(&forged, 1), Err(ServerError::InvalidAuthToken));
        assert_eq!(tokens.info("x.y.z", 1), Err(ServerError::InvalidAuthToken));
    }
}
