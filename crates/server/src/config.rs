//! The server's settings: a TOML file, then `ZAIBEI_SERVER_*` environment overrides, then the
//! command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ServerError;

/// Everything the server needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where the server keeps its state: the SQLite catalogue, the TLS certificate, the audit
    /// signing key, the audit anchor store and (by default) the tenants' repositories.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Catalogue URL: `sqlite://…` (default: `DATA_DIR/catalogue.db`) or `postgres://…`.
    pub database: Option<String>,
    /// TLS certificate chain (PEM). Without one, a self-signed certificate is generated in the
    /// data directory on first start.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM), with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Names the generated certificate is valid for (besides `localhost` and the loopback
    /// addresses).
    pub tls_names: Vec<String>,
    /// Where tenants' repositories live: a directory (default `DATA_DIR/repos`) or a bucket
    /// location (`s3:https://HOST/BUCKET/PREFIX`); each repository is `TENANT/REPO` beneath.
    pub storage: Option<String>,
    /// Further storage for repositories, by site name (`[sites] dc2 = "s3:https://…/bucket"`):
    /// a repository created with `"site": "dc2"` lives there, and copy jobs replicate between
    /// sites.
    pub sites: std::collections::BTreeMap<String, String>,
    /// Where signed audit checkpoints are anchored, outside the catalogue: a directory
    /// (default `DATA_DIR/audit-anchors`) or a bucket location.
    pub audit_anchor: Option<String>,
    /// A checkpoint is signed and anchored after this many audit records…
    pub audit_checkpoint_records: u64,
    /// …or this many seconds after the previous one, whichever comes first.
    pub audit_checkpoint_secs: u64,
    /// Largest request body accepted (repository objects included), in bytes.
    pub max_body_bytes: usize,
    /// How often the scheduler looks for due policies and stale jobs, in seconds.
    pub scheduler_interval_secs: u64,
    /// A running job whose runner has not reported for this long is failed, in seconds.
    pub job_stale_secs: u64,
    /// This replica's name in job claims and logs (default: host name and process id).
    pub replica: Option<String>,
    /// PBKDF2 iterations of new password hashes (default 100 000; lower only for tests).
    pub password_iterations: Option<u32>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("/var/lib/zaibei"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            database: None,
            tls_cert: None,
            tls_key: None,
            tls_names: Vec::new(),
            storage: None,
            sites: std::collections::BTreeMap::new(),
            audit_anchor: None,
            audit_checkpoint_records: 1000,
            audit_checkpoint_secs: 300,
            max_body_bytes: 256 << 20,
            scheduler_interval_secs: 5,
            job_stale_secs: 3600,
            replica: None,
            password_iterations: None,
        }
    }
}

impl ServerConfig {
    /// Reads a TOML file (absent file: defaults) and applies `ZAIBEI_SERVER_*` overrides.
    pub fn load(file: Option<&Path>) -> Result<ServerConfig, ServerError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ServerError::Config(format!("cannot read {}: {e}", path.display()))
                })?;
                toml::from_str(&text).map_err(|e| {
                    ServerError::Config(format!("{}: {}", path.display(), e.message()))
                })?
            }
            None => ServerConfig::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    /// Applies `ZAIBEI_SERVER_*` variables read through `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ServerError> {
        fn parse<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ServerError> {
            v.parse()
                .map_err(|_| ServerError::Config(format!("{key}={v:?} is not valid")))
        }
        if let Some(v) = var("ZAIBEI_SERVER_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = var("ZAIBEI_SERVER_LISTEN") {
            self.listen = parse("ZAIBEI_SERVER_LISTEN", &v)?;
        }
        if let Some(v) = var("ZAIBEI_SERVER_DATABASE") {
            self.database = Some(v);
        }
        if let Some(v) = var("ZAIBEI_SERVER_TLS_CERT") {
            self.tls_cert = Some(PathBuf::from(v));
        }
        if let Some(v) = var("ZAIBEI_SERVER_TLS_KEY") {
            self.tls_key = Some(PathBuf::from(v));
        }
        if let Some(v) = var("ZAIBEI_SERVER_STORAGE") {
            self.storage = Some(v);
        }
        if let Some(v) = var("ZAIBEI_SERVER_AUDIT_ANCHOR") {
            self.audit_anchor = Some(v);
        }
        if let Some(v) = var("ZAIBEI_SERVER_MAX_BODY_BYTES") {
            self.max_body_bytes = parse("ZAIBEI_SERVER_MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = var("ZAIBEI_SERVER_SCHEDULER_INTERVAL_SECS") {
            self.scheduler_interval_secs = parse("ZAIBEI_SERVER_SCHEDULER_INTERVAL_SECS", &v)?;
        }
        if let Some(v) = var("ZAIBEI_SERVER_AUDIT_CHECKPOINT_RECORDS") {
            self.audit_checkpoint_records = parse("ZAIBEI_SERVER_AUDIT_CHECKPOINT_RECORDS", &v)?;
        }
        if let Some(v) = var("ZAIBEI_SERVER_REPLICA") {
            self.replica = Some(v);
        }
        if let Some(v) = var("ZAIBEI_SERVER_TLS_NAMES") {
            self.tls_names = v
                .split(',')
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect();
        }
        if let Some(v) = var("ZAIBEI_SERVER_AUDIT_CHECKPOINT_SECS") {
            self.audit_checkpoint_secs = parse("ZAIBEI_SERVER_AUDIT_CHECKPOINT_SECS", &v)?;
        }
        if let Some(v) = var("ZAIBEI_SERVER_JOB_STALE_SECS") {
            self.job_stale_secs = parse("ZAIBEI_SERVER_JOB_STALE_SECS", &v)?;
        }
        if let Some(v) = var("ZAIBEI_SERVER_PASSWORD_ITERATIONS") {
            self.password_iterations = Some(parse("ZAIBEI_SERVER_PASSWORD_ITERATIONS", &v)?);
        }
        Ok(())
    }

    /// The catalogue URL in effect.
    pub fn database_url(&self) -> String {
        match &self.database {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("catalogue.db").display()
            ),
        }
    }

    /// The repository storage root in effect.
    pub fn storage_root(&self) -> String {
        self.storage
            .clone()
            .unwrap_or_else(|| self.data_dir.join("repos").display().to_string())
    }

    /// The audit anchor store in effect.
    pub fn audit_anchor_location(&self) -> String {
        self.audit_anchor
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit-anchors").display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_environment() {
        let mut c: ServerConfig =
            toml::from_str("listen = \"0.0.0.0:9443\"\ndata_dir = \"/srv/z\"\n").unwrap();
        assert_eq!(c.listen.port(), 9443);
        c.apply_env(|k| (k == "ZAIBEI_SERVER_LISTEN").then(|| "127.0.0.1:1".to_owned()))
            .unwrap();
        assert_eq!(c.listen.port(), 1);
        assert!(c.database_url().starts_with("sqlite:///srv/z/catalogue.db"));
        assert!(toml::from_str::<ServerConfig>("bogus = 1").is_err());
        assert!(
            c.apply_env(|k| (k == "ZAIBEI_SERVER_LISTEN").then(|| "nowhere".to_owned()))
                .is_err()
        );
    }
}
