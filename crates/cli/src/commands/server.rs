//! `zaibei server`: the platform server.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::Cli;
use crate::exit;

/// The long help of `zaibei server`.
pub const LONG_ABOUT: &str =
    "Run the zaibei platform server: tenants, users and roles (system, security and audit \
administrators kept apart), repositories through an authenticated HTTPS API, agents and scheduled \
backup jobs, a tamper-evident audit log, Prometheus metrics and an OpenAPI document.

One command starts a working platform: with no configuration the catalogue is SQLite in the data \
directory, repositories live in DATA_DIR/repos, and a self-signed TLS certificate is generated in \
DATA_DIR/tls/server.crt (clients pass it with --server-ca). On first start the three \
administrators sysadmin, secadmin and auditadmin are created with random passwords written to \
DATA_DIR/initial-admin-passwords.txt (mode 0600): log in, change them, delete the file.

Settings come from --config FILE (TOML), then ZAIBEI_SERVER_* variables, then these options. \
--database postgres://USER:PASSWORD@HOST/DB puts the catalogue in PostgreSQL, so that several \
replicas can share it. SIGINT or SIGTERM stops the server gracefully: requests under way finish, \
then a last audit checkpoint is anchored.

Examples:
  zaibei server --data-dir /var/lib/zaibei --listen 0.0.0.0:8443
  zaibei server --config /etc/zaibei/server.toml --database postgres://zb@db/zaibei";

/// Options of `zaibei server`.
#[derive(Debug, Args)]
#[command(long_about = LONG_ABOUT)]
pub struct ServerArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE", env = "ZAIBEI_SERVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (catalogue, certificate, audit key and anchors, repositories).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on (HTTPS).
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,
    /// Catalogue database URL: sqlite://PATH or postgres://….
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Where tenants' repositories are stored: a directory or s3:https://HOST/BUCKET/PREFIX.
    #[arg(long, value_name = "LOCATION")]
    pub storage: Option<String>,
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(cli: &Cli, args: &ServerArgs) -> Result<u8> {
    let mut config = zaibei_server::ServerConfig::load(args.config.as_deref())?;
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(db) = &args.database {
        config.database = Some(db.clone());
    }
    if let Some(s) = &args.storage {
        config.storage = Some(s.clone());
    }
    let server = zaibei_server::Server::prepare(config)
        .await
        .context("starting the server")?;
    let addr = server.addr;
    if cli.json {
        println!(
            "{}",
            serde_json::json!({
                "message_type": "listening",
                "address": addr.to_string(),
                "certificate": server.cert_file,
                "admin_passwords": server.admin_passwords,
            })
        );
    } else if !cli.quiet {
        eprintln!("zaibei server listening on https://{addr}");
        eprintln!("  TLS certificate: {}", server.cert_file.display());
        if let Some(f) = &server.admin_passwords {
            eprintln!(
                "  first start: administrator passwords are in {} — change them, then delete the file",
                f.display()
            );
        }
    }
    server.run(shutdown_signal()).await?;
    Ok(exit::OK)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("stopping");
}
