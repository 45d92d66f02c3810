//! End-to-end test of the platform: the real `zaibei server` binary (SQLite catalogue,
//! generated TLS certificate) and a real `zaibei agent`. A tenant operator creates a
//! repository and initialises it through the server with a scoped token; an agent registers
//! with a one-time token (a replay is refused), backs up on its cron schedule through the
//! server with its append-only token, twice as the tree changes; the operator restores the
//! newest snapshot through the server bit-for-bit; the agent cannot delete; the overview
//! shows the host within its RPO target; the audit administrator exports the audit log and
//! `zaibei audit verify` finds it intact, then finds a removed record; SIGTERM stops the
//! server cleanly. The server's second storage site, which a copy job replicates into, is a
//! bucket on the test setup's real S3 server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e_support::*;
use serde_json::{Value, json};
use zaibei_testkit::S3Target;

/// A running `zaibei server`.
struct Server {
    child: Child,
    base: String,
    cert: PathBuf,
    data: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zaibei"))
}

fn start_server(data: &Path) -> Server {
    // A second storage site ("another data centre") for copy jobs: a bucket on the test
    // setup's real S3 server.
    fs::create_dir_all(data).unwrap();
    let s3 = S3Target::from_env().unwrap_or_else(|e| panic!("{e}"));
    let dc2 = s3.location(&S3Target::unique_prefix("platform-dc2"), None);
    let config = data.join("server.toml");
    fs::write(&config, format!("[sites]\ndc2 = \"{dc2}\"\n")).unwrap();
    let mut child = Command::new(bin())
        .args(["--json", "server", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(data)
        .env("ZAIBEI_SERVER_PASSWORD_ITERATIONS", "1000")
        .env("AWS_ACCESS_KEY_ID", &s3.credentials.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &s3.credentials.secret_access_key)
        .env("AWS_REGION", &s3.credentials.region)
        .env("ZAIBEI_SERVER_SCHEDULER_INTERVAL_SECS", "1")
        .env("ZAIBEI_SERVER_AUDIT_CHECKPOINT_RECORDS", "5")
        .env_remove("ZAIBEI_SERVER_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting zaibei server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let listening: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(listening["message_type"], "listening");
    Server {
        base: format!("https://{}", listening["address"].as_str().unwrap()),
        cert: PathBuf::from(listening["certificate"].as_str().unwrap()),
        data: data.to_owned(),
        child,
    }
}

/// Calls the API with curl: returns the status and the parsed body (Null when empty).
fn api(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
        "--cacert",
    ])
    .arg(&server.cert)
    .arg(format!("{}{path}", server.base));
    if let Some(t) = token {
        c.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(b.to_string());
    }
    let out = c.output().expect("running curl");
    assert!(
        out.status.success(),
        "curl {method} {path}: {}",
        describe(&out)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    let value = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()))
    };
    (status.parse().unwrap(), value)
}

fn expect(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    status: u16,
) -> Value {
    let (got, value) = api(server, method, path, token, body);
    assert_eq!(got, status, "{method} {path}: {value}");
    value
}

fn login(server: &Server, user: &str, password: &str) -> String {
    let v = expect(
        server,
        "POST",
        "/api/v1/login",
        None,
        Some(&json!({ "user": user, "password": password })),
        200,
    );
    v["token"].as_str().unwrap().to_owned()
}

fn admin_password(server: &Server, name: &str) -> String {
    let text = fs::read_to_string(server.data.join("initial-admin-passwords.txt")).unwrap();
    text.lines()
        .find_map(|l| {
            let mut f = l.split(' ');
            (f.next() == Some(name)).then(|| f.nth(1).unwrap().to_owned())
        })
        .unwrap()
}

