//! Test support for the server's integration tests: a real server in-process (TLS on
//! `127.0.0.1:0`, a temporary data directory, fast password hashing) on SQLite or on a fresh
//! PostgreSQL database, an HTTPS client that trusts its generated certificate, and helpers for
//! the usual set-up (administrators, tenants, users, agents, repositories, policies).
//!
//! Every suite runs on both catalogues: [`both_backends!`] turns `async fn name(Backend)` into
//! the tests `sqlite::name` and `postgres::name`. The PostgreSQL variants need
//! `ZAIBEI_TEST_POSTGRES_URL` (`scripts/test` starts a server) and fail without it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use reqwest::{Method, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zaibei_server::catalogue::Catalogue;
use zaibei_server::{Server, ServerConfig};
use zaibei_types::Role;

/// Generates `#[tokio::test]`s `sqlite::NAME` and `postgres::NAME` for each
/// `async fn NAME(backend: Backend)` named (`#[macro_use] mod common;` to use it).
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}

/// Which catalogue the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite catalogue in the data directory.
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The `database` setting for a new server.
    pub fn database(self) -> Option<String> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some(zaibei_testkit::fresh_database()),
        }
    }
}

/// A password every policy in these tests accepts (and that contains no user name).
pub const PASSWORD: &str = "Qv7#kW2!mZ9@pL";

/// An answer.
#[derive(Debug)]
pub struct Resp {
    /// Its status.
    pub status: StatusCode,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
    /// Its body.
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} answered a body that is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The stable error code of an error answer, after checking the error body's shape:
    /// `{"error":{"code":"…","message":"…"}}` and nothing else.
    pub fn error_code(&self) -> String {
        let v = self.json();
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("error body is not an object: {v}"));
        assert_eq!(obj.len(), 1, "error body has other keys: {v}");
        let err = obj["error"]
            .as_object()
            .unwrap_or_else(|| panic!("no error object: {v}"));
        assert_eq!(err.len(), 2, "error object has other keys: {v}");
        let code = err["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code: {v}"));
        assert!(
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "code is not snake_case: {v}"
        );
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "no message: {v}"
        );
        assert!(
            self.content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/json")),
            "error answered as {:?}",
            self.content_type
        );
        code.to_owned()
    }

    /// Asserts the status and the error code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "expected {status} {code}, got {}: {}",
            self.status,
            self.text()
        );
        assert_eq!(self.error_code(), code, "body: {}", self.text());
    }

    /// Asserts a 2xx status and returns the JSON body (`null` when empty).
    #[track_caller]
    pub fn ok(&self) -> Value {
        assert!(
            self.status.is_success(),
            "expected success, got {}: {}",
            self.status,
            self.text()
        );
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }
}

/// The agent of a tenant fixture.
#[derive(Debug, Clone)]
pub struct AgentCreds {
    /// Its id.
    pub id: String,
    /// Its bearer token.
    pub token: String,
}

/// A tenant with one of everything: an operator and a viewer (logged in), an agent, a
/// repository holding one object, a policy and a queued job.
#[derive(Debug, Clone)]
pub struct TenantFixture {
    /// The tenant's name.
    pub name: String,
    /// The operator's user name.
    pub operator_name: String,
    /// The operator's session token.
    pub operator: String,
    /// The viewer's user name.
    pub viewer_name: String,
    /// The viewer's session token.
    pub viewer: String,
    /// The agent.
    pub agent: AgentCreds,
    /// The repository.
    pub repo: String,
    /// The name of the object in it.
    pub object: String,
    /// The policy's name.
    pub policy: String,
    /// The queued job's id.
    pub job: String,
    /// An API token of the operator (its id).
    pub api_token_id: String,
}

