//! Repository locations as users write them, e.g. `/srv/repo`, `fs:/srv/repo`,
//! `s3:https://s3.example.com/bucket/prefix`, `oss:https://oss-cn-hangzhou.aliyuncs.com/bucket`,
//! `https://backup.example.com:8443/acme/main` (a repository on a zaibei server).

use std::fmt;
use std::path::PathBuf;

/// The kind of object storage service behind a location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Any S3-compatible service (AWS, MinIO, Ceph RGW, Garage, and the S3 APIs of the
    /// Chinese clouds).
    S3,
    /// Alibaba Cloud OSS through its native API.
    Oss,
    /// Huawei Cloud OBS through its native API.
    Obs,
    /// Tencent Cloud COS through its native API.
    Cos,
}

impl Service {
    /// The scheme that names the service in a location.
    pub fn scheme(self) -> &'static str {
        match self {
            Service::S3 => "s3",
            Service::Oss => "oss",
            Service::Obs => "obs",
            Service::Cos => "cos",
        }
    }
}

/// A bucket (and prefix inside it) on an object storage service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLocation {
    /// The service.
    pub service: Service,
    /// Endpoint URL with scheme, host and optional port, without a trailing slash.
    pub endpoint: String,
    /// Bucket name.
    pub bucket: String,
    /// Prefix of every object name inside the bucket, without leading or trailing `/`
    /// (empty for the bucket's root).
    pub prefix: String,
}

/// A parsed repository location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory.
    Fs(PathBuf),
    /// A store in this process's memory (tests, dry runs); the text names it.
    Memory(String),
    /// A bucket on an object storage service.
    Bucket(BucketLocation),
    /// A tenant's repository on a zaibei server (`https://HOST[:PORT]/TENANT/REPO`).
    Server(ServerLocation),
}

/// A tenant's repository on a zaibei server, reached through its repository API
/// (`docs/API.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLocation {
    /// Scheme, host and optional port (`https://backup.example.com:8443`), without a trailing
    /// slash.
    pub base: String,
    /// Tenant name: `[a-z0-9][a-z0-9_-]{0,62}`.
    pub tenant: String,
    /// Repository name within the tenant: `[a-z0-9][a-z0-9_-]{0,62}`.
    pub repo: String,
}

impl ServerLocation {
    /// True when the location is plain `http://`, where the token travels in clear.
    pub fn is_cleartext(&self) -> bool {
        self.base.starts_with("http://")
    }
}

/// Checks a tenant or repository name of a server location: `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn check_server_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

