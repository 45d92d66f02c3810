//! The S3 side of the proxy: which requests the policies refuse, S3 error responses, and the
//! signed `HEAD` that checks whether a key exists.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::error::ProxyError;
use crate::http::{ReadBuf, RequestHead, ResponseHead};

/// Credentials the proxy signs its own requests (the existence checks of
/// [`FaultPlan::deny_overwrite`](crate::FaultPlan::deny_overwrite)) with, using AWS
/// Signature Version 4.
#[derive(Clone)]
pub struct S3Credentials {
    /// The access key id (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: String,
    /// The secret access key (`AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: String,
    /// The region the signature is scoped to (Garage: `garage`).
    pub region: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("region", &self.region)
            .finish()
    }
}

impl S3Credentials {
    /// Reads `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, and the region from
    /// `ZAIBEI_TEST_S3_REGION`, else `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
    /// `None` if either key variable is missing.
    pub fn from_env() -> Option<Self> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        Some(Self {
            access_key_id: var("AWS_ACCESS_KEY_ID")?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
            region: var("ZAIBEI_TEST_S3_REGION")
                .or_else(|| var("AWS_REGION"))
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".to_owned()),
        })
    }
}

/// What the append-only policies make of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Forward it.
    Allow,
    /// A delete: refuse it if deletes are denied.
    Delete,
    /// An object write: refuse it if overwrites are denied and the key exists.
    Write,
}

/// Sorts a request into the classes the policies care about.
pub(crate) fn classify(req: &RequestHead) -> Policy {
    match req.method.as_str() {
        "DELETE" => Policy::Delete,
        "POST" if req.has_query("delete") => Policy::Delete,
        "POST" if req.has_query("uploadId") => Policy::Write,
        "PUT" if req.query_names().all(|name| name == "x-id") && has_key(req.path()) => {
            Policy::Write
        }
        _ => Policy::Allow,
    }
}

/// Whether a path-style path names an object (`/bucket/key`) rather than a bucket.
fn has_key(path: &str) -> bool {
    path.trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, key)| !key.is_empty())
}

/// A complete S3 error response (`<Error><Code>…`). The body is left out for `HEAD` requests.
pub(crate) fn error_response(
    req: &RequestHead,
    status: u16,
    reason: &str,
    code: &str,
    message: &str,
    keep_alive: bool,
) -> Vec<u8> {
    static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);
    let id = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message><Resource>{}</Resource><RequestId>zaibei-testkit-{id}</RequestId></Error>\n",
        xml_escape(message),
        xml_escape(req.path()),
    );
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nx-amz-request-id: zaibei-testkit-{id}\r\nConnection: {connection}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if req.method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Escapes the XML special characters of `text`.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether an object exists upstream, as far as a `HEAD` could tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Existence {
    /// `HEAD` answered 200.
    Exists,
    /// `HEAD` answered 404.
    Absent,
    /// `HEAD` answered something else (e.g. 403 when unsigned).
    Unknown(u16),
}

/// How long the existence check may take.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Asks `upstream` on a fresh connection whether the object that `req` writes exists, with a
/// `HEAD` of the request's path (signed if `credentials` are given) and the request's `Host`.
pub(crate) async fn object_exists(
    upstream: SocketAddr,
    req: &RequestHead,
    credentials: Option<&S3Credentials>,
) -> Result<Existence, ProxyError> {
    let host = req.headers.get("host").unwrap_or_default().to_owned();
    let path = canonical_path(req.path());
    let mut head = format!("HEAD {path} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(credentials) = credentials {
        for (name, value) in sign_head(credentials, &host, &path, SystemTime::now()) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");

    let exchange = async {
        let mut stream = TcpStream::connect(upstream).await?;
        stream.set_nodelay(true)?;
        stream.write_all(head.as_bytes()).await?;
        let mut buf = ReadBuf::default();
        loop {
            let raw = buf.read_head(&mut stream, "upstream").await?;
            let response = ResponseHead::parse(raw.ok_or(ProxyError::Truncated("upstream"))?)?;
            if !response.is_interim() {
                return Ok::<u16, ProxyError>(response.status);
            }
        }
    };
    let status = tokio::time::timeout(HEAD_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "existence check timed out")
        })??;
    Ok(match status {
        200 => Existence::Exists,
        404 => Existence::Absent,
        other => Existence::Unknown(other),
    })
}

