//! The zaibei platform server: tenants, users and roles with the separation of the three
//! administrators (三员分立), the repository API, agents and jobs, the tamper-evident audit log,
//! Prometheus metrics and the OpenAPI document — axum over rustls, with the catalogue in
//! SQLite (embedded default) or PostgreSQL.
//!
//! Every route is declared in one table ([`routes::Route`]) with the privilege it needs; the
//! router, the authorisation layer, the OpenAPI document and the tenant-isolation tests are
//! all generated from it.

pub mod api;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod catalogue;
pub mod config;
pub mod error;
pub mod extract;
pub mod maintenance;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod schedule;
pub mod scheduler;
pub mod secret;
pub mod serve;
pub mod settings;
pub mod state;
pub mod time;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::ServerConfig;
pub use error::{ApiError, ServerError};

use crate::audit::Audit;
use crate::catalogue::Catalogue;
use crate::state::{AppState, Storage};

/// A server that has opened everything and bound its port, ready to serve.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The TLS certificate clients should trust.
    pub cert_file: std::path::PathBuf,
    /// Where the first start wrote the administrators' passwords.
    pub admin_passwords: Option<std::path::PathBuf>,
}

impl Server {
    /// Opens the catalogue (migrating it), the audit log and its anchors, the TLS identity,
    /// creates the administrators on first start, and binds the listening socket.
    pub async fn prepare(config: ServerConfig) -> Result<Server, ServerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::Io {
            context: format!("creating {}", config.data_dir.display()),
            source,
        })?;
        let cat = Catalogue::open(&config.database_url()).await?;
        let (signer, generated) = zaibei_audit::CheckpointSigner::load_or_generate(
            &config.data_dir.join("audit-signing-key.pem"),
        )
        .map_err(|e| ServerError::Audit(e.to_string()))?;
        if generated {
            tracing::info!("generated the audit checkpoint signing key (SM2)");
        }
        let anchor_location = zaibei_store::Location::parse(&config.audit_anchor_location())
            .map_err(|e| ServerError::Config(e.to_string()))?;
        let anchor_store =
            zaibei_store::open(&anchor_location, &zaibei_store::OpenOptions::default())?;
        let audit = Arc::new(Audit::new(
            signer,
            zaibei_audit::AnchorStore::new(anchor_store.store),
            config.audit_checkpoint_records,
            config.audit_checkpoint_secs,
        ));
        // The environment wins over the file, as for every setting; a config built in code
        // (tests) sets the field directly.
        let iterations = std::env::var("ZAIBEI_SERVER_PASSWORD_ITERATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .or(config.password_iterations)
            .unwrap_or(auth::password::DEFAULT_ITERATIONS)
            .max(1);
        let admin_passwords =
            bootstrap::ensure_admins(&cat, &audit, &config.data_dir, iterations).await?;
        let files = tls::ensure_files(&config)?;
        let tls = tls::server_config(&files)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Io {
                context: format!("listening on {}", config.listen),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Io {
            context: "reading the bound address".into(),
            source,
        })?;
        let replica = config.replica.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        let storage = Arc::new(Storage::new(&config.storage_root(), &config.sites)?);
        let secret = Arc::new(secret::ServerSecret::load_or_generate(
            &config.data_dir.join("server-secret.key"),
        )?);
        let state = AppState {
            cat,
            config: Arc::new(config),
            audit,
            storage,
            metrics: Arc::default(),
            replica,
            password_iterations: iterations,
            secret,
        };
        Ok(Server {
            state,
            listener,
            tls,
            addr,
            cert_file: files.cert,
            admin_passwords,
        })
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish and anchors a
    /// last audit checkpoint.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let state = self.state.clone();
        let app = routes::router(api::routes(), state.clone())
            .layer(axum::extract::DefaultBodyLimit::max(
                routes::JSON_BODY_LIMIT.min(state.config.max_body_bytes),
            ))
            .fallback(|| async { ApiError::not_found("no such route") });
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let background = tokio::spawn(background(state.clone(), stop_rx.clone()));
        let jobs = tokio::spawn(maintenance::worker(state.clone(), stop_rx));
        serve::serve(self.listener, self.tls, app, shutdown).await;
        let _ = stop_tx.send(true);
        let _ = background.await;
        let _ = jobs.await;
        if let Err(e) = state.audit.checkpoint(&state.cat, true).await {
            tracing::error!("final audit checkpoint: {e}");
        }
        state.cat.pool.close().await;
        Ok(())
    }
}

/// Work that runs beside the requests: the scheduler and audit checkpoints by time.
async fn background(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every = Duration::from_secs(state.config.scheduler_interval_secs.max(1));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(every) => {}
        }
        if let Err(e) = scheduler::tick(&state).await {
            tracing::error!("scheduler: {e}");
        }
        if let Err(e) = state.audit.checkpoint(&state.cat, false).await {
            tracing::error!("audit checkpoint: {e}");
        }
    }
}
