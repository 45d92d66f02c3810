//! Options that say how to reach a repository's storage: object storage credentials and
//! addressing, the token and TLS trust of a zaibei server, request concurrency, bandwidth
//! limits, timeouts and the metadata cache.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use zaibei_store::{
    BucketOptions, CertFingerprint, OpenOptions, RetryPolicy, ServerOptions, Zeroizing,
};

/// Storage options (global: they may be given before or after the command).
#[derive(Debug, Args)]
#[command(next_help_heading = "Storage")]
pub struct StoreArgs {
    /// Requests to the repository in flight at most (uploads, downloads, listings) [default: 8;
    /// a backup to a local disk uploads 2 packs at a time, since more would only hold more
    /// packs in memory].
    #[arg(long, env = "ZAIBEI_CONNECTIONS", global = true,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub connections: Option<u16>,

    /// Limit uploads to this many KiB/s, averaged over transfers (each pack still goes out
    /// at link speed; the pauses fall between packs).
    #[arg(long, value_name = "KIB_PER_SEC", global = true,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub limit_upload: Option<u64>,

    /// Limit downloads to this many KiB/s, averaged over transfers.
    #[arg(long, value_name = "KIB_PER_SEC", global = true,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub limit_download: Option<u64>,

    /// Seconds without progress (connecting, or waiting for an answer) after which a request
    /// to object storage or a zaibei server is abandoned and retried.
    #[arg(
        long,
        value_name = "SECS",
        env = "ZAIBEI_IO_TIMEOUT",
        default_value_t = 60,
        global = true
    )]
    pub io_timeout: u64,

    /// Attempts per request before a transient failure (5xx, throttling, timeout, reset) is
    /// reported.
    #[arg(
        long,
        value_name = "N",
        env = "ZAIBEI_RETRIES",
        default_value_t = 10,
        global = true
    )]
    pub retries: u32,

    /// Signing region of an S3 endpoint (AWS_REGION / AWS_DEFAULT_REGION; us-east-1 if unset).
    #[arg(long, value_name = "REGION", global = true)]
    pub s3_region: Option<String>,

    /// Address buckets as BUCKET.HOST (virtual-hosted style) instead of HOST/BUCKET.
    #[arg(long, global = true)]
    pub s3_virtual_host: bool,

    /// Profile of ~/.aws/credentials and ~/.aws/config to take S3 credentials from.
    #[arg(long, value_name = "NAME", env = "AWS_PROFILE", global = true)]
    pub s3_profile: Option<String>,

    /// Access key id for object storage (otherwise from the service's environment
    /// variables or profile files).
    #[arg(long, value_name = "ID", global = true)]
    pub access_key_id: Option<String>,

    /// Read the secret access key from this file (first line).
    #[arg(long, value_name = "FILE", global = true)]
    pub secret_access_key_file: Option<PathBuf>,

    /// Read the API token for a repository on a zaibei server (-r https://SERVER/TENANT/REPO)
    /// from this file (first line). Without it the token is taken from ZAIBEI_TOKEN; it is
    /// never given on the command line, where `ps` would show it.
    #[arg(long, value_name = "FILE", env = "ZAIBEI_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,

    /// PEM file with a certificate to trust for a zaibei server besides the system's roots:
    /// the server's self-signed certificate (written on its first start) or its CA.
    #[arg(long, value_name = "FILE", env = "ZAIBEI_SERVER_CA", global = true)]
    pub server_ca: Option<PathBuf>,

    /// Trust exactly the zaibei server certificate with this SHA-256 fingerprint (64 hex
    /// digits, colons allowed, as `openssl x509 -noout -fingerprint -sha256` prints it),
    /// whoever issued it; takes the place of --server-ca and the system's roots.
    #[arg(
        long,
        value_name = "SHA256",
        env = "ZAIBEI_SERVER_FINGERPRINT",
        global = true
    )]
    pub server_fingerprint: Option<CertFingerprint>,

    /// Directory of the local metadata cache (default: $XDG_CACHE_HOME/zaibei or
    /// ~/.cache/zaibei). The cache is used for object storage and zaibei servers, not for local
    /// repositories.
    #[arg(long, value_name = "DIR", env = "ZAIBEI_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,

    /// Do not use the local metadata cache.
    #[arg(long, global = true)]
    pub no_cache: bool,
}

impl StoreArgs {
    /// Requests in flight at most: `--connections`, 8 by default.
    pub fn requests(&self) -> usize {
        self.connections.map_or(8, usize::from)
    }

    /// The options of [`zaibei_store::open`].
    pub fn open_options(&self) -> Result<OpenOptions> {
        if self.access_key_id.is_some() != self.secret_access_key_file.is_some() {
            anyhow::bail!(crate::exit::WithCode(
                crate::exit::USAGE,
                "--access-key-id and --secret-access-key-file go together".into()
            ));
        }
        let secret_access_key = match &self.secret_access_key_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Some(text.lines().next().unwrap_or_default().trim().to_owned())
            }
            None => None,
        };
        let token = match &self.token_file {
            Some(path) => Some(read_token_file(path)?),
            None => std::env::var("ZAIBEI_TOKEN")
                .ok()
                .map(Zeroizing::new)
                .filter(|t| !t.trim().is_empty()),
        };
        let ca_pem = match &self.server_ca {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("reading server CA file {}", path.display()))?,
            ),
            None => None,
        };
        let io_timeout = Duration::from_secs(self.io_timeout.max(1));
        let region = self.s3_region.clone().or_else(|| {
            ["AWS_REGION", "AWS_DEFAULT_REGION"]
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        });
        Ok(OpenOptions {
            bucket: BucketOptions {
                region,
                virtual_host: self.s3_virtual_host,
                access_key_id: self.access_key_id.clone(),
                secret_access_key,
                session_token: None,
                profile: self.s3_profile.clone(),
                io_timeout,
            },
            server: ServerOptions {
                token,
                ca_pem,
                fingerprint: self.server_fingerprint,
                io_timeout,
            },
            connections: self.requests(),
            limit_upload: self.limit_upload,
            limit_download: self.limit_download,
            retry: RetryPolicy {
                attempts: self.retries.max(1),
                ..RetryPolicy::default()
            },
        })
    }

    /// Where the metadata cache lives, if one is to be used for a store (`remote`: on the
    /// network).
    pub fn cache_base(&self, remote: bool) -> Option<PathBuf> {
        if self.no_cache || !remote {
            return None;
        }
        if let Some(dir) = &self.cache_dir {
            return Some(dir.clone());
        }
        let xdg = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty());
        match (xdg, std::env::var_os("HOME")) {
            (Some(x), _) => Some(PathBuf::from(x).join("zaibei")),
            (None, Some(home)) => Some(PathBuf::from(home).join(".cache/zaibei")),
            (None, None) => None,
        }
    }
}

/// The API token in the first line of `path` (wiped from memory when dropped).
fn read_token_file(path: &std::path::Path) -> Result<Zeroizing<String>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading token file {}", path.display()))?,
    );
    let token = Zeroizing::new(text.lines().next().unwrap_or_default().trim().to_owned());
    if token.is_empty() {
        anyhow::bail!("token file {} is empty", path.display());
    }
    Ok(token)
}
