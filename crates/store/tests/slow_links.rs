//! Slow links are not stalls: an object store that takes longer than the I/O timeout to move
//! a body, but keeps moving it, must not be cut off; one that stops sending must be, within
//! about the I/O timeout. Runs `ObjectStore` against a tiny HTTP/1.1 server that reads and
//! writes bodies at a fixed pace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zaibei_store::{BucketOptions, Location, ObjectStore, Store};

/// How the server moves bodies: `step` bytes, then a pause of `pause`.
#[derive(Clone, Copy)]
struct Pace {
    step: usize,
    pause: Duration,
    /// Stop sending (but keep the connection open) after this many body bytes.
    stall_after: Option<usize>,
}

const BODY: usize = 1 << 20;

async fn read_head(sock: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if sock.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

async fn serve(sock: TcpStream, pace: Pace) {
    let mut sock = sock;
    while let Some(head) = read_head(&mut sock).await {
        let lower = head.to_ascii_lowercase();
        let length: usize = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0);
        if head.starts_with("PUT") {
            // Read the upload slowly.
            let mut left = length;
            let mut buf = vec![0u8; pace.step];
            while left > 0 {
                let n = sock.read(&mut buf[..pace.step.min(left)]).await.unwrap();
                assert!(n > 0);
                left -= n;
                tokio::time::sleep(pace.pause).await;
            }
            sock.write_all(b"HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
        } else if head.starts_with("GET") {
            let body: Vec<u8> = (0..BODY).map(|i| (i % 251) as u8).collect();
            sock.write_all(
                format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\nETag: \"e\"\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
            for (sent, chunk) in body.chunks(pace.step).enumerate() {
                if pace.stall_after.is_some_and(|s| sent * pace.step >= s) {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                if sock.write_all(chunk).await.is_err() {
                    return;
                }
                tokio::time::sleep(pace.pause).await;
            }
        } else {
            return;
        }
    }
}

async fn server(pace: Pace) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            sock.set_nodelay(true).unwrap();
            tokio::spawn(serve(sock, pace));
        }
    });
    format!("s3:http://{addr}/bucket/repo")
}

fn store(location: &str, io_timeout: Duration) -> ObjectStore {
    let Ok(Location::Bucket(b)) = Location::parse(location) else {
        panic!("{location}");
    };
    ObjectStore::new(
        &b,
        &BucketOptions {
            access_key_id: Some("id".into()),
            secret_access_key: Some("secret".into()),
            io_timeout,
            ..BucketOptions::default()
        },
    )
    .unwrap()
}

/// 1 MiB in 64 KiB steps every 150 ms: about 2.4 s, twice the I/O timeout.
const SLOW: Pace = Pace {
    step: 64 << 10,
    pause: Duration::from_millis(150),
    stall_after: None,
};

#[tokio::test]
async fn a_slow_but_steady_upload_is_not_cut_off() {
    let s = store(&server(SLOW).await, Duration::from_secs(1));
    let t0 = Instant::now();
    s.put("data/ab/slow", Bytes::from(vec![7u8; BODY]))
        .await
        .unwrap();
    assert!(
        t0.elapsed() > Duration::from_secs(1),
        "the server was not slow"
    );
}

#[tokio::test]
async fn a_slow_but_steady_download_is_not_cut_off() {
    let s = store(&server(SLOW).await, Duration::from_secs(1));
    let t0 = Instant::now();
    let got = s.get("data/ab/slow").await.unwrap();
    assert_eq!(got.len(), BODY);
    assert!(
        t0.elapsed() > Duration::from_secs(1),
        "the server was not slow"
    );
}

#[tokio::test]
async fn a_stalled_download_fails_soon_and_may_be_retried() {
    let pace = Pace {
        stall_after: Some(BODY / 2),
        ..SLOW
    };
    let s = store(&server(pace).await, Duration::from_secs(1));
    let t0 = Instant::now();
    let e = s.get("data/ab/stall").await.unwrap_err();
    assert!(e.retryable, "{e}");
    assert!(e.to_string().contains("stalled"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}
