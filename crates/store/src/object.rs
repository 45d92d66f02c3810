//! Object storage (S3 and the native APIs of Alibaba OSS, Huawei OBS and Tencent COS) through
//! Apache OpenDAL.
//!
//! The store does one request per operation and never retries: retries, rate limits and
//! request concurrency are wrappers ([`crate::RetryStore`], [`crate::ThrottleStore`]) so that
//! every store behaves the same. Stalls become retryable errors instead of hangs: connecting
//! and every wait for more bytes of a download are bounded by the I/O timeout; an upload (whose
//! progress the HTTP client does not report) is bounded by a deadline that allows for
//! [`MIN_UPLOAD_RATE`].

use std::ops::Range;
use std::sync::Once;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use opendal::{ErrorKind, HttpTransporter, Operator};
use opendal_http_transport_reqwest::ReqwestTransport;

use crate::location::{BucketLocation, Service};
use crate::{ObjectInfo, Store, StoreError, StoreErrorKind, check_name};

/// Objects larger than this are uploaded in parts of this size (S3 multipart upload); smaller
/// ones in one PUT. Packs (16 MiB by default) therefore take one request.
pub const MULTIPART_PART_SIZE: usize = 32 << 20;

/// Slowest average upload rate (bytes/s) tolerated before an upload counts as stalled: a
/// 16 MiB pack may take 34 minutes (plus the I/O timeout) on one connection.
pub const MIN_UPLOAD_RATE: u64 = 8 << 10;

/// Credentials and addressing options for object storage. Anything left `None` is taken
/// from the service's usual environment variables and profile files.
#[derive(Clone, Default)]
pub struct BucketOptions {
    /// Signing region (S3; e.g. `us-east-1`, `garage`, `cn-north-1`).
    pub region: Option<String>,
    /// Virtual-hosted-style addressing (`BUCKET.HOST`) instead of path style (`HOST/BUCKET`).
    pub virtual_host: bool,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// Profile in `~/.aws/config` and `~/.aws/credentials` (S3).
    pub profile: Option<String>,
    /// Time without progress after which a request is abandoned and retried: connecting, the
    /// answer to a request, and every wait for more bytes of a download.
    pub io_timeout: Duration,
}

impl std::fmt::Debug for BucketOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketOptions")
            .field("region", &self.region)
            .field("virtual_host", &self.virtual_host)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "…"),
            )
            .field("profile", &self.profile)
            .field("io_timeout", &self.io_timeout)
            .finish()
    }
}

/// A repository in a bucket on object storage.
pub struct ObjectStore {
    op: Operator,
    location: String,
    io_timeout: Duration,
}

impl std::fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStore")
            .field("location", &self.location)
            .finish()
    }
}