/// Why a location could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid repository location {location:?}: {reason}")]
pub struct LocationError {
    /// The text as given.
    pub location: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Location {
    /// Parses a location. A string without a known `scheme:` is a local path.
    pub fn parse(text: &str) -> Result<Location, LocationError> {
        let err = |reason: &str| LocationError {
            location: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(err("empty location"));
        }
        let Some((scheme, rest)) = text.split_once(':') else {
            return Ok(Location::Fs(PathBuf::from(text)));
        };
        let service = match scheme {
            "fs" => {
                if rest.is_empty() {
                    return Err(err("fs: needs a path"));
                }
                return Ok(Location::Fs(PathBuf::from(rest)));
            }
            "memory" => return Ok(Location::Memory(rest.to_owned())),
            "https" | "http" => {
                return parse_server(scheme, rest)
                    .map(Location::Server)
                    .map_err(|reason| LocationError {
                        location: redact_userinfo(text),
                        reason,
                    });
            }
            "s3" => Service::S3,
            "oss" => Service::Oss,
            "obs" => Service::Obs,
            "cos" => Service::Cos,
            // `C:` style or `./a:b` paths: only a bare lowercase word is a scheme.
            other if other.contains('/') || other.len() <= 1 => {
                return Ok(Location::Fs(PathBuf::from(text)));
            }
            _ => {
                return Err(err(
                    "unknown scheme; use PATH, fs:PATH, https://SERVER/TENANT/REPO, s3:URL, oss:URL, obs:URL, cos:URL or memory:NAME",
                ));
            }
        };
        Ok(Location::Bucket(
            parse_bucket(service, rest).map_err(|r| err(&r))?,
        ))
    }
}

/// `text` with any `user:password@` of its authority replaced, so that an error message does
/// not repeat a secret.
fn redact_userinfo(text: &str) -> String {
    let Some((scheme, after)) = text.split_once("://") else {
        return text.to_owned();
    };
    let authority_end = after.find('/').unwrap_or(after.len());
    match after[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://…@{}", &after[at + 1..]),
        None => text.to_owned(),
    }
}

fn parse_server(scheme: &str, rest: &str) -> Result<ServerLocation, String> {
    let usage = format!("expected {scheme}://HOST[:PORT]/TENANT/REPO");
    let after = rest.strip_prefix("//").ok_or_else(|| usage.clone())?;
    if rest.contains('?') || rest.contains('#') {
        return Err("query strings and fragments are not part of a location".into());
    }
    let (host, path) = after.split_once('/').unwrap_or((after, ""));
    if host.contains('@') {
        return Err(
            "credentials do not belong in the location (they would show in every message and in `ps`); use --token-file, ZAIBEI_TOKEN_FILE or ZAIBEI_TOKEN"
                .into(),
        );
    }
    if host.is_empty() {
        return Err("no server host".into());
    }
    if host.contains(|c: char| c.is_whitespace() || c.is_control() || c == '%' || c == '\\') {
        return Err("the server host has characters no host name has".into());
    }
    // `host`, `host:port`, `[v6]` or `[v6]:port`.
    let port = match host.rfind(']') {
        Some(end) if host.starts_with('[') => match &host[end + 1..] {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("bad address after `]`")?),
        },
        _ if host.contains('[') || host.contains(']') => return Err("bad IPv6 address".into()),
        _ => host.split_once(':').map(|(_, p)| p),
    };
    if let Some(p) = port
        && p.parse::<u16>().map_or(true, |n| n == 0)
    {
        return Err(format!("bad port {p:?}"));
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut segments = path.split('/');
    let (Some(tenant), Some(repo), None) = (segments.next(), segments.next(), segments.next())
    else {
        return Err(format!("{usage}: the path must be exactly /TENANT/REPO"));
    };
    for (what, name) in [("tenant", tenant), ("repository", repo)] {
        if !check_server_name(name) {
            return Err(format!(
                "bad {what} name {name:?}: 1 to 63 of a-z, 0-9, `_` and `-`, starting with a letter or digit"
            ));
        }
    }
    Ok(ServerLocation {
        base: format!("{scheme}://{host}"),
        tenant: tenant.to_owned(),
        repo: repo.to_owned(),
    })
}

fn parse_bucket(service: Service, url: &str) -> Result<BucketLocation, String> {
    let (proto, after) = url.split_once("://").ok_or_else(|| {
        format!(
            "expected {}:https://HOST[:PORT]/BUCKET[/PREFIX]",
            service.scheme()
        )
    })?;
    if proto != "http" && proto != "https" {
        return Err(format!(
            "endpoint scheme must be http or https, not {proto:?}"
        ));
    }
    let (host, path) = after.split_once('/').unwrap_or((after, ""));
    if host.is_empty() {
        return Err("no endpoint host".into());
    }
    if host.contains('@') {
        return Err(
            "credentials do not belong in the location (they would show in every message); use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or --access-key-id with --secret-access-key-file"
                .into(),
        );
    }
    if url.contains('?') || url.contains('#') {
        return Err("query strings and fragments are not part of a location".into());
    }
    let path = path.trim_matches('/');
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        return Err("no bucket name after the endpoint".into());
    }
    let prefix = prefix.trim_matches('/');
    if prefix
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
        && !prefix.is_empty()
    {
        return Err("the prefix has empty, `.` or `..` segments".into());
    }
    Ok(BucketLocation {
        service,
        endpoint: format!("{proto}://{host}"),
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
    })
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Fs(p) => write!(f, "{}", p.display()),
            Location::Memory(n) => write!(f, "memory:{n}"),
            Location::Bucket(b) => {
                write!(f, "{}:{}/{}", b.service.scheme(), b.endpoint, b.bucket)?;
                if !b.prefix.is_empty() {
                    write!(f, "/{}", b.prefix)?;
                }
                Ok(())
            }
            Location::Server(s) => write!(f, "{}/{}/{}", s.base, s.tenant, s.repo),
        }
    }
}