/// A running server.
pub struct TestServer {
    /// `https://127.0.0.1:PORT`.
    pub base: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// A client that trusts its certificate.
    pub client: reqwest::Client,
    /// The TLS client settings (for raw requests).
    pub tls: Arc<rustls::ClientConfig>,
    /// The data directory (shared with replicas).
    pub dir: Arc<tempfile::TempDir>,
    /// The settings it runs with.
    pub config: ServerConfig,
    /// Which catalogue.
    pub backend: Backend,
    /// The administrators' initial passwords.
    pub passwords: HashMap<String, String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Settings for a test server in `dir`: loopback, an ephemeral port, cheap password hashes.
pub fn test_config(dir: &std::path::Path, database: Option<String>) -> ServerConfig {
    ServerConfig {
        data_dir: dir.to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        database,
        password_iterations: Some(1000),
        ..ServerConfig::default()
    }
}

/// Starts a server with the default test settings.
pub async fn start(backend: Backend) -> TestServer {
    start_with(backend, |_| {}).await
}

/// Starts a server whose settings `tweak` adjusts.
pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let dir = Arc::new(tempfile::tempdir().expect("temporary directory"));
    let mut config = test_config(dir.path(), backend.database());
    tweak(&mut config);
    launch(config, dir, backend, None).await
}

/// Server logs go to the test output when `ZAIBEI_TEST_LOG` is set (an `EnvFilter`, such as
/// `zaibei_server=debug`).
fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("ZAIBEI_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

async fn launch(
    config: ServerConfig,
    dir: Arc<tempfile::TempDir>,
    backend: Backend,
    passwords: Option<HashMap<String, String>>,
) -> TestServer {
    init_logging();
    let server = Server::prepare(config.clone())
        .await
        .unwrap_or_else(|e| panic!("starting the server: {e}"));
    let addr = server.addr;
    let passwords = match passwords {
        Some(p) => p,
        None => read_passwords(
            server
                .admin_passwords
                .as_deref()
                .expect("first start writes the passwords"),
        ),
    };
    let tls = client_tls(&server.cert_file);
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // The data directory outlives the server (its last checkpoint is anchored there).
    let keep = dir.clone();
    let task = tokio::spawn(async move {
        let _keep = keep;
        if let Err(e) = server
            .run(async move {
                let _ = rx.await;
            })
            .await
        {
            panic!("server failed: {e}");
        }
    });
    TestServer {
        base: format!("https://{addr}"),
        addr,
        client,
        tls,
        dir,
        config,
        backend,
        passwords,
        shutdown: Some(tx),
        task: Some(task),
    }
}

/// `name role password` lines (comments skipped) as name → password.
fn read_passwords(path: &std::path::Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path).expect("reading the administrators' passwords");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "bad password line {l:?}");
            (f[0].to_owned(), f[2].to_owned())
        })
        .collect()
}