pub(crate) fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only if another provider was installed first, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl ObjectStore {
    /// Connects (lazily: no request is made here) to the bucket at `loc`.
    pub fn new(loc: &BucketLocation, opts: &BucketOptions) -> Result<ObjectStore, StoreError> {
        install_crypto_provider();
        let location = crate::Location::Bucket(loc.clone()).to_string();
        let config_err = |e: opendal::Error| {
            StoreError::new(StoreErrorKind::InvalidInput, "connect", "", &location)
                .with_detail(e.to_string())
        };
        let root = format!("/{}", loc.prefix);
        let op = match loc.service {
            Service::S3 => {
                let mut b = opendal::services::S3::default()
                    .endpoint(&loc.endpoint)
                    .bucket(&loc.bucket)
                    .root(&root)
                    .region(opts.region.as_deref().unwrap_or("us-east-1"))
                    // A checksum on every upload: the server rejects a body damaged on the
                    // way, and buckets with Object Lock require one.
                    .checksum_algorithm("crc32c")
                    .disable_ec2_metadata();
                if opts.virtual_host {
                    b = b.enable_virtual_host_style();
                }
                if let Some(v) = &opts.access_key_id {
                    b = b.access_key_id(v);
                }
                if let Some(v) = &opts.secret_access_key {
                    b = b.secret_access_key(v);
                }
                if let Some(v) = &opts.session_token {
                    b = b.session_token(v);
                }
                if let Some(v) = &opts.profile {
                    b = b.profile(v);
                }
                Operator::new(b).map_err(config_err)?
            }
            Service::Oss => {
                let mut b = opendal::services::Oss::default()
                    .endpoint(&loc.endpoint)
                    .bucket(&loc.bucket)
                    .root(&root);
                if opts.virtual_host {
                    b = b.addressing_style("virtual");
                }
                if let Some(v) = &opts.access_key_id {
                    b = b.access_key_id(v);
                }
                if let Some(v) = &opts.secret_access_key {
                    b = b.access_key_secret(v);
                }
                if let Some(v) = &opts.session_token {
                    b = b.security_token(v);
                }
                Operator::new(b).map_err(config_err)?
            }
            Service::Obs => {
                let mut b = opendal::services::Obs::default()
                    .endpoint(&loc.endpoint)
                    .bucket(&loc.bucket)
                    .root(&root);
                if let Some(v) = &opts.access_key_id {
                    b = b.access_key_id(v);
                }
                if let Some(v) = &opts.secret_access_key {
                    b = b.secret_access_key(v);
                }
                Operator::new(b).map_err(config_err)?
            }
            Service::Cos => {
                let mut b = opendal::services::Cos::default()
                    .endpoint(&loc.endpoint)
                    .bucket(&loc.bucket)
                    .root(&root);
                if let Some(v) = &opts.access_key_id {
                    b = b.secret_id(v);
                }
                if let Some(v) = &opts.secret_access_key {
                    b = b.secret_key(v);
                }
                if let Some(v) = &opts.session_token {
                    b = b.security_token(v);
                }
                Operator::new(b).map_err(config_err)?
            }
        };
        let client = reqwest::Client::builder()
            .http1_only()
            .connect_timeout(opts.io_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| {
                StoreError::new(StoreErrorKind::Other, "connect", "", &location)
                    .with_detail(format!("HTTP client: {e}"))
            })?;
        let transport = HttpTransporter::new(ReqwestTransport::new(client));
        let ctx = op.base_context().with_http_transport(transport);
        Ok(ObjectStore {
            op: op.with_context(ctx),
            location,
            io_timeout: opts.io_timeout,
        })
    }

    fn err(&self, e: opendal::Error, op: &'static str, name: &str) -> StoreError {
        let kind = match e.kind() {
            ErrorKind::NotFound => StoreErrorKind::NotFound,
            ErrorKind::AlreadyExists | ErrorKind::ConditionNotMatch => {
                StoreErrorKind::AlreadyExists
            }
            ErrorKind::PermissionDenied => StoreErrorKind::PermissionDenied,
            ErrorKind::RateLimited => StoreErrorKind::Unavailable,
            ErrorKind::RangeNotSatisfied | ErrorKind::ConfigInvalid => StoreErrorKind::InvalidInput,
            _ if e.is_temporary() || transient_answer(&e.to_string()) => {
                StoreErrorKind::Unavailable
            }
            _ => StoreErrorKind::Other,
        };
        let mut err = StoreError::new(kind, op, name, &self.location).with_detail(e.to_string());
        // OpenDAL marks network failures (resets, truncated bodies, 5xx) as temporary.
        err.retryable = kind == StoreErrorKind::Unavailable;
        err
    }

    fn check(&self, op: &'static str, name: &str) -> Result<(), StoreError> {
        if check_name(name) {
            Ok(())
        } else {
            Err(
                StoreError::new(StoreErrorKind::InvalidInput, op, name, &self.location)
                    .with_detail("invalid object name"),
            )
        }
    }

    /// Bounds a request that sends `bytes` (whose progress cannot be watched) by twice the
    /// I/O timeout plus the time they take at [`MIN_UPLOAD_RATE`].
    async fn bounded<T>(
        &self,
        op: &'static str,
        name: &str,
        bytes: u64,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self
            .io_timeout
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(bytes / MIN_UPLOAD_RATE));
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(
                StoreError::new(StoreErrorKind::Unavailable, op, name, &self.location)
                    .with_detail(format!("no answer within {} s", limit.as_secs())),
            ),
        }
    }

    /// A stall error.
    fn stalled(&self, name: &str) -> StoreError {
        StoreError::new(StoreErrorKind::Unavailable, "get", name, &self.location).with_detail(
            format!(
                "no data for {} s: the transfer stalled",
                self.io_timeout.as_secs()
            ),
        )
    }

    /// Downloads the whole object or `range` of it, giving up when no bytes arrive for the
    /// I/O timeout (however long the whole transfer takes while bytes keep coming).
    async fn download(&self, name: &str, range: Option<Range<u64>>) -> Result<Bytes, StoreError> {
        let io = self.io_timeout;
        let reader = tokio::time::timeout(io, self.op.reader(name))
            .await
            .map_err(|_| self.stalled(name))?
            .map_err(|e| self.err(e, "get", name))?;
        let stream = match range {
            Some(r) => tokio::time::timeout(io, reader.into_stream(r)).await,
            None => tokio::time::timeout(io, reader.into_stream(..)).await,
        };
        let mut stream = stream
            .map_err(|_| self.stalled(name))?
            .map_err(|e| self.err(e, "get", name))?;
        let mut out = bytes::BytesMut::new();
        loop {
            match tokio::time::timeout(io, stream.try_next()).await {
                Ok(Ok(Some(buf))) => {
                    for chunk in buf {
                        out.extend_from_slice(&chunk);
                    }
                }
                Ok(Ok(None)) => return Ok(out.freeze()),
                Ok(Err(e)) => return Err(self.err(e, "get", name)),
                Err(_) => return Err(self.stalled(name)),
            }
        }
    }
}

