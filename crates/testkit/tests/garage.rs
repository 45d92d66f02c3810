#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The proxy in front of a real Garage, driven with `curl --aws-sigv4`.
//!
//! Needs the S3 server that `scripts/test` starts (or one described by `ZAIBEI_TEST_S3_*`)
//! and curl; fails, never skips, without them.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::process::Command;
use zaibei_testkit::{FaultPlan, FaultProxy, S3Credentials, S3Target};

/// Runs curl against the proxy; returns (curl exit code, HTTP status, body).
async fn curl(
    proxy: SocketAddr,
    credentials: &S3Credentials,
    args: &[&str],
    path: &str,
) -> (i32, String, String) {
    let url = format!("http://{proxy}{path}");
    let output = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--aws-sigv4")
        .arg(format!("aws:amz:{}:s3", credentials.region))
        .arg("--user")
        .arg(format!(
            "{}:{}",
            credentials.access_key_id, credentials.secret_access_key
        ))
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .args(args)
        .arg(&url)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    (
        output.status.code().unwrap_or(-1),
        status.to_owned(),
        body.to_owned(),
    )
}

#[tokio::test]
async fn policies_and_faults_against_garage() {
    let target = S3Target::from_env().unwrap_or_else(|e| panic!("{e}"));
    let (bucket, credentials) = (target.bucket.clone(), target.credentials.clone());
    assert!(
        std::process::Command::new("curl")
            .arg("--version")
            .output()
            .is_ok(),
        "curl is needed (scripts/test installs it)"
    );
    let upstream: SocketAddr = target.addr().unwrap();
    let plan = FaultPlan {
        deny_delete: true,
        deny_overwrite: true,
        ..FaultPlan::default()
    };
    let proxy =
        FaultProxy::start_with_credentials(upstream, plan.clone(), Some(credentials.clone()))
            .await
            .unwrap();
    let addr = proxy.addr();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let key = format!("/{bucket}/testkit/{nanos}/a b+c");
    let url_key = key.replace(' ', "%20").replace('+', "%2B");

    let (code, status, _) = curl(
        addr,
        &credentials,
        &["-X", "PUT", "--data-binary", "first"],
        &url_key,
    )
    .await;
    assert_eq!((code, status.as_str()), (0, "200"));
    let (_, status, body) = curl(
        addr,
        &credentials,
        &["-X", "PUT", "--data-binary", "second"],
        &url_key,
    )
    .await;
    assert_eq!(status, "403", "{body}");
    assert!(body.contains("<Code>AccessDenied</Code>"));
    let (_, status, _) = curl(addr, &credentials, &["-X", "DELETE"], &url_key).await;
    assert_eq!(status, "403");
    let (_, status, body) = curl(addr, &credentials, &[], &url_key).await;
    assert_eq!((status.as_str(), body.as_str()), ("200", "first"));
    assert_eq!(proxy.counts().denied, 2);

    proxy.set_plan(FaultPlan {
        unavailable: 1.0,
        ..FaultPlan::default()
    });
    let (_, status, body) = curl(addr, &credentials, &[], &url_key).await;
    assert_eq!(status, "503");
    assert!(body.contains("<Code>SlowDown</Code>"));

    // A large object, so that truncation and resets have room to fall into the body.
    let big_key = format!("/{bucket}/testkit/{nanos}/big");
    let big = std::env::temp_dir().join(format!("zaibei-testkit-{nanos}"));
    std::fs::write(&big, vec![b'z'; 3 << 20]).unwrap();
    proxy.set_plan(FaultPlan::default());
    let upload = format!("@{}", big.display());
    let (code, status, _) = curl(
        addr,
        &credentials,
        &["-X", "PUT", "--data-binary", &upload],
        &big_key,
    )
    .await;
    std::fs::remove_file(&big).unwrap();
    assert_eq!((code, status.as_str()), (0, "200"));

    proxy.set_plan(FaultPlan {
        truncate: 1.0,
        seed: 1,
        ..FaultPlan::default()
    });
    let (code, status, body) = curl(addr, &credentials, &[], &big_key).await;
    // curl: 18 = partial file.
    assert_eq!((code, status.as_str()), (18, "200"));
    assert!(body.len() < 3 << 20);

    proxy.set_plan(FaultPlan {
        reset: 1.0,
        seed: 2,
        ..FaultPlan::default()
    });
    let (code, _, _) = curl(addr, &credentials, &[], &big_key).await;
    // curl: 52 = empty reply, 56 = receive failure (reset), 18 = partial.
    assert!([18, 52, 56].contains(&code), "curl exit {code}");

    proxy.set_plan(FaultPlan::default());
    let (_, status, body) = curl(addr, &credentials, &[], &big_key).await;
    assert_eq!((status.as_str(), body.len()), ("200", 3 << 20));
    let counts = proxy.counts();
    assert_eq!(
        (counts.unavailable, counts.truncate, counts.reset),
        (1, 1, 1),
        "{counts}"
    );
    eprintln!("{counts}");
    proxy.shutdown().await;
}
