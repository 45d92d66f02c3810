//! Repository locations as users write them, e.g. `/srv/repo`, `fs:/srv/repo`,
//! `s3:https://s3.example.com/bucket/prefix`, `oss:https://oss-cn-hangzhou.aliyuncs.com/bucket`.

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
                    "unknown scheme; use PATH, fs:PATH, s3:URL, oss:URL, obs:URL, cos:URL or memory:NAME",
                ));
            }
        };
        Ok(Location::Bucket(
            parse_bucket(service, rest).map_err(|r| err(&r))?,
        ))
    }
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