/// Answers that some services (or OpenDAL's mapping of them) do not mark as temporary but that
/// are: a request timeout (408), throttling (429, `SlowDown`), and a body damaged on the way
/// (the checksum or digest the server computed differs from the one sent).
fn transient_answer(text: &str) -> bool {
    const MARKERS: &[&str] = &[
        "status: 408",
        "status: 429",
        "RequestTimeout",
        "SlowDown",
        "TooManyRequests",
        "BadDigest",
        "XAmzContentChecksumMismatch",
        "InvalidDigest",
        "IncompleteBody",
    ];
    MARKERS.iter().any(|m| text.contains(m))
}

#[async_trait]
impl Store for ObjectStore {
    fn location(&self) -> &str {
        &self.location
    }

    async fn put(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        self.check("put", name)?;
        let len = data.len() as u64;
        self.bounded("put", name, len, async {
            self.op
                .write_with(name, data)
                .chunk(MULTIPART_PART_SIZE)
                .await
                .map(|_| ())
                .map_err(|e| self.err(e, "put", name))
        })
        .await
    }

    async fn put_new(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        self.check("put", name)?;
        match self.stat(name).await {
            Ok(_) => {
                return Err(StoreError::new(
                    StoreErrorKind::AlreadyExists,
                    "put",
                    name,
                    &self.location,
                ));
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let len = data.len() as u64;
        self.bounded("put", name, len, async {
            match self
                .op
                .write_with(name, data.clone())
                .if_not_exists(true)
                .await
            {
                Ok(_) => Ok(()),
                // Services without conditional writes: the stat above is the check.
                Err(e) if e.kind() == ErrorKind::Unsupported => self
                    .op
                    .write(name, data)
                    .await
                    .map(|_| ())
                    .map_err(|e| self.err(e, "put", name)),
                Err(e) => Err(self.err(e, "put", name)),
            }
        })
        .await
    }

    async fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        self.check("get", name)?;
        self.download(name, None).await
    }

    async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.check("get", name)?;
        if range.start > range.end {
            return Err(
                StoreError::new(StoreErrorKind::InvalidInput, "get", name, &self.location)
                    .with_detail("inverted range"),
            );
        }
        let want = range.end - range.start;
        {
            if want == 0 {
                self.stat(name).await?;
                return Ok(Bytes::new());
            }
            let buf = self.download(name, Some(range.clone())).await?;
            if buf.len() as u64 != want {
                // A complete answer that is shorter: the range runs past the object's end.
                return Err(StoreError::new(
                    StoreErrorKind::InvalidInput,
                    "get",
                    name,
                    &self.location,
                )
                .with_detail(format!(
                    "bytes {}..{} asked, {} returned: the range runs past the end of the object",
                    range.start,
                    range.end,
                    buf.len()
                )));
            }
            Ok(buf)
        }
    }

