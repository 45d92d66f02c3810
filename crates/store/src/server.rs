//! A tenant's repository on a zaibei server, reached through the server's repository API
//! (`docs/API.md`, "Repository API").
//!
//! Like [`crate::ObjectStore`], the store makes one request per operation and never retries:
//! retries, rate limits and concurrency are the wrappers' business. Every request carries the
//! API token as a bearer token. TLS trusts the system's roots plus an optional extra CA
//! certificate (the server's self-signed certificate, say), or, with a pinned SHA-256
//! fingerprint, exactly one certificate. Stalls become retryable errors: an answer and every
//! wait for more bytes of a body are bounded by the I/O timeout, an upload by a deadline that
//! allows for 8 KiB/s (as object storage uploads).

use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use reqwest::StatusCode;
use reqwest::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue,
    IF_NONE_MATCH, LAST_MODIFIED, RANGE,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::location::ServerLocation;
use crate::object::{MIN_UPLOAD_RATE, install_crypto_provider};
use crate::{ObjectInfo, Store, StoreError, StoreErrorKind, check_name};

/// Path of the API below the server's base URL.
pub const API_PREFIX: &str = "/api/v1";

/// Response header of `HEAD` with the object's modification time in Unix milliseconds.
pub const MODIFIED_MS_HEADER: &str = "x-zaibei-modified-ms";

/// Objects asked for per listing page (the server may return fewer).
pub const LIST_PAGE_LIMIT: u32 = 1000;

/// Largest listing page read (a page of [`LIST_PAGE_LIMIT`] names takes well under 1 MiB).
const MAX_PAGE_BYTES: usize = 16 << 20;

/// Largest error body read; the rest is ignored.
const MAX_ERROR_BYTES: usize = 64 << 10;

/// How to reach and authenticate to a zaibei server.
#[derive(Clone)]
pub struct ServerOptions {
    /// The API token, sent as `Authorization: Bearer TOKEN` (wiped from memory on drop;
    /// never shown by `Debug`).
    pub token: Option<Zeroizing<String>>,
    /// PEM certificates trusted in addition to the system's roots (the server's self-signed
    /// certificate or its CA).
    pub ca_pem: Option<Vec<u8>>,
    /// Trust exactly the certificate with this SHA-256 fingerprint (of its DER encoding),
    /// whatever signed it and whatever names it carries, instead of the usual validation.
    pub fingerprint: Option<CertFingerprint>,
    /// Time without progress after which a request is abandoned (and retried): connecting,
    /// the answer to a request, and every wait for more bytes of a body.
    pub io_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            token: None,
            ca_pem: None,
            fingerprint: None,
            io_timeout: Duration::from_secs(60),
        }
    }
}

impl fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerOptions")
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("ca_pem", &self.ca_pem.as_ref().map(|p| p.len()))
            .field("fingerprint", &self.fingerprint)
            .field("io_timeout", &self.io_timeout)
            .finish()
    }
}

/// The SHA-256 digest of a certificate's DER encoding, as `openssl x509 -fingerprint -sha256`
/// prints it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CertFingerprint(pub [u8; 32]);

/// Why a certificate fingerprint could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid certificate fingerprint: expected 64 hex digits (colons allowed), as `openssl x509 -noout -fingerprint -sha256` prints them"
)]
pub struct FingerprintError;

impl FromStr for CertFingerprint {
    type Err = FingerprintError;

    /// Parses 64 hex digits, in either case, optionally separated by `:`, optionally after
    /// `sha256:` or `SHA256 Fingerprint=`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let text = text
            .strip_prefix("SHA256 Fingerprint=")
            .or_else(|| text.strip_prefix("sha256:"))
            .unwrap_or(text);
        let digits: String = text.chars().filter(|&c| c != ':').collect();
        let mut out = [0u8; 32];
        hex::decode_to_slice(&digits, &mut out).map_err(|_| FingerprintError)?;
        Ok(CertFingerprint(out))
    }
}

impl CertFingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> CertFingerprint {
        let mut out = [0u8; 32];
        out.copy_from_slice(Sha256::digest(der).as_slice());
        CertFingerprint(out)
    }
}

impl fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertFingerprint({self})")
    }
}