/// Decodes a percent-encoded path and encodes it again the way SigV4 expects for S3: every
/// byte except unreserved characters and `/` as `%XX` (upper-case hex).
pub(crate) fn canonical_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2))
            && let (Some(h), Some(l)) = (hex(h), hex(l))
        {
            decoded.push((h * 16 + l) as u8);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let mut out = String::with_capacity(decoded.len() * 3);
    for b in decoded {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The SHA-256 of an empty payload, in hex.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The headers that sign `HEAD path` (no query, empty payload) for `host` at `now`.
fn sign_head(
    credentials: &S3Credentials,
    host: &str,
    path: &str,
    now: SystemTime,
) -> Vec<(&'static str, String)> {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let amz_date = amz_date(secs);
    let date = &amz_date[..8];
    let signed_headers = "host;x-amz-content-sha256;x-amz-date";
    let canonical_request = format!(
        "HEAD\n{path}\n\nhost:{host}\nx-amz-content-sha256:{EMPTY_SHA256}\nx-amz-date:{amz_date}\n\n{signed_headers}\n{EMPTY_SHA256}"
    );
    let scope = format!("{date}/{}/s3/aws4_request", credentials.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let key = signing_key(
        &credentials.secret_access_key,
        date,
        &credentials.region,
        "s3",
    );
    let signature = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));
    vec![
        ("x-amz-date", amz_date.clone()),
        ("x-amz-content-sha256", EMPTY_SHA256.to_owned()),
        (
            "Authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                credentials.access_key_id
            ),
        ),
    ]
}

/// The SigV4 signing key for a day, region and service.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// HMAC-SHA256 of `data` under `key`.
fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so this never fails.
    let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time in seconds.
fn amz_date(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The proleptic Gregorian date `days` days after 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Count from 0000-03-01 so that leap days fall at the end of a year; eras are 400 years.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(4_102_444_799), "20991231T235959Z");
        assert_eq!(amz_date(4_107_542_399), "21000228T235959Z");
    }

    #[test]
    fn signing_key_matches_aws_example() {
        // The example from the AWS Signature Version 4 documentation.
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex(&key),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
    }

    #[test]
    fn paths() {
        assert_eq!(canonical_path("/b/a%20b/c~d"), "/b/a%20b/c~d");
        assert_eq!(canonical_path("/b/a b+c%2fd"), "/b/a%20b%2Bc/d");
        assert_eq!(canonical_path("/b/%E4%B8%AD"), "/b/%E4%B8%AD");
        assert_eq!(canonical_path("/b/100%"), "/b/100%25");
    }

    fn request(line: &str) -> RequestHead {
        RequestHead::parse(format!("{line} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes()).unwrap()
    }

    #[test]
    fn classes() {
        assert_eq!(classify(&request("DELETE /b/k")), Policy::Delete);
        assert_eq!(classify(&request("POST /b?delete")), Policy::Delete);
        assert_eq!(classify(&request("POST /b?delete=")), Policy::Delete);
        assert_eq!(classify(&request("PUT /b/k")), Policy::Write);
        assert_eq!(classify(&request("PUT /b/k?x-id=PutObject")), Policy::Write);
        assert_eq!(classify(&request("POST /b/k?uploadId=7")), Policy::Write);
        assert_eq!(
            classify(&request("PUT /b/k?partNumber=1&uploadId=7")),
            Policy::Allow
        );
        assert_eq!(classify(&request("POST /b/k?uploads")), Policy::Allow);
        assert_eq!(classify(&request("PUT /b")), Policy::Allow);
        assert_eq!(classify(&request("PUT /b/")), Policy::Allow);
        assert_eq!(classify(&request("PUT /b/k?tagging")), Policy::Allow);
        assert_eq!(classify(&request("GET /b/k")), Policy::Allow);
    }

    #[test]
    fn error_bodies() {
        let get = request("GET /b/a&b");
        let text = String::from_utf8(error_response(
            &get,
            503,
            "Slow Down",
            "SlowDown",
            "x",
            false,
        ))
        .unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Slow Down\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(
            body.contains("<Code>SlowDown</Code>")
                && body.contains("<Resource>/b/a&amp;b</Resource>")
        );
        let head_req = request("HEAD /b/k");
        let text = String::from_utf8(error_response(
            &head_req,
            403,
            "Forbidden",
            "AccessDenied",
            "x",
            true,
        ))
        .unwrap();
        assert!(text.ends_with("\r\n\r\n") && text.contains("Connection: keep-alive"));
    }
}
