//! Configuration: `config/mticket.toml` (or `--config FILE`) layered with `MTICKET_…`
//! environment variables, read once at start by figment.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::core::texts::Locale;
use crate::net::listener::ListenerConfig;

/// The default configuration file, relative to the working directory.
pub const DEFAULT_PATH: &str = "config/mticket.toml";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub hostname: String,
    pub locale: Locale,
    pub database: Database,
    pub tls: Tls,
    pub listen: Listen,
    pub intake: Intake,
    pub autoresponder: Autoresponder,
    pub tickets: Tickets,
    pub outbox: Outbox,
    pub auth: Auth,
    pub submission: Submission,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Listen addresses (an empty string switches a listener off) and the connection limits
/// every listener applies.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    pub submission: String,
    pub submissions: String,
    pub imap: String,
    pub imaps: String,
    pub pop3: String,
    pub pop3s: String,
    pub inbound: String,
    pub lmtp: String,
    /// Connections one client (an IPv4 address, an IPv6 /64) may hold on each listener.
    pub max_connections_per_client: usize,
    /// How long a new connection may take to log in (inbound and LMTP: to send a command).
    #[serde(with = "humantime_serde_compat")]
    pub pre_auth_timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intake {
    #[serde(with = "humantime_serde_compat")]
    pub poll_interval: Duration,
    pub max_message_size: bytesize::ByteSize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Autoresponder {
    pub max_per_sender_per_day: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tickets {
    pub first_number: i64,
}

/// Retries of outgoing mail after a temporary failure upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outbox {
    #[serde(with = "humantime_serde_compat")]
    pub retry_initial: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub retry_max: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub give_up_after: Duration,
}

/// The agents' SMTP submission ports (`listen.submission`, `listen.submissions`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// AUTH without TLS, on a loopback listener only (a local test setup).
    pub allow_plain_on_loopback: bool,
    /// Wrong passwords for one login from one address before a lockout.
    pub max_auth_failures: u32,
    #[serde(with = "humantime_serde_compat")]
    pub lockout: Duration,
    /// Each wrong password delays the answer by this much more (up to five times).
    #[serde(with = "humantime_serde_compat")]
    pub auth_failure_delay: Duration,
    /// Words in an agent's own text that announce an attachment (matched at a word start,
    /// any case); a reply using one without an attachment is refused.
    pub attachment_words: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub resolver: Resolver,
    pub records: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolver {
    System,
    Static,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: "localhost".into(),
            locale: Locale::En,
            database: Database {
                url: "sqlite://data/mticket.db".into(),
            },
            tls: Tls {
                cert: "certs/cert.pem".into(),
                key: "certs/key.pem".into(),
            },
            listen: Listen {
                submission: "127.0.0.1:1587".into(),
                submissions: "127.0.0.1:1465".into(),
                imap: "127.0.0.1:1143".into(),
                imaps: "127.0.0.1:1993".into(),
                pop3: "127.0.0.1:1110".into(),
                pop3s: "127.0.0.1:1995".into(),
                inbound: "127.0.0.1:2525".into(),
                lmtp: "127.0.0.1:2424".into(),
                max_connections_per_client: 50,
                pre_auth_timeout: Duration::from_secs(30),
            },
            intake: Intake {
                poll_interval: Duration::from_secs(60),
                max_message_size: bytesize::ByteSize::mb(25),
            },
            autoresponder: Autoresponder {
                max_per_sender_per_day: 5,
            },
            tickets: Tickets { first_number: 1 },
            outbox: Outbox {
                retry_initial: Duration::from_secs(60),
                retry_max: Duration::from_secs(3600),
                give_up_after: Duration::from_secs(2 * 86_400),
            },
            auth: Auth {
                resolver: Resolver::System,
                records: String::new(),
            },
            submission: Submission {
                allow_plain_on_loopback: false,
                max_auth_failures: 5,
                lockout: Duration::from_secs(300),
                auth_failure_delay: Duration::from_secs(1),
                attachment_words: crate::core::checks::ATTACHMENT_WORDS
                    .iter()
                    .map(|w| w.to_string())
                    .collect(),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} not found")]
    Missing(PathBuf),
    #[error("configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("configuration: listen.{name} = {value:?} is not an address like 127.0.0.1:1143")]
    BadListen { name: &'static str, value: String },
    #[error("configuration: hostname must not be empty")]
    NoHostname,
    #[error("configuration: listen.{0} must be more than 0")]
    ZeroLimit(&'static str),
}

impl Config {
    /// Loads defaults, then the file, then `MTICKET_…` variables. An explicitly named file
    /// must exist; the default file may be missing (then defaults and variables apply).
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(p) if !p.exists() => return Err(ConfigError::Missing(p.to_path_buf())),
            Some(p) => figment = figment.merge(Toml::file(p)),
            None => figment = figment.merge(Toml::file(DEFAULT_PATH)),
        }
        figment = figment.merge(Env::prefixed("MTICKET_").split("__").lowercase(true));
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.hostname.trim().is_empty() {
            return Err(ConfigError::NoHostname);
        }
        for (name, _) in self.listen.all() {
            self.listen.addr(name)?;
        }
        if self.listen.max_connections_per_client == 0 {
            return Err(ConfigError::ZeroLimit("max_connections_per_client"));
        }
        if self.listen.pre_auth_timeout.is_zero() {
            return Err(ConfigError::ZeroLimit("pre_auth_timeout"));
        }
        Ok(())
    }

    /// The comment address: mail sent to it becomes an internal comment.
    pub fn comment_address(&self) -> String {
        format!("comment@{}", self.hostname)
    }

    /// The marker the gateway puts in `X-Loop` of what it sends, to recognise it again.
    pub fn loop_marker(&self) -> String {
        format!("mticket@{}", self.hostname)
    }
}

impl Listen {
    /// The settings of listener `name` on `addr`, with this section's connection limits.
    pub fn listener(&self, addr: SocketAddr, name: &'static str) -> ListenerConfig {
        let mut cfg = ListenerConfig::new(addr, name);
        cfg.max_connections_per_client = self.max_connections_per_client;
        cfg.pre_auth_timeout = self.pre_auth_timeout;
        cfg
    }

    pub fn all(&self) -> [(&'static str, &str); 8] {
        [
            ("submission", &self.submission),
            ("submissions", &self.submissions),
            ("imap", &self.imap),
            ("imaps", &self.imaps),
            ("pop3", &self.pop3),
            ("pop3s", &self.pop3s),
            ("inbound", &self.inbound),
            ("lmtp", &self.lmtp),
        ]
    }

    /// The socket address of a listener, `None` when it is switched off.
    pub fn addr(&self, name: &'static str) -> Result<Option<SocketAddr>, ConfigError> {
        let value = self
            .all()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.trim())
            .unwrap_or_default();
        if value.is_empty() {
            return Ok(None);
        }
        value.parse().map(Some).map_err(|_| ConfigError::BadListen {
            name,
            value: value.to_string(),
        })
    }
}

/// Durations as humantime strings ("60s", "5m") in the file.
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_file_matches_defaults() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_PATH);
        let from_file: Config = Figment::from(Toml::file(shipped)).extract().unwrap();
        let defaults = Config::default();
        assert_eq!(
            serde_json::to_value(&from_file).unwrap(),
            serde_json::to_value(&defaults).unwrap()
        );
    }

    #[test]
    fn listener_switched_off_and_bad() {
        let mut c = Config::default();
        c.listen.imap = String::new();
        assert_eq!(c.listen.addr("imap").unwrap(), None);
        c.listen.imap = "nonsense".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn listeners_take_the_connection_limits() {
        let mut c = Config::default();
        c.listen.max_connections_per_client = 7;
        c.listen.pre_auth_timeout = Duration::from_secs(3);
        let lc = c
            .listen
            .listener("127.0.0.1:25".parse().unwrap(), "inbound");
        assert_eq!(lc.max_connections_per_client, 7);
        assert_eq!(lc.pre_auth_timeout, Duration::from_secs(3));
        // With the defaults, one client alone cannot fill a listener.
        let d = Config::default()
            .listen
            .listener("127.0.0.1:25".parse().unwrap(), "inbound");
        assert!(d.max_connections_per_client < d.max_connections);
        c.listen.max_connections_per_client = 0;
        assert!(c.validate().is_err());
    }
}
