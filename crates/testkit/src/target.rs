//! The S3 server the tests run against, as `scripts/test` (through `scripts/s3-test-server`)
//! or the user describes it in the environment.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::S3Credentials;

/// An S3 endpoint and bucket for tests.
#[derive(Debug, Clone)]
pub struct S3Target {
    /// `http://HOST:PORT` of the server.
    pub endpoint: String,
    /// The bucket tests may write to.
    pub bucket: String,
    /// Credentials and signing region.
    pub credentials: S3Credentials,
}

/// What to say when no server is configured.
const HOW: &str = "no S3 server for the tests: run them with scripts/test, which installs and \
starts Garage on 127.0.0.1, or export ZAIBEI_TEST_S3_ENDPOINT (http://HOST:PORT), \
ZAIBEI_TEST_S3_BUCKET, ZAIBEI_TEST_S3_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
for another server (MinIO, Ceph RGW)";

impl S3Target {
    /// The server described by `ZAIBEI_TEST_S3_ENDPOINT`, `ZAIBEI_TEST_S3_BUCKET` and the
    /// credentials of [`S3Credentials::from_env`]; an error saying how to provide one if any
    /// is missing. Tests fail on that error: they are never skipped.
    pub fn from_env() -> Result<S3Target, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (
            var("ZAIBEI_TEST_S3_ENDPOINT"),
            var("ZAIBEI_TEST_S3_BUCKET"),
            S3Credentials::from_env(),
        ) {
            (Some(endpoint), Some(bucket), Some(credentials)) => Ok(S3Target {
                endpoint: endpoint.trim_end_matches('/').to_owned(),
                bucket,
                credentials,
            }),
            _ => Err(HOW.to_owned()),
        }
    }

    /// The server's socket address (for a [`crate::FaultProxy`] in front of it).
    pub fn addr(&self) -> Result<SocketAddr, String> {
        let hostport = self
            .endpoint
            .trim_start_matches("http://")
            .trim_start_matches("https://");
        std::net::ToSocketAddrs::to_socket_addrs(hostport)
            .map_err(|e| format!("{}: {e}", self.endpoint))?
            .next()
            .ok_or_else(|| format!("{}: no address", self.endpoint))
    }

    /// A prefix no other test (in this run or an earlier one) uses: `tests/<label>-<unique>`.
    pub fn unique_prefix(label: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!(
            "tests/{label}-{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A zaibei repository location `s3:ENDPOINT/BUCKET/PREFIX` on this server, or on
    /// `endpoint` instead (a proxy) when given.
    pub fn location(&self, prefix: &str, endpoint: Option<&str>) -> String {
        format!(
            "s3:{}/{}/{prefix}",
            endpoint.unwrap_or(&self.endpoint),
            self.bucket
        )
    }
}