/// A repository on a zaibei server.
pub struct ServerStore {
    client: reqwest::Client,
    /// `{base}/api/v1/tenants/{tenant}/repos/{repo}/objects`.
    objects_url: String,
    location: String,
    io_timeout: Duration,
}

impl fmt::Debug for ServerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerStore")
            .field("location", &self.location)
            .finish()
    }
}

/// The error body of the API: `{"error":{"code":"...","message":"..."}}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    #[serde(default)]
    message: String,
}

/// One page of a listing.
#[derive(Debug, Deserialize)]
struct ListPage {
    objects: Vec<ListEntry>,
    truncated: bool,
}

#[derive(Debug, Deserialize)]
struct ListEntry {
    name: String,
    size: u64,
    #[serde(default)]
    modified_ms: Option<u64>,
}

/// The kind (and retryability) of a non-success answer: `status`, with the API error `code`
/// where the body had one.
pub(crate) fn status_kind(status: u16, code: Option<&str>) -> StoreErrorKind {
    match status {
        404 => StoreErrorKind::NotFound,
        412 => StoreErrorKind::AlreadyExists,
        409 if code == Some("object_exists") => StoreErrorKind::AlreadyExists,
        401 | 403 => StoreErrorKind::PermissionDenied,
        400 | 413 | 416 | 422 => StoreErrorKind::InvalidInput,
        408 | 429 | 500 | 502 | 503 | 504 => StoreErrorKind::Unavailable,
        _ => StoreErrorKind::Other,
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An object name as a URL path: each segment percent-encoded, joined by `/`.
fn encode_name(name: &str) -> String {
    name.split('/')
        .map(encode_component)
        .collect::<Vec<_>>()
        .join("/")
}

/// Text from a server, made safe to show: printable, on one line, at most 300 characters.
fn sanitize(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    if text.chars().count() > 300 {
        out.push('…');
    }
    out
}

/// The rustls error somewhere in `e`'s chain of causes. I/O errors hide the error they wrap
/// from `source()` (and hyper nests them), so they are looked into.
fn tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        let mut inner = err;
        loop {
            if let Some(t) = inner.downcast_ref::<rustls::Error>() {
                return Some(t);
            }
            match inner
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                Some(wrapped) => inner = wrapped,
                None => break,
            }
        }
        cur = err.source();
    }
    None
}

/// `e` and its causes, joined by `: `.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let text = err.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = err.source();
    }
    out
}

/// Accepts exactly the certificate with a given fingerprint, checking that the server holds
/// its key (handshake signatures) but nothing about who issued it or which names it has:
/// the pin is the trust, as with an SSH host key.
#[derive(Debug)]
struct PinnedCertificate {
    pin: CertFingerprint,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

/// A certificate whose fingerprint is not the pinned one.
#[derive(Debug, thiserror::Error)]
#[error("the server's certificate has SHA-256 fingerprint {got}, not the pinned {want}")]
struct FingerprintMismatch {
    got: CertFingerprint,
    want: CertFingerprint,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let got = CertFingerprint::of_der(end_entity.as_ref());
        if got == self.pin {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                    FingerprintMismatch {
                        got,
                        want: self.pin,
                    },
                ))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ServerStore {
    /// Prepares (lazily: no request is made here) the repository at `loc`. Fails without a
    /// token, or with a token or CA file that cannot be used.
    pub fn new(loc: &ServerLocation, opts: &ServerOptions) -> Result<ServerStore, StoreError> {
        install_crypto_provider();
        let location = crate::Location::Server(loc.clone()).to_string();
        let config_err = |detail: String| {
            StoreError::new(StoreErrorKind::InvalidInput, "connect", "", &location)
                .with_detail(detail)
        };
        let Some(token) = &opts.token else {
            return Err(config_err(
                "a zaibei server needs an API token: --token-file FILE, ZAIBEI_TOKEN_FILE or ZAIBEI_TOKEN"
                    .into(),
            ));
        };
        let token = token.trim();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            // Never show the token itself.
            return Err(config_err(
                "the API token is empty or has characters other than printable ASCII".into(),
            ));
        }
        let bearer = Zeroizing::new(format!("Bearer {token}"));
        let mut auth = HeaderValue::from_str(&bearer)
            .map_err(|_| config_err("the API token cannot be sent in a header".into()))?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);

        if loc.is_cleartext() {
            tracing::warn!(
                "{location}: plain http: the API token and the (encrypted) repository data travel \
                 without TLS; use https outside tests"
            );
        }