/// Queues a job the server runs itself and waits (at most a minute) until it has ended;
/// returns the job.
fn run_server_job(server: &Server, token: &str, body: &Value) -> Value {
    let job = expect(
        server,
        "POST",
        "/api/v1/tenants/acme/jobs",
        Some(token),
        Some(body),
        201,
    );
    let id = job["id"].as_str().unwrap().to_owned();
    let start = Instant::now();
    loop {
        let j = expect(
            server,
            "GET",
            &format!("/api/v1/tenants/acme/jobs/{id}"),
            Some(token),
            None,
            200,
        );
        if j["state"] == "succeeded" || j["state"] == "failed" {
            return j;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "job stuck: {j}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits until the policy has `n` succeeded backup jobs; returns their snapshots.
fn wait_for_backups(server: &Server, token: &str, n: usize, within: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let jobs = expect(
            server,
            "GET",
            "/api/v1/tenants/acme/jobs",
            Some(token),
            None,
            200,
        );
        let done: Vec<String> = jobs
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["kind"] == "backup" && j["state"] == "succeeded")
            .map(|j| j["snapshot"].as_str().unwrap().to_owned())
            .collect();
        let failed: Vec<&Value> = jobs
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["state"] == "failed")
            .collect();
        assert!(failed.is_empty(), "failed jobs: {failed:?}");
        if done.len() >= n {
            return done;
        }
        assert!(
            start.elapsed() < within,
            "only {} of {n} backups after {within:?}: {jobs}",
            done.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn agent_backs_up_on_schedule_through_the_server_and_restores_bit_for_bit() {
    require_tools();
    let dir = scratch();
    let server = start_server(&dir.path().join("server"));
    expect(&server, "GET", "/api/v1/health", None, None, 200);
    expect(&server, "GET", "/api/v1/ready", None, None, 200);

    // The system administrator makes the tenant and its operator.
    let sys = login(&server, "sysadmin", &admin_password(&server, "sysadmin"));
    expect(
        &server,
        "POST",
        "/api/v1/tenants",
        Some(&sys),
        Some(&json!({ "name": "acme" })),
        201,
    );
    let op_pw = "Operator-Pass-2026!";
    expect(
        &server,
        "POST",
        "/api/v1/users",
        Some(&sys),
        Some(
            &json!({ "name": "op", "password": op_pw, "role": "tenant_operator", "tenant": "acme" }),
        ),
        201,
    );

    // The operator makes a repository and initialises it through the server.
    let op = login(&server, "op", op_pw);
    expect(
        &server,
        "POST",
        "/api/v1/tenants/acme/repos",
        Some(&op),
        Some(&json!({ "name": "main" })),
        201,
    );
    let api_token = expect(
        &server,
        "POST",
        "/api/v1/me/tokens",
        Some(&op),
        Some(&json!({ "name": "cli" })),
        201,
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let location = format!("{}/acme/main", server.base);
    let client = Env::init_at(
        &location,
        vec![
            ("ZAIBEI_TOKEN".into(), Some(api_token.clone())),
            (
                "ZAIBEI_SERVER_CA".into(),
                Some(server.cert.display().to_string()),
            ),
        ],
        Vec::new(),
    );

    // The protected host: an agent registered with a one-time token.
    let reg = expect(
        &server,
        "POST",
        "/api/v1/tenants/acme/agents/registrations",
        Some(&op),
        None,
        201,
    );
    let reg_file = dir.path().join("registration");
    fs::write(&reg_file, reg["token"].as_str().unwrap()).unwrap();
    let state = dir.path().join("agent-state");
    let out = Command::new(bin())
        .args([
            "--json",
            "agent",
            "register",
            "--server",
            &server.base,
            "--hostname",
            "host-1",
            "--token-file",
        ])
        .arg(&reg_file)
        .arg("--state-dir")
        .arg(&state)
        .arg("--server-ca")
        .arg(&server.cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "agent register: {}", describe(&out));
    let registered: Value = serde_json::from_slice(&out.stdout).unwrap();
    let agent_id = registered["agent"].as_str().unwrap().to_owned();
    // The same one-time token again is refused.
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/agents/register",
        None,
        Some(&json!({ "token": reg["token"], "hostname": "intruder" })),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("token_replayed"))
    );

    let src = dir.path().join("src");
    fs::create_dir_all(src.join("db")).unwrap();
    fs::write(
        src.join("db/dump.sql"),
        "CREATE TABLE patients (id int);\n".repeat(20_000),
    )
    .unwrap();
    fs::write(src.join("notes.txt"), "病历 records\n").unwrap();
    let mut rng = Rng(7);
    let random: Vec<u8> = (0..3_000_000).map(|_| rng.next(256) as u8).collect();
    fs::write(src.join("db/blob.bin"), &random).unwrap();

    let policy = json!({
        "name": "nightly", "agent": agent_id, "repo": "main",
        "paths": [src.display().to_string()], "excludes": ["*.tmp"],
        "schedule": "*/3 * * * * *", "retention": { "keep_last": 2 }, "rpo_target_secs": 3600,
        "check_schedule": "*/2 * * * * *"
    });
    expect(
        &server,
        "POST",
        "/api/v1/tenants/acme/policies",
        Some(&op),
        Some(&policy),
        201,
    );

    let password_file = dir.path().join("password");
    fs::write(&password_file, PASSWORD).unwrap();
    let mut agent = Command::new(bin())
        .args(["agent", "run", "--poll", "1s", "--state-dir"])
        .arg(&state)
        .arg("--server-ca")
        .arg(&server.cert)
        .arg("--password-file")
        .arg(&password_file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();

    let first = wait_for_backups(&server, &op, 1, Duration::from_secs(120));
    fs::write(src.join("notes.txt"), "病历 records, amended\n").unwrap();
    fs::write(src.join("scratch.tmp"), "excluded").unwrap();
    // A later scheduled run sees the change.
    let start = Instant::now();
    let newest = loop {
        let snaps = wait_for_backups(&server, &op, 2, Duration::from_secs(120));
        let ids = client.snapshot_ids();
        let latest_has_change = {
            let target = dir.path().join(format!("probe-{}", ids.len()));
            client.restore("latest", &target, &[]);
            fs::read_to_string(restored(&target, &src).join("notes.txt"))
                .unwrap()
                .contains("amended")
        };
        if latest_has_change {
            break snaps;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no backup saw the change"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(newest.len() >= 2 && !first.is_empty());
    let _ = agent.kill();
    let _ = agent.wait();

    // The operator restores the newest snapshot through the server, bit for bit.
    let target = dir.path().join("restore");
    client.restore("latest", &target, &[]);
    let got = restored(&target, &src);
    fs::remove_file(src.join("scratch.tmp")).unwrap();
    assert_treecmp_clean(&src, &got, true);
    assert!(
        !got.join("scratch.tmp").exists(),
        "the policy's exclude was applied"
    );

    // The agent's token appends but never deletes.
    let creds: Value =
        serde_json::from_slice(&fs::read(state.join("agent.json")).unwrap()).unwrap();
    let agent_token = creds["token"].as_str().unwrap();
    let listing = expect(
        &server,
        "GET",
        "/api/v1/tenants/acme/repos/main/objects?prefix=snapshots/",
        Some(agent_token),
        None,
        200,
    );
    let snapshot_object = listing["objects"][0]["name"].as_str().unwrap().to_owned();
    let (status, body) = api(
        &server,
        "DELETE",
        &format!("/api/v1/tenants/acme/repos/main/objects/{snapshot_object}"),
        Some(agent_token),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, _) = api(
        &server,
        "GET",
        "/api/v1/tenants/acme/repos",
        Some(agent_token),
        None,
    );
    assert_eq!(status, 403, "agents hold no tenant read privilege");

    // Server-side maintenance with a maintenance-only key: a full key is refused; retention
    // (forget), prune and a structural check run on the server.
    let maint_pw = dir.path().join("maintenance-password");
    fs::write(&maint_pw, "maintenance only, 维护").unwrap();
    client.ok(&[
        &"key",
        &"add",
        &"--maintenance-only",
        &"--insecure-test-kdf",
        &"--new-password-file",
        &maint_pw,
    ]);
    let (status, body) = api(
        &server,
        "PUT",
        "/api/v1/tenants/acme/repos/main/maintenance-key",
        Some(&op),
        Some(&json!({ "password": PASSWORD })),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("bad_maintenance_key")),
        "a content key is refused: {body}"
    );
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/tenants/acme/jobs",
        Some(&op),
        Some(&json!({ "kind": "prune", "repo": "main" })),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("no_maintenance_key"))
    );
    expect(
        &server,
        "PUT",
        "/api/v1/tenants/acme/repos/main/maintenance-key",
        Some(&op),
        Some(&json!({ "password": "maintenance only, 维护" })),
        204,
    );
    let before = client.snapshot_ids().len();
    assert!(before >= 2);
    for kind in ["forget", "prune"] {
        let done = run_server_job(&server, &op, &json!({ "kind": kind, "policy": "nightly" }));
        assert_eq!(done["state"], "succeeded", "{kind}: {done}");
    }
    assert_eq!(
        client.snapshot_ids().len(),
        2,
        "keep_last 2 applied by the server (had {before})"
    );
    let target = dir.path().join("restore-after-maintenance");
    client.restore("latest", &target, &[]);
    assert_treecmp_clean(&src, &restored(&target, &src), true);
    client.ok(&[&"check"]);

    // Replication to the second site: a repository there sharing key material, and a copy
    // job the server runs with the two maintenance keys (packs as they are, nothing decrypted).
    expect(
        &server,
        "POST",
        "/api/v1/tenants/acme/repos",
        Some(&op),
        Some(&json!({ "name": "offsite", "site": "dc2" })),
        201,
    );
    let (status, body) = api(
        &server,
        "POST",
        "/api/v1/tenants/acme/repos",
        Some(&op),
        Some(&json!({ "name": "nowhere", "site": "mars" })),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("no_site"))
    );
    let from_pw = dir.path().join("from-password");
    fs::write(&from_pw, PASSWORD).unwrap();
    let offsite = Env {
        repo: PathBuf::from(format!("{}/acme/offsite", server.base)),
        dir: scratch(),
        password: PASSWORD.to_owned(),
        bin: bin(),
        extra_env: client.extra_env.clone(),
        extra_args: Vec::new(),
    };
    offsite.ok(&[
        &"init",
        &"--insecure-test-kdf",
        &"--from",
        &location,
        &"--from-password-file",
        &from_pw,
    ]);
    offsite.ok(&[
        &"key",
        &"add",
        &"--maintenance-only",
        &"--insecure-test-kdf",
        &"--new-password-file",
        &maint_pw,
    ]);
    expect(
        &server,
        "PUT",
        "/api/v1/tenants/acme/repos/offsite/maintenance-key",
        Some(&op),
        Some(&json!({ "password": "maintenance only, 维护" })),
        204,
    );
    let copied = run_server_job(
        &server,
        &op,
        &json!({ "kind": "copy", "repo": "main", "target": "offsite" }),
    );
    assert_eq!(copied["state"], "succeeded", "{copied}");
    let mut at_main = client.snapshot_ids();
    let mut at_offsite = offsite.snapshot_ids();
    at_main.sort();
    at_offsite.sort();
    assert_eq!(at_main, at_offsite, "the second site holds every snapshot");
    let target = dir.path().join("restore-offsite");
    offsite.restore("latest", &target, &[]);
    assert_treecmp_clean(&src, &restored(&target, &src), true);

    // Content verification, a drill and a restore run on the agent, which holds the full key.
    let mut paused = policy.clone();
    paused["disabled"] = json!(true);
    expect(
        &server,
        "PUT",
        "/api/v1/tenants/acme/policies/nightly",
        Some(&op),
        Some(&paused),
        200,
    );
    let restore_root = dir.path().join("restores");
    let restore_target = restore_root.join("agent-restore");
    for (kind, extra) in [
        ("verify", json!({})),
        ("drill", json!({})),
        (
            "restore",
            json!({ "target": restore_target.display().to_string() }),
        ),
    ] {
        let mut body = json!({ "kind": kind, "policy": "nightly" });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let job = expect(
            &server,
            "POST",
            "/api/v1/tenants/acme/jobs",
            Some(&op),
            Some(&body),
            201,
        );
        let id = job["id"].as_str().unwrap().to_owned();
        let mut done = Value::Null;
        for _ in 0..6 {
            let out = Command::new(bin())
                .args(["agent", "run", "--once", "--state-dir"])
                .arg(&state)
                .arg("--restore-root")
                .arg(&restore_root)
                .arg("--server-ca")
                .arg(&server.cert)
                .arg("--password-file")
                .arg(&password_file)
                .output()
                .unwrap();
            assert!(
                out.status.code() == Some(0) || out.status.code() == Some(3),
                "agent --once: {}",
                describe(&out)
            );
            done = expect(
                &server,
                "GET",
                &format!("/api/v1/tenants/acme/jobs/{id}"),
                Some(&op),
                None,
                200,
            );
            if done["state"] == "succeeded" || done["state"] == "failed" {
                break;
            }
        }
        assert_eq!(done["state"], "succeeded", "{kind}: {done}");
    }
    assert_treecmp_clean(&src, &restored(&restore_target, &src), true);

    // The overview: the host is within its RPO target.
    let overview = expect(
        &server,
        "GET",
        "/api/v1/tenants/acme/overview",
        Some(&op),
        None,
        200,
    );
    assert_eq!(overview[0]["hostname"], "host-1");
    assert_eq!(overview[0]["within_target"], true, "{overview}");
    let metrics = expect(&server, "GET", "/metrics", Some(&sys), None, 200);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("zaibei_rpo_lag_seconds{tenant=\"acme\",policy=\"nightly\"}")
    );

    // The audit administrator exports the log (checkpoints first, so every one must be
    // covered by the export); it verifies against them.
    let audit = login(
        &server,
        "auditadmin",
        &admin_password(&server, "auditadmin"),
    );
    let (status, _) = api(&server, "GET", "/api/v1/audit", Some(&sys), None);
    assert_eq!(
        status, 403,
        "the system administrator cannot read the audit log"
    );
    let export = dir.path().join("audit.jsonl");
    let key = dir.path().join("audit-key.pem");
    let checkpoints = dir.path().join("checkpoints.json");
    for (path, file) in [
        ("/api/v1/audit/checkpoints", &checkpoints),
        ("/api/v1/audit/export", &export),
        ("/api/v1/audit/key", &key),
    ] {
        let out = Command::new("curl")
            .args(["-sSf", "--cacert"])
            .arg(&server.cert)
            .arg("-H")
            .arg(format!("Authorization: Bearer {audit}"))
            .arg("-o")
            .arg(file)
            .arg(format!("{}{path}", server.base))
            .output()
            .unwrap();
        assert!(out.status.success(), "{path}: {}", describe(&out));
    }
    let verify = |log: &Path| {
        Command::new(bin())
            .args(["audit", "verify", "--log"])
            .arg(log)
            .arg("--checkpoints")
            .arg(&checkpoints)
            .arg("--key")
            .arg(&key)
            .output()
            .unwrap()
    };
    let out = verify(&export);
    assert!(out.status.success(), "audit verify: {}", describe(&out));
    let anchored: Value = serde_json::from_slice(&fs::read(&checkpoints).unwrap()).unwrap();
    assert!(
        !anchored.as_array().unwrap().is_empty(),
        "checkpoints were anchored"
    );
    let text = fs::read_to_string(&export).unwrap();
    for action in [
        "login",
        "agent_registered",
        "agent_token_replayed",
        "policy_created",
        "job_run",
        "access_denied",
    ] {
        assert!(
            text.contains(&format!("\"action\":\"{action}\"")),
            "no {action} record"
        );
    }
    let lines: Vec<&str> = text.lines().collect();
    let tampered = dir.path().join("tampered.jsonl");
    fs::write(
        &tampered,
        [&lines[..3], &lines[4..]].concat().join("\n") + "\n",
    )
    .unwrap();
    let out = verify(&tampered);
    assert_eq!(
        out.status.code(),
        Some(4),
        "a removed record is found: {}",
        describe(&out)
    );

    // SIGTERM: a graceful stop.
    let mut server = server;
    let pid = server.child.id();
    Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "server exit: {status}");
}