    async fn stat(&self, name: &str) -> Result<ObjectInfo, StoreError> {
        self.check("stat", name)?;
        self.bounded("stat", name, 0, async {
            let meta = self
                .op
                .stat(name)
                .await
                .map_err(|e| self.err(e, "stat", name))?;
            if !meta.is_file() {
                return Err(StoreError::new(
                    StoreErrorKind::NotFound,
                    "stat",
                    name,
                    &self.location,
                ));
            }
            Ok(ObjectInfo {
                name: name.to_owned(),
                size: meta.content_length(),
                modified: meta.last_modified().map(Into::into),
            })
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.check("list", prefix)?;
        let dir = format!("{prefix}/");
        let mut lister = self
            .op
            .lister_with(&dir)
            .recursive(true)
            .await
            .map_err(|e| self.err(e, "list", prefix))?;
        let mut out = Vec::new();
        loop {
            let next =
                tokio::time::timeout(self.io_timeout.saturating_mul(2), lister.try_next()).await;
            let entry = match next {
                Ok(Ok(Some(entry))) => entry,
                Ok(Ok(None)) => break,
                Ok(Err(e)) => return Err(self.err(e, "list", prefix)),
                Err(_) => {
                    return Err(StoreError::new(
                        StoreErrorKind::Unavailable,
                        "list",
                        prefix,
                        &self.location,
                    )
                    .with_detail("listing stalled"));
                }
            };
            let meta = entry.metadata();
            if !meta.is_file() {
                continue;
            }
            let name = entry.path().trim_start_matches('/');
            if !name.starts_with(&dir) || !check_name(name) {
                continue;
            }
            out.push(ObjectInfo {
                name: name.to_owned(),
                size: meta.content_length(),
                modified: meta.last_modified().map(Into::into),
            });
        }
        Ok(out)
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.check("delete", name)?;
        // S3 answers a delete of a missing key with success; the contract says NotFound.
        self.stat(name).await.map_err(|mut e| {
            e.op = "delete";
            e
        })?;
        self.bounded("delete", name, 0, async {
            self.op
                .delete(name)
                .await
                .map_err(|e| self.err(e, "delete", name))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::bucket;

    #[test]
    fn answers_that_are_worth_retrying() {
        assert!(transient_answer(
            "Unexpected ... response: Parts { status: 408, ..."
        ));
        assert!(transient_answer("<Code>BadDigest</Code>"));
        assert!(transient_answer("<Code>XAmzContentChecksumMismatch</Code>"));
        assert!(transient_answer("status: 429 Too Many Requests"));
        assert!(!transient_answer("<Code>AccessDenied</Code> status: 403"));
        assert!(!transient_answer("<Code>NoSuchBucket</Code>"));
    }

    #[test]
    fn every_service_builds_from_its_location_without_touching_the_network() {
        let opts = BucketOptions {
            access_key_id: Some("id".into()),
            secret_access_key: Some("secret".into()),
            io_timeout: Duration::from_secs(5),
            ..BucketOptions::default()
        };
        for text in [
            "s3:https://s3.cn-north-1.amazonaws.com.cn/zb/site-a",
            "s3:http://127.0.0.1:9000/zb",
            "oss:https://oss-cn-hangzhou.aliyuncs.com/zb/site-a",
            "obs:https://obs.cn-north-4.myhuaweicloud.com/zb",
            "cos:https://cos.ap-beijing.myqcloud.com/zb-1250000000/x",
        ] {
            let store =
                ObjectStore::new(&bucket(text), &opts).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(store.location(), text);
        }
        let virtual_host = BucketOptions {
            virtual_host: true,
            ..opts
        };
        ObjectStore::new(&bucket("s3:https://s3.example.com/zb"), &virtual_host).unwrap();
    }

    #[tokio::test]
    async fn invalid_names_are_refused_before_any_request() {
        let store = ObjectStore::new(
            &bucket("s3:http://127.0.0.1:9/zb"),
            &BucketOptions {
                io_timeout: Duration::from_secs(1),
                ..BucketOptions::default()
            },
        )
        .unwrap();
        let e = store.get("../config").await.unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn a_closed_port_is_a_retryable_error_naming_the_object() {
        let store = ObjectStore::new(
            &bucket("s3:http://127.0.0.1:9/zb"),
            &BucketOptions {
                access_key_id: Some("id".into()),
                secret_access_key: Some("secret".into()),
                io_timeout: Duration::from_secs(1),
                ..BucketOptions::default()
            },
        )
        .unwrap();
        let e = store.get("keys/abc").await.unwrap_err();
        assert!(e.retryable, "{e}");
        assert!(e.to_string().contains("keys/abc"), "{e}");
    }
}