        let mut builder = reqwest::Client::builder()
            .http1_only()
            .connect_timeout(opts.io_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            // A redirect could carry the token elsewhere; the API never redirects.
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers);
        if let Some(pin) = opts.fingerprint {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let algorithms = provider.signature_verification_algorithms;
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| config_err(format!("TLS: {e}")))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedCertificate { pin, algorithms }))
                .with_no_client_auth();
            builder = builder.use_preconfigured_tls(tls);
        } else if let Some(pem) = &opts.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| config_err(format!("server CA certificate: {}", chain(&e))))?;
            if certs.is_empty() {
                return Err(config_err(
                    "server CA certificate: no PEM certificate in the file".into(),
                ));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|e| {
            StoreError::new(StoreErrorKind::Other, "connect", "", &location)
                .with_detail(format!("HTTP client: {}", chain(&e)))
        })?;
        Ok(ServerStore {
            client,
            objects_url: format!(
                "{}{API_PREFIX}/tenants/{}/repos/{}/objects",
                loc.base,
                encode_component(&loc.tenant),
                encode_component(&loc.repo)
            ),
            location,
            io_timeout: opts.io_timeout,
        })
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{}", self.objects_url, encode_name(name))
    }

    fn error(&self, kind: StoreErrorKind, op: &'static str, name: &str) -> StoreError {
        StoreError::new(kind, op, name, &self.location)
    }

    fn check(&self, op: &'static str, name: &str) -> Result<(), StoreError> {
        if check_name(name) {
            Ok(())
        } else {
            Err(self
                .error(StoreErrorKind::InvalidInput, op, name)
                .with_detail("invalid object name"))
        }
    }

    /// Maps a failure to get an answer (or a body) at all.
    fn transport_error(&self, e: &reqwest::Error, op: &'static str, name: &str) -> StoreError {
        if let Some(tls) = tls_error(e) {
            // A certificate the client does not trust will not become trusted by retrying.
            return self
                .error(StoreErrorKind::PermissionDenied, op, name)
                .with_detail(format!(
                    "TLS: {tls} (a self-signed server certificate needs --server-ca FILE or \
                     --server-fingerprint SHA256)"
                ));
        }
        let kind = if e.is_builder() {
            StoreErrorKind::Other
        } else {
            StoreErrorKind::Unavailable
        };
        self.error(kind, op, name).with_detail(chain(e))
    }

    fn stalled(&self, op: &'static str, name: &str, what: &str) -> StoreError {
        self.error(StoreErrorKind::Unavailable, op, name)
            .with_detail(format!("{what} for {} s", self.io_timeout.as_secs()))
    }

    /// Sends a request and waits for its answer at most `deadline`; an answer other than
    /// 2xx becomes the error it stands for.
    async fn send(
        &self,
        op: &'static str,
        name: &str,
        request: reqwest::RequestBuilder,
        deadline: Duration,
    ) -> Result<reqwest::Response, StoreError> {
        let response = match tokio::time::timeout(deadline, request.send()).await {
            Err(_) => {
                return Err(self
                    .error(StoreErrorKind::Unavailable, op, name)
                    .with_detail(format!("no answer within {} s", deadline.as_secs())));
            }
            Ok(Err(e)) => return Err(self.transport_error(&e, op, name)),
            Ok(Ok(r)) => r,
        };
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.answer_error(response, op, name).await)
    }

    /// The error a non-success answer stands for, with the server's code and message.
    async fn answer_error(
        &self,
        response: reqwest::Response,
        op: &'static str,
        name: &str,
    ) -> StoreError {
        let status = response.status();
        // The body only adds detail: when it cannot be read, the status still says enough.
        let body = self
            .read_body(response, op, name, MAX_ERROR_BYTES, true)
            .await
            .unwrap_or_default();
        let parsed = serde_json::from_slice::<ErrorBody>(&body).ok();
        let code = parsed.as_ref().map(|b| b.error.code.as_str());
        let kind = status_kind(status.as_u16(), code);
        let mut detail = format!("HTTP {status}");
        match &parsed {
            Some(b) => {
                detail.push_str(&format!(": {}", sanitize(&b.error.code)));
                if !b.error.message.is_empty() {
                    detail.push_str(&format!(": {}", sanitize(&b.error.message)));
                }
            }
            None if !body.is_empty() => {
                detail.push_str(&format!(": {}", sanitize(&String::from_utf8_lossy(&body))));
            }
            None => {}
        }
        if status.is_redirection() {
            detail.push_str(" (the repository API never redirects; is the URL right?)");
        }
        if status == StatusCode::INSUFFICIENT_STORAGE {
            detail = format!("quota exceeded ({detail})");
        }
        self.error(kind, op, name).with_detail(detail)
    }

    /// Reads a body, giving up when no bytes arrive for the I/O timeout (however long the
    /// whole transfer takes while bytes keep coming), or beyond `limit` bytes (an error, or
    /// with `truncate` the first `limit` bytes).
    async fn read_body(
        &self,
        mut response: reqwest::Response,
        op: &'static str,
        name: &str,
        limit: usize,
        truncate: bool,
    ) -> Result<Bytes, StoreError> {
        let hint = response
            .content_length()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        let mut out = BytesMut::with_capacity(hint.min(limit).min(64 << 20));
        loop {
            match tokio::time::timeout(self.io_timeout, response.chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    if out.len() + chunk.len() > limit {
                        if truncate {
                            let room = limit - out.len();
                            out.extend_from_slice(&chunk[..room]);
                            return Ok(out.freeze());
                        }
                        return Err(self
                            .error(StoreErrorKind::Other, op, name)
                            .with_detail(format!("answer larger than {limit} bytes")));
                    }
                    out.extend_from_slice(&chunk);
                }
                Ok(Ok(None)) => return Ok(out.freeze()),
                // A body cut off halfway (reset, truncated): worth another try.
                Ok(Err(e)) => return Err(self.transport_error(&e, op, name)),
                Err(_) => return Err(self.stalled(op, name, "no data")),
            }
        }
    }

    /// Deadline of an upload of `bytes`: twice the I/O timeout plus the time they take at
    /// [`MIN_UPLOAD_RATE`].
    fn upload_deadline(&self, bytes: u64) -> Duration {
        self.io_timeout
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(bytes / MIN_UPLOAD_RATE))
    }

    async fn upload(&self, name: &str, data: Bytes, only_new: bool) -> Result<(), StoreError> {
        self.check("put", name)?;
        let deadline = self.upload_deadline(data.len() as u64);
        let mut request = self
            .client
            .put(self.url(name))
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(data);
        if only_new {
            request = request.header(IF_NONE_MATCH, "*");
        }
        self.send("put", name, request, deadline).await.map(drop)
    }

    fn modified(&self, headers: &HeaderMap) -> Option<SystemTime> {
        let ms = headers
            .get(MODIFIED_MS_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(ms) = ms {
            return SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms));
        }
        let text = headers.get(LAST_MODIFIED)?.to_str().ok()?;
        jiff::fmt::rfc2822::DateTimeParser::new()
            .parse_timestamp(text)
            .ok()
            .map(SystemTime::from)
    }
}

