#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end tests of the fault proxy against an in-memory HTTP/1.1 object server.

mod support;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use support::{Client, Upstream, data, request_bytes};
use zaibei_testkit::{FaultCounts, FaultPlan, FaultProxy, S3Credentials};

async fn proxy(upstream: &Upstream, plan: FaultPlan) -> FaultProxy {
    FaultProxy::start(upstream.addr, plan).await.unwrap()
}

#[tokio::test]
async fn forwards_byte_exact_on_one_keep_alive_connection() {
    let upstream = Upstream::start().await;
    let proxy = proxy(&upstream, FaultPlan::default()).await;
    let mut client = Client::connect(proxy.addr()).await;
    let mut sent = Vec::new();
    let mut exchange = async |client: &mut Client, bytes: Vec<u8>, method: &str| {
        sent.extend_from_slice(&bytes);
        client.send(&bytes).await.unwrap();
        client.response(method).await.unwrap()
    };

    // A 5 MiB Content-Length body each way.
    let big = data(5 << 20, 1);
    let r = exchange(
        &mut client,
        request_bytes("PUT", "/b/big", &[], &big),
        "PUT",
    )
    .await;
    assert_eq!(r.status, 200);
    let r = exchange(&mut client, request_bytes("GET", "/b/big", &[], b""), "GET").await;
    assert_eq!(r.status, 200);
    assert!(r.body == big, "5 MiB body differs");

    // A chunked request body with a chunk extension and a trailer, and a chunked response.
    let chunked = data(10_000, 2);
    let mut bytes =
        b"PUT /b/chunked HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for (i, part) in chunked.chunks(3000).enumerate() {
        bytes.extend_from_slice(format!("{:X};i={i}\r\n", part.len()).as_bytes());
        bytes.extend_from_slice(part);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\nX-Checksum: abc\r\n\r\n");
    assert_eq!(exchange(&mut client, bytes, "PUT").await.status, 200);
    assert_eq!(upstream.get("/b/chunked").unwrap(), chunked);
    let r = exchange(
        &mut client,
        request_bytes("GET", "/b/chunked?chunked", &[], b""),
        "GET",
    )
    .await;
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body, chunked);
    assert!(r.raw.ends_with(b"0\r\nX-Trailer: done\r\n\r\n"));

    // HEAD responses have no body, even when they announce a length (found or not).
    let r = exchange(
        &mut client,
        request_bytes("HEAD", "/b/big", &[], b""),
        "HEAD",
    )
    .await;
    assert_eq!(
        (r.status, r.header("content-length")),
        (200, Some("5242880"))
    );
    let r = exchange(
        &mut client,
        request_bytes("HEAD", "/b/missing", &[], b""),
        "HEAD",
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());

    // 204 has no body; the connection is still in step afterwards.
    let r = exchange(
        &mut client,
        request_bytes("DELETE", "/b/chunked", &[], b""),
        "DELETE",
    )
    .await;
    assert_eq!(r.status, 204);
    let r = exchange(
        &mut client,
        request_bytes("GET", "/b/chunked", &[], b""),
        "GET",
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(r.body.starts_with(b"<?xml"));

    // Expect: 100-continue: the interim response comes through before the body is sent.
    let body = data(100_000, 3);
    let head = "PUT /b/continue HTTP/1.1\r\nHost: proxy.test\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n";
    sent.extend_from_slice(head.as_bytes());
    client.send(head.as_bytes()).await.unwrap();
    let interim = client.response("PUT").await.unwrap();
    assert_eq!(interim.status, 100);
    sent.extend_from_slice(&body);
    client.send(&body).await.unwrap();
    assert_eq!(client.response("PUT").await.unwrap().status, 200);
    assert_eq!(upstream.get("/b/continue").unwrap(), body);

    // Everything arrived upstream unchanged, on a single connection.
    let seen: Vec<u8> = upstream.seen().iter().flat_map(|s| s.raw.clone()).collect();
    assert!(
        seen == sent,
        "upstream did not receive the exact bytes sent"
    );

    // And responses come back unchanged: compare with a direct connection.
    let mut direct = Client::connect(upstream.addr).await;
    for target in ["/b/big", "/b/continue?chunked", "/b/nothing"] {
        let via_proxy = client.request("GET", target, &[], b"").await.unwrap();
        let straight = direct.request("GET", target, &[], b"").await.unwrap();
        assert!(
            via_proxy.raw == straight.raw,
            "response to {target} differs"
        );
    }

    assert_eq!(
        proxy.counts(),
        FaultCounts {
            requests: 12,
            ..FaultCounts::default()
        }
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn reset_cuts_the_exchange_with_rst() {
    let upstream = Upstream::start().await;
    upstream.put("/b/obj", data(50_000, 4));
    let plan = FaultPlan {
        reset: 1.0,
        seed: 11,
        ..FaultPlan::default()
    };
    let proxy = proxy(&upstream, plan).await;
    for _ in 0..10 {
        let mut client = Client::connect(proxy.addr()).await;
        client
            .send(&request_bytes("GET", "/b/obj", &[], b""))
            .await
            .unwrap();
        let ending = client.read_to_close().await;
        let error = ending.result.expect_err("a reset must be an error");
        assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");
        assert!(ending.bytes.len() < 50_000 + 40);
    }
    // Requests with bodies are cut during the body or the response; either way, no complete
    // response reaches the client and the write or the read fails.
    for i in 0..10 {
        let mut client = Client::connect(proxy.addr()).await;
        let body = data(200_000, 5);
        let sent = client
            .send(&request_bytes("PUT", &format!("/b/put{i}"), &[], &body))
            .await;
        match client.response("PUT").await {
            Ok(r) => panic!("complete response {} despite a reset", r.status),
            Err(e) => assert!(
                sent.is_err()
                    || matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
                    ),
                "{e}"
            ),
        }
    }
    let counts = proxy.counts();
    assert_eq!((counts.requests, counts.reset), (20, 20), "{counts}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn stall_forwards_nothing_for_a_while_then_closes() {
    let upstream = Upstream::start().await;
    upstream.put("/b/obj", data(20_000, 6));
    let stall_for = Duration::from_millis(600);
    let plan = FaultPlan {
        stall: 1.0,
        stall_for,
        seed: 3,
        ..FaultPlan::default()
    };
    let proxy = proxy(&upstream, plan).await;
    for _ in 0..3 {
        let mut client = Client::connect(proxy.addr()).await;
        let start = Instant::now();
        client
            .send(&request_bytes("GET", "/b/obj", &[], b""))
            .await
            .unwrap();
        let ending = client.read_to_close().await;
        ending.result.unwrap();
        let quiet_since = ending.last_byte_at.unwrap_or(start);
        assert!(
            ending.ended_at - quiet_since >= stall_for - Duration::from_millis(50),
            "stalled for only {:?}",
            ending.ended_at - quiet_since
        );
        assert!(
            ending.bytes.len() < 20_000,
            "the whole response came through"
        );
    }
    assert_eq!(proxy.counts().stall, 3);
    proxy.shutdown().await;
}

#[tokio::test]
async fn unavailable_answers_slow_down_without_forwarding() {
    let upstream = Upstream::start().await;
    let plan = FaultPlan {
        unavailable: 1.0,
        ..FaultPlan::default()
    };
    let proxy = proxy(&upstream, plan).await;

    let mut client = Client::connect(proxy.addr()).await;
    let r = client
        .request("PUT", "/b/k", &[], &data(10_000, 7))
        .await
        .unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("connection"), Some("close"));
    let body = String::from_utf8(r.body).unwrap();
    assert!(body.contains("<Error><Code>SlowDown</Code>"), "{body}");
    let ending = client.read_to_close().await;
    assert!(ending.result.is_ok() && ending.bytes.is_empty());

    // A client waiting for 100 Continue gets the 503 right away.
    let mut client = Client::connect(proxy.addr()).await;
    client
        .send(b"PUT /b/k HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 50000000\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(client.response("PUT").await.unwrap().status, 503);

    // A HEAD gets the status without a body.
    let mut client = Client::connect(proxy.addr()).await;
    let r = client.request("HEAD", "/b/k", &[], b"").await.unwrap();
    assert_eq!(r.status, 503);
    assert!(client.read_to_close().await.bytes.is_empty());

    assert!(upstream.seen().is_empty());
    assert_eq!(
        proxy.counts(),
        FaultCounts {
            requests: 3,
            unavailable: 3,
            ..FaultCounts::default()
        }
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn truncate_closes_cleanly_before_the_announced_length() {
    let upstream = Upstream::start().await;
    upstream.put("/b/obj", data(100_000, 8));
    let plan = FaultPlan {
        truncate: 1.0,
        seed: 5,
        ..FaultPlan::default()
    };
    let proxy = proxy(&upstream, plan).await;
    for _ in 0..5 {
        let mut client = Client::connect(proxy.addr()).await;
        client
            .send(&request_bytes("GET", "/b/obj", &[], b""))
            .await
            .unwrap();
        let ending = client.read_to_close().await;
        ending.result.as_ref().expect("a truncation closes cleanly");
        let (announced, received) = ending.content_length_and_body().expect("a whole head");
        assert_eq!(announced, 100_000);
        assert!(received < announced, "{received} bytes of {announced}");
    }
    // Responses without a body cannot be truncated: they pass, and are not counted.
    let mut client = Client::connect(proxy.addr()).await;
    let r = client.request("HEAD", "/b/obj", &[], b"").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        proxy.counts(),
        FaultCounts {
            requests: 6,
            truncate: 5,
            ..FaultCounts::default()
        }
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn deny_delete_refuses_deletes_and_keeps_the_connection() {
    let upstream = Upstream::start().await;
    let plan = FaultPlan {
        deny_delete: true,
        ..FaultPlan::default()
    };
    let proxy = proxy(&upstream, plan).await;
    let mut client = Client::connect(proxy.addr()).await;

    assert_eq!(
        client
            .request("PUT", "/b/k", &[], b"value")
            .await
            .unwrap()
            .status,
        200
    );
    let r = client.request("DELETE", "/b/k", &[], b"").await.unwrap();
    assert_eq!(r.status, 403);
    assert!(
        String::from_utf8(r.body)
            .unwrap()
            .contains("<Code>AccessDenied</Code>")
    );
    let multi = b"<Delete><Object><Key>k</Key></Object></Delete>";
    let r = client
        .request("POST", "/b?delete", &[], multi)
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    let r = client.request("GET", "/b/k", &[], b"").await.unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"value"[..]));

    let methods: Vec<String> = upstream.seen().iter().map(|s| s.method.clone()).collect();
    assert_eq!(methods, ["PUT", "GET"]);
    assert_eq!(
        proxy.counts(),
        FaultCounts {
            requests: 4,
            denied: 2,
            ..FaultCounts::default()
        }
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn deny_overwrite_refuses_writes_to_existing_keys() {
    let upstream = Upstream::start().await;
    let plan = FaultPlan {
        deny_overwrite: true,
        ..FaultPlan::default()
    };
    let credentials = S3Credentials {
        access_key_id: "GKTEST".to_owned(),
        secret_access_key: "secret".to_owned(),
        region: "garage".to_owned(),
    };
    let proxy = FaultProxy::start_with_credentials(upstream.addr, plan, Some(credentials))
        .await
        .unwrap();
    let mut client = Client::connect(proxy.addr()).await;

    assert_eq!(
        client
            .request("PUT", "/b/new", &[], b"first")
            .await
            .unwrap()
            .status,
        200
    );
    let r = client
        .request("PUT", "/b/new", &[], b"second")
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert!(
        String::from_utf8(r.body)
            .unwrap()
            .contains("<Code>AccessDenied</Code>")
    );
    assert_eq!(upstream.get("/b/new").unwrap(), b"first");
    let copy = [("x-amz-copy-source", "/b/other")];
    assert_eq!(
        client
            .request("PUT", "/b/new", &copy, b"")
            .await
            .unwrap()
            .status,
        403
    );
    // Parts are not objects: UploadPart passes even where the object exists.
    let r = client
        .request("PUT", "/b/new?partNumber=1&uploadId=u", &[], b"part")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // CompleteMultipartUpload is a write of the key.
    let complete = b"<CompleteMultipartUpload/>";
    assert_eq!(
        client
            .request("POST", "/b/new?uploadId=u", &[], complete)
            .await
            .unwrap()
            .status,
        403
    );
    assert_eq!(
        client
            .request("POST", "/b/fresh?uploadId=u", &[], complete)
            .await
            .unwrap()
            .status,
        200
    );
    // Deletes are still allowed with only deny_overwrite.
    assert_eq!(
        client
            .request("DELETE", "/b/new", &[], b"")
            .await
            .unwrap()
            .status,
        204
    );

    let seen = upstream.seen();
    let heads: Vec<_> = seen.iter().filter(|s| s.method == "HEAD").collect();
    assert_eq!(heads.len(), 5);
    for head in heads {
        let auth = head.header("authorization").unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=GKTEST/"),
            "{auth}"
        );
        assert!(auth.contains("/garage/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="));
        assert_eq!(head.header("host"), Some("proxy.test"));
    }
    let forwarded: Vec<_> = seen
        .iter()
        .filter(|s| s.method != "HEAD")
        .map(|s| s.target.as_str())
        .collect();
    assert_eq!(
        forwarded,
        [
            "/b/new",
            "/b/new?partNumber=1&uploadId=u",
            "/b/fresh?uploadId=u",
            "/b/new"
        ]
    );
    assert_eq!(
        proxy.counts(),
        FaultCounts {
            requests: 7,
            denied: 3,
            ..FaultCounts::default()
        }
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn plan_changes_at_runtime_and_faults_follow_the_seed() {
    let upstream = Upstream::start().await;
    upstream.put("/b/obj", data(30_000, 9));
    let flaky = FaultPlan {
        reset: 0.3,
        unavailable: 0.3,
        seed: 99,
        ..FaultPlan::default()
    };
    let proxy = proxy(&upstream, flaky.clone()).await;

    async fn outcomes(proxy: &FaultProxy) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..30 {
            let mut client = Client::connect(proxy.addr()).await;
            client
                .send(&request_bytes("GET", "/b/obj", &[], b""))
                .await
                .unwrap();
            out.push(match client.response("GET").await {
                Ok(r) => r.status.to_string(),
                Err(e) => format!("{:?}", e.kind()),
            });
        }
        out
    }
    let first = outcomes(&proxy).await;
    proxy.set_plan(flaky);
    let second = outcomes(&proxy).await;
    assert_eq!(first, second, "the same seed gives the same faults");
    assert!(
        first.iter().any(|o| o == "200") && first.iter().any(|o| o == "503"),
        "{first:?}"
    );
    assert!(first.iter().any(|o| o != "200" && o != "503"), "{first:?}");
    let counts = proxy.counts();
    assert_eq!(counts.requests, 60);
    assert_eq!(
        counts.reset + counts.unavailable,
        2 * first.iter().filter(|o| *o != "200").count() as u64
    );

    proxy.set_plan(FaultPlan::default());
    assert!(outcomes(&proxy).await.iter().all(|o| o == "200"));
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_idle_upstream_close_closes_the_client_connection() {
    let upstream = Upstream::start().await;
    let proxy = proxy(&upstream, FaultPlan::default()).await;
    let mut client = Client::connect(proxy.addr()).await;
    let r = client
        .request("PUT", "/b/k", &[("X-Test-Drop-Connection", "1")], b"v")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let ending = client.read_to_close().await;
    assert!(ending.result.is_ok() && ending.bytes.is_empty());
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_connections() {
    let upstream = Upstream::start().await;
    let proxy = proxy(&upstream, FaultPlan::default()).await;
    let addr = proxy.addr();
    let tasks: Vec<_> = (0..32u8)
        .map(|i| {
            tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                for j in 0..4u8 {
                    let key = format!("/b/{i}/{j}");
                    let body = data(64 * 1024 + usize::from(i), i ^ j);
                    assert_eq!(
                        client
                            .request("PUT", &key, &[], &body)
                            .await
                            .unwrap()
                            .status,
                        200
                    );
                    let r = client.request("GET", &key, &[], b"").await.unwrap();
                    assert!(r.body == body);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(proxy.counts().requests, 32 * 8);
    proxy.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_open_connections() {
    let upstream = Upstream::start().await;
    let proxy = proxy(&upstream, FaultPlan::default()).await;
    let addr = proxy.addr();
    let mut client = Client::connect(addr).await;
    assert_eq!(
        client
            .request("PUT", "/b/k", &[], b"v")
            .await
            .unwrap()
            .status,
        200
    );
    proxy.shutdown().await;
    let ending = client.read_to_close().await;
    assert!(ending.bytes.is_empty());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