/// The bucket of a location that must name one (tests).
#[cfg(test)]
pub(crate) fn bucket(text: &str) -> BucketLocation {
    match Location::parse(text) {
        Ok(Location::Bucket(b)) => b,
        other => panic!("{text}: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            Location::parse("/srv/repo"),
            Ok(Location::Fs("/srv/repo".into()))
        );
        assert_eq!(
            Location::parse("fs:/srv/repo"),
            Ok(Location::Fs("/srv/repo".into()))
        );
        assert_eq!(Location::parse("./a:b"), Ok(Location::Fs("./a:b".into())));
        assert_eq!(Location::parse("repo"), Ok(Location::Fs("repo".into())));
        assert!(Location::parse("").is_err());
        assert!(Location::parse("fs:").is_err());
        assert!(Location::parse("ftp:host/x").is_err());
    }

    fn server(text: &str) -> ServerLocation {
        match Location::parse(text) {
            Ok(Location::Server(s)) => s,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn servers() {
        let s = server("https://backup.example.com:8443/acme/main");
        assert_eq!(s.base, "https://backup.example.com:8443");
        assert_eq!(s.tenant, "acme");
        assert_eq!(s.repo, "main");
        assert!(!s.is_cleartext());
        assert_eq!(
            Location::Server(s).to_string(),
            "https://backup.example.com:8443/acme/main"
        );
        let s = server("http://127.0.0.1:9000/t-1/repo_2/");
        assert!(s.is_cleartext());
        assert_eq!(
            Location::Server(s).to_string(),
            "http://127.0.0.1:9000/t-1/repo_2"
        );
        assert_eq!(server("https://[::1]:8443/a/b").base, "https://[::1]:8443");
        assert_eq!(server("https://[::1]/a/b").base, "https://[::1]");
        let long = "a".repeat(63);
        assert_eq!(server(&format!("https://h/{long}/{long}")).tenant, long);
        for bad in [
            "https:host/a/b",
            "https://",
            "https:///a/b",
            "https://host",
            "https://host/",
            "https://host/acme",
            "https://host/acme/",
            "https://host/acme/main/extra",
            "https://host/acme//main",
            "https://host//acme/main",
            "https://host/Acme/main",
            "https://host/acme/ma.in",
            "https://host/-acme/main",
            "https://host/_acme/main",
            "https://host/acme/m%61in",
            &format!("https://host/{}/main", "a".repeat(64)),
            "https://host/acme/main?token=x",
            "https://host/acme/main#x",
            "https://user:secret@host/acme/main",
            "https://token@host/acme/main",
            "https://host:/acme/main",
            "https://host:0/acme/main",
            "https://host:99999/acme/main",
            "https://host:https/acme/main",
            "https://[::1/acme/main",
            "https://[::1]x/acme/main",
            "https://ho st/acme/main",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
        // Credentials are refused without being echoed as part of a host.
        let e = Location::parse("https://u:pw@host/a/b").unwrap_err();
        assert!(e.reason.contains("credentials"), "{e}");
        assert!(!e.to_string().contains("pw"), "{e}");
    }

    #[test]
    fn buckets() {
        let b = bucket("s3:http://127.0.0.1:3900/backups/site-a/db");
        assert_eq!(b.service, Service::S3);
        assert_eq!(b.endpoint, "http://127.0.0.1:3900");
        assert_eq!(b.bucket, "backups");
        assert_eq!(b.prefix, "site-a/db");
        let b = bucket("oss:https://oss-cn-hangzhou.aliyuncs.com/zb/");
        assert_eq!(b.service, Service::Oss);
        assert_eq!(b.prefix, "");
        assert_eq!(
            Location::Bucket(b).to_string(),
            "oss:https://oss-cn-hangzhou.aliyuncs.com/zb"
        );
        assert_eq!(
            bucket("cos:https://cos.ap-beijing.myqcloud.com/b-125/x").prefix,
            "x"
        );
        assert_eq!(
            bucket("obs:https://obs.cn-north-4.myhuaweicloud.com/b").bucket,
            "b"
        );
        for bad in [
            "s3:bucket",
            "s3:https://host",
            "s3:https:///bucket",
            "s3:ftp://host/bucket",
            "s3:https://host/bucket/a/../b",
            "s3:https://host/bucket/a//b",
            "s3:https://AKID:SECRET@host/bucket",
            "s3:https://host/bucket?versionId=1",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }
}