/// The first byte position of a `Content-Range: bytes FIRST-LAST/TOTAL` header.
fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let text = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let spec = text.trim().strip_prefix("bytes ")?;
    let (first, _) = spec.split_once('-')?;
    first.trim().parse().ok()
}

#[async_trait]
impl Store for ServerStore {
    fn location(&self) -> &str {
        &self.location
    }

    async fn put(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        self.upload(name, data, false).await
    }

    async fn put_new(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        self.upload(name, data, true).await
    }

    async fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        self.check("get", name)?;
        let response = self
            .send(
                "get",
                name,
                self.client.get(self.url(name)),
                self.io_timeout,
            )
            .await?;
        self.read_body(response, "get", name, usize::MAX, false)
            .await
    }

    async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.check("get", name)?;
        let past_end = |size: u64| {
            self.error(StoreErrorKind::InvalidInput, "get", name)
                .with_detail(format!(
                    "bytes {}..{} asked of an object of {size} bytes: the range runs past its end",
                    range.start, range.end
                ))
        };
        if range.start > range.end {
            return Err(self
                .error(StoreErrorKind::InvalidInput, "get", name)
                .with_detail("inverted range"));
        }
        let want = range.end - range.start;
        if want == 0 {
            // HTTP cannot ask for no bytes; the object must still exist and be long enough.
            let size = self.stat(name).await?.size;
            if range.end > size {
                return Err(past_end(size));
            }
            return Ok(Bytes::new());
        }
        let request = self
            .client
            .get(self.url(name))
            .header(RANGE, format!("bytes={}-{}", range.start, range.end - 1));
        let response = self.send("get", name, request, self.io_timeout).await?;
        let partial = response.status() == StatusCode::PARTIAL_CONTENT;
        if partial
            && let Some(first) = content_range_start(response.headers())
            && first != range.start
        {
            return Err(self
                .error(StoreErrorKind::Other, "get", name)
                .with_detail(format!(
                    "asked for bytes from {}, the server sent bytes from {first}",
                    range.start
                )));
        }
        let body = self
            .read_body(response, "get", name, usize::MAX, false)
            .await?;
        if !partial {
            // The whole object (a server that ignores ranges): cut the range out of it.
            let size = body.len() as u64;
            if range.end > size {
                return Err(past_end(size));
            }
            return Ok(body.slice(range.start as usize..range.end as usize));
        }
        match (body.len() as u64).cmp(&want) {
            std::cmp::Ordering::Equal => Ok(body),
            // A complete answer that is shorter: the range runs past the object's end.
            std::cmp::Ordering::Less => Err(past_end(range.start + body.len() as u64)),
            std::cmp::Ordering::Greater => Err(self
                .error(StoreErrorKind::Other, "get", name)
                .with_detail(format!(
                    "asked for {want} bytes, the server sent {}",
                    body.len()
                ))),
        }
    }

    async fn stat(&self, name: &str) -> Result<ObjectInfo, StoreError> {
        self.check("stat", name)?;
        let response = self
            .send(
                "stat",
                name,
                self.client.head(self.url(name)),
                self.io_timeout,
            )
            .await?;
        let headers = response.headers();
        let size = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                self.error(StoreErrorKind::Other, "stat", name)
                    .with_detail("the answer to HEAD has no valid Content-Length")
            })?;
        Ok(ObjectInfo {
            name: name.to_owned(),
            size,
            modified: self.modified(headers),
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.check("list", prefix)?;
        let dir = format!("{prefix}/");
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut url = format!(
                "{}?prefix={}&limit={LIST_PAGE_LIMIT}",
                self.objects_url,
                encode_component(prefix)
            );
            if let Some(a) = &after {
                url.push_str(&format!("&after={}", encode_component(a)));
            }
            let response = self
                .send("list", prefix, self.client.get(url), self.io_timeout)
                .await?;
            let body = self
                .read_body(response, "list", prefix, MAX_PAGE_BYTES, false)
                .await?;
            let page: ListPage = serde_json::from_slice(&body).map_err(|e| {
                self.error(StoreErrorKind::Other, "list", prefix)
                    .with_detail(format!("listing page is not the API's JSON: {e}"))
            })?;
            let bad_order = || {
                self.error(StoreErrorKind::Other, "list", prefix)
                    .with_detail("the server's listing is not sorted by name or does not advance")
            };
            let mut last = after.clone();
            for entry in page.objects {
                if last.as_ref().is_some_and(|l| entry.name <= *l) {
                    return Err(bad_order());
                }
                last = Some(entry.name.clone());
                if !entry.name.starts_with(&dir) || !check_name(&entry.name) {
                    continue;
                }
                out.push(ObjectInfo {
                    modified: entry.modified_ms.and_then(|ms| {
                        SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms))
                    }),
                    name: entry.name,
                    size: entry.size,
                });
            }
            if !page.truncated {
                return Ok(out);
            }
            if last == after {
                // Truncated but empty: asking again would loop forever.
                return Err(bad_order());
            }
            after = last;
        }
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.check("delete", name)?;
        self.send(
            "delete",
            name,
            self.client.delete(self.url(name)),
            self.io_timeout,
        )
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(text: &str) -> ServerLocation {
        match crate::Location::parse(text) {
            Ok(crate::Location::Server(s)) => s,
            other => panic!("{text}: {other:?}"),
        }
    }

    fn opts(token: Option<&str>) -> ServerOptions {
        ServerOptions {
            token: token.map(|t| Zeroizing::new(t.to_owned())),
            io_timeout: Duration::from_secs(1),
            ..ServerOptions::default()
        }
    }

    #[test]
    fn statuses_map_to_kinds() {
        use StoreErrorKind as K;
        for (status, code, kind) in [
            (404, None, K::NotFound),
            (412, None, K::AlreadyExists),
            (409, Some("object_exists"), K::AlreadyExists),
            (409, Some("something_else"), K::Other),
            (401, None, K::PermissionDenied),
            (403, Some("forbidden"), K::PermissionDenied),
            (400, None, K::InvalidInput),
            (413, Some("too_large"), K::InvalidInput),
            (416, None, K::InvalidInput),
            (422, None, K::InvalidInput),
            (408, None, K::Unavailable),
            (429, None, K::Unavailable),
            (500, None, K::Unavailable),
            (502, None, K::Unavailable),
            (503, None, K::Unavailable),
            (504, None, K::Unavailable),
            (507, Some("quota_exceeded"), K::Other),
            (301, None, K::Other),
            (501, None, K::Other),
        ] {
            assert_eq!(status_kind(status, code), kind, "{status} {code:?}");
        }
    }

    #[test]
    fn names_and_queries_are_encoded() {
        assert_eq!(encode_name("data/ab/abc_1.x-y"), "data/ab/abc_1.x-y");
        assert_eq!(encode_component("data/"), "data%2F");
        assert_eq!(encode_component("a b?&#%"), "a%20b%3F%26%23%25");
    }

    #[test]
    fn fingerprints_parse_in_the_usual_spellings() {
        let hex = "ab".repeat(32);
        let want = CertFingerprint([0xab; 32]);
        assert_eq!(hex.parse(), Ok(want));
        assert_eq!(hex.to_uppercase().parse(), Ok(want));
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(colons.parse(), Ok(want));
        assert_eq!(format!("SHA256 Fingerprint={colons}").parse(), Ok(want));
        assert_eq!(format!("sha256:{hex}").parse(), Ok(want));
        assert_eq!(want.to_string(), hex);
        for bad in ["", "ab", &"ab".repeat(33), &"zz".repeat(32)] {
            assert_eq!(
                bad.parse::<CertFingerprint>(),
                Err(FingerprintError),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_token_is_required_valid_and_never_shown() {
        let loc = location("https://backup.example.com/acme/main");
        let e = ServerStore::new(&loc, &opts(None)).unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::InvalidInput);
        assert!(e.to_string().contains("token"), "{e}");
        let e = ServerStore::new(&loc, &opts(Some("sec ret\u{7f}"))).unwrap_err();
        assert!(!e.to_string().contains("sec"), "{e}");
        let o = opts(Some("s3cr3t-token"));
        assert!(!format!("{o:?}").contains("s3cr3t"));
        let store = ServerStore::new(&loc, &o).unwrap();
        assert!(!format!("{store:?}").contains("s3cr3t"));
        assert_eq!(store.location(), "https://backup.example.com/acme/main");
        assert_eq!(
            store.url("data/ab/cd"),
            "https://backup.example.com/api/v1/tenants/acme/repos/main/objects/data/ab/cd"
        );
        // A trailing newline from a token file is not part of the token.
        ServerStore::new(&loc, &opts(Some("tok\n"))).unwrap();
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let loc = location("https://backup.example.com/acme/main");
        let o = ServerOptions {
            ca_pem: Some(b"not a certificate".to_vec()),
            ..opts(Some("t"))
        };
        let e = ServerStore::new(&loc, &o).unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::InvalidInput);
        assert!(e.to_string().contains("CA"), "{e}");
    }

    #[tokio::test]
    async fn invalid_names_are_refused_before_any_request() {
        let store =
            ServerStore::new(&location("http://127.0.0.1:9/a/b"), &opts(Some("t"))).unwrap();
        for bad in ["../config", "a//b", "/abs", "UPPER", ""] {
            let e = store.get(bad).await.unwrap_err();
            assert_eq!(e.kind, StoreErrorKind::InvalidInput, "{bad}");
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_a_retryable_error_naming_the_object() {
        let store =
            ServerStore::new(&location("http://127.0.0.1:9/a/b"), &opts(Some("t"))).unwrap();
        let e = store.get("keys/abc").await.unwrap_err();
        assert!(e.retryable, "{e}");
        assert_eq!(e.kind, StoreErrorKind::Unavailable);
        assert!(e.to_string().contains("keys/abc"), "{e}");
    }
}