fn client_tls(cert_file: &std::path::Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert_file).expect("reading the certificate") {
        roots
            .add(cert.expect("a certificate"))
            .expect("trusting the certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

impl TestServer {
    /// Another replica: a second server process on the same catalogue and data directory
    /// (certificate, audit key and anchors, repositories), as replicas share them.
    pub async fn replica(&self, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let mut config = self.config.clone();
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.replica = Some(format!("replica-{}", self.addr.port()));
        if self.backend == Backend::Sqlite {
            config.database = Some(self.config.database_url());
        }
        tweak(&mut config);
        launch(
            config,
            self.dir.clone(),
            self.backend,
            Some(self.passwords.clone()),
        )
        .await
    }

    /// Stops the server and waits until it has anchored its last checkpoint.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("server stops within a minute")
                .expect("server task");
        }
    }

    /// The catalogue, opened directly (for tests that look behind the API or tamper with it).
    pub async fn catalogue(&self) -> Catalogue {
        Catalogue::open(&self.config.database_url())
            .await
            .expect("opening the catalogue")
    }

    /// Where repository `tenant/repo` keeps its files.
    pub fn repo_dir(&self, tenant: &str, repo: &str) -> std::path::PathBuf {
        self.dir.path().join("repos").join(tenant).join(repo)
    }

    /// A request with an optional bearer token and an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let (ct, bytes) = match body {
            Some(b) => (Some("application/json"), serde_json::to_vec(b).unwrap()),
            None => (None, Vec::new()),
        };
        self.raw(method, path, token, ct, bytes).await
    }

    /// A request with any body and content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Resp {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        if !body.is_empty()
            || method == Method::POST
            || method == Method::PUT
            || method == Method::PATCH
        {
            req = req.body(body);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        Resp {
            status,
            content_type,
            body,
        }
    }

    /// GET.
    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(token), Some(&body))
            .await
    }

    /// PUT with a JSON body.
    pub async fn put(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(token), Some(&body)).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// A request written byte for byte (no client-side URL normalisation): `target` goes into
    /// the request line as given.
    pub async fn raw_http(
        &self,
        method: &str,
        target: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> Resp {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connecting");
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let name = ServerName::try_from("localhost").expect("server name");
        let mut stream = connector.connect(name, tcp).await.expect("TLS handshake");
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.expect("writing");
        stream.write_all(body).await.expect("writing");
        stream.flush().await.expect("flushing");
        let mut out = Vec::new();
        match stream.read_to_end(&mut out).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => panic!("reading the answer: {e}"),
        }
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&out)));
        let head = String::from_utf8_lossy(&out[..split]).into_owned();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let content_type = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        });
        Resp {
            status: StatusCode::from_u16(status).unwrap(),
            content_type,
            body: out[split + 4..].to_vec(),
        }
    }

    /// Logs in; panics unless it works.
    pub async fn login(&self, user: &str, password: &str) -> String {
        let r = self
            .call(
                Method::POST,
                "/api/v1/login",
                None,
                Some(&json!({ "user": user, "password": password })),
            )
            .await;
        let v = r.ok();
        v["token"].as_str().expect("a token").to_owned()
    }

    /// A login attempt.
    pub async fn try_login(&self, user: &str, password: &str, totp: Option<&str>) -> Resp {
        let mut body = json!({ "user": user, "password": password });
        if let Some(code) = totp {
            body["totp"] = json!(code);
        }
        self.call(Method::POST, "/api/v1/login", None, Some(&body))
            .await
    }

    /// A session of one of the three administrators (`sysadmin`, `secadmin`, `auditadmin`).
    pub async fn admin(&self, name: &str) -> String {
        let pw = self
            .passwords
            .get(name)
            .unwrap_or_else(|| panic!("no administrator {name}"));
        self.login(name, pw).await
    }

    /// Creates a tenant (as the system administrator).
    pub async fn create_tenant(&self, sysadmin: &str, name: &str) {
        self.post("/api/v1/tenants", sysadmin, json!({ "name": name }))
            .await
            .ok();
    }

    /// Creates a tenant user with [`PASSWORD`] (as the system administrator).
    pub async fn create_user(&self, sysadmin: &str, name: &str, role: Role, tenant: Option<&str>) {
        self.post(
            "/api/v1/users",
            sysadmin,
            json!({ "name": name, "password": PASSWORD, "role": role, "tenant": tenant }),
        )
        .await
        .ok();
    }

    /// Registers an agent of `tenant`: the operator issues the one-time token, the agent uses it.
    pub async fn register_agent(&self, tenant: &str, operator: &str, hostname: &str) -> AgentCreds {
        let issued = self
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{tenant}/agents/registrations"),
                Some(operator),
                None,
            )
            .await
            .ok();
        let reg = issued["token"].as_str().unwrap().to_owned();
        let creds = self
            .call(
                Method::POST,
                "/api/v1/agents/register",
                None,
                Some(&json!({ "token": reg, "hostname": hostname })),
            )
            .await
            .ok();
        AgentCreds {
            id: creds["agent"].as_str().unwrap().to_owned(),
            token: creds["token"].as_str().unwrap().to_owned(),
        }
    }

    /// A one-time registration token of `tenant`.
    pub async fn registration_token(&self, tenant: &str, operator: &str) -> String {
        let issued = self
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{tenant}/agents/registrations"),
                Some(operator),
                None,
            )
            .await
            .ok();
        issued["token"].as_str().unwrap().to_owned()
    }

    /// Creates a repository.
    pub async fn create_repo(&self, tenant: &str, operator: &str, name: &str) {
        self.post(
            &format!("/api/v1/tenants/{tenant}/repos"),
            operator,
            json!({ "name": name }),
        )
        .await
        .ok();
    }

    /// Creates a backup policy; returns it.
    pub async fn create_policy(
        &self,
        tenant: &str,
        operator: &str,
        name: &str,
        agent: &str,
        repo: &str,
        schedule: &str,
    ) -> Value {
        self.post(
            &format!("/api/v1/tenants/{tenant}/policies"),
            operator,
            json!({
                "name": name, "agent": agent, "repo": repo, "paths": ["/srv"],
                "schedule": schedule, "rpo_target_secs": 86400
            }),
        )
        .await
        .ok()
    }

    /// Queues a backup of a policy now; returns the job.
    pub async fn queue_job(&self, tenant: &str, operator: &str, policy: &str) -> Value {
        self.post(
            &format!("/api/v1/tenants/{tenant}/jobs"),
            operator,
            json!({ "kind": "backup", "policy": policy }),
        )
        .await
        .ok()
    }

    /// Puts an object into a repository through the repository API.
    pub async fn put_object(
        &self,
        tenant: &str,
        repo: &str,
        name: &str,
        token: &str,
        bytes: &[u8],
    ) -> Resp {
        self.raw(
            Method::PUT,
            &format!("/api/v1/tenants/{tenant}/repos/{repo}/objects/{name}"),
            Some(token),
            Some("application/octet-stream"),
            bytes.to_vec(),
        )
        .await
    }

    /// A tenant with one of everything (see [`TenantFixture`]).
    pub async fn tenant_fixture(&self, sysadmin: &str, name: &str) -> TenantFixture {
        self.create_tenant(sysadmin, name).await;
        let operator_name = format!("{name}-op");
        let viewer_name = format!("{name}-view");
        self.create_user(sysadmin, &operator_name, Role::TenantOperator, Some(name))
            .await;
        self.create_user(sysadmin, &viewer_name, Role::TenantViewer, Some(name))
            .await;
        let operator = self.login(&operator_name, PASSWORD).await;
        let viewer = self.login(&viewer_name, PASSWORD).await;
        let repo = format!("{name}-repo");
        self.create_repo(name, &operator, &repo).await;
        let object = "data/00/object-1".to_owned();
        self.put_object(name, &repo, &object, &operator, b"encrypted bytes")
            .await
            .ok();
        let agent = self
            .register_agent(name, &operator, &format!("{name}-host"))
            .await;
        let policy = format!("{name}-policy");
        self.create_policy(name, &operator, &policy, &agent.id, &repo, "0 0 3 1 1 *")
            .await;
        let job = self.queue_job(name, &operator, &policy).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let token = self
            .post(
                "/api/v1/me/tokens",
                &operator,
                json!({ "name": "ci", "ttl_secs": 3600 }),
            )
            .await
            .ok();
        TenantFixture {
            name: name.to_owned(),
            operator_name,
            operator,
            viewer_name,
            viewer,
            agent,
            repo,
            object,
            policy,
            job,
            api_token_id: token["id"].as_str().unwrap().to_owned(),
        }
    }

    /// Audit records with `action`, newest first (queried as the audit administrator).
    pub async fn audit_records(&self, auditadmin: &str, action: &str) -> Vec<Value> {
        self.get(
            &format!("/api/v1/audit?action={action}&limit=10000"),
            auditadmin,
        )
        .await
        .ok()
        .as_array()
        .cloned()
        .unwrap_or_default()
    }

    /// The whole audit log, exported.
    pub async fn audit_export(&self, auditadmin: &str) -> Vec<zaibei_audit::AuditRecord> {
        let r = self.get("/api/v1/audit/export", auditadmin).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.text()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).expect("an audit record"))
            .collect()
    }
}
