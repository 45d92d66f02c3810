//! `zaibei agent`: the daemon on protected hosts.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use zaibei_agent::{AgentClient, Credentials, RunOptions};

use crate::Cli;
use crate::exit;

/// `zaibei agent` commands.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Register this host with a server, using a one-time registration token issued by a
    /// tenant operator (POST /api/v1/tenants/TENANT/agents/registrations).
    Register(RegisterArgs),
    /// Pull jobs from the server and run them until SIGINT or SIGTERM. Backups go through the
    /// server's repository API, encrypted on this host with the repository password given by
    /// --password-file (which never leaves the host).
    Run(RunArgs),
}

/// Where the agent keeps its state. The server's certificate is trusted through the global
/// `--server-ca` (or `ZAIBEI_SERVER_CA`).
#[derive(Debug, Args)]
pub struct StateArgs {
    /// The agent's state directory (its credentials, mode 0600).
    #[arg(
        long,
        value_name = "DIR",
        env = "ZAIBEI_AGENT_STATE",
        default_value = "/var/lib/zaibei-agent"
    )]
    pub state_dir: PathBuf,
}

/// Options of `zaibei agent register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The server, https://HOST:PORT.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// File holding the one-time registration token.
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,
    /// The name this host registers with (default: its host name).
    #[arg(long)]
    pub hostname: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
}

/// Options of `zaibei agent run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Time between polls when there is nothing to do.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub poll: Duration,
    /// Run at most one job, then exit (0: a job ran, 3: there was none).
    #[arg(long)]
    pub once: bool,
    /// Accept restore jobs into new or empty directories beneath DIR (without it, restore jobs
    /// fail): the host, not the server, decides where restores may write.
    #[arg(long, value_name = "DIR")]
    pub restore_root: Option<PathBuf>,
}

/// A client of `server` trusting the global `--server-ca` certificate.
fn client(cli: &Cli, server: &str) -> Result<AgentClient> {
    let ca = match &cli.storage.server_ca {
        Some(f) => Some(std::fs::read(f).with_context(|| format!("reading {}", f.display()))?),
        None => None,
    };
    Ok(AgentClient::new(server, ca.as_deref())?)
}

/// Runs an agent command.
pub async fn run(cli: &Cli, command: &AgentCommand) -> Result<u8> {
    match command {
        AgentCommand::Register(a) => {
            let server = a.server.trim_end_matches('/');
            if !server.starts_with("https://") && !server.starts_with("http://") {
                bail!("--server must be https://HOST:PORT");
            }
            let token = std::fs::read_to_string(&a.token_file)
                .with_context(|| format!("reading {}", a.token_file.display()))?;
            let hostname = match &a.hostname {
                Some(h) => h.clone(),
                None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_owned())
                    .unwrap_or_else(|_| "localhost".into()),
            };
            let creds = client(cli, server)?
                .register(token.trim(), &hostname)
                .await?;
            let creds = Credentials {
                server: server.to_owned(),
                agent: creds.agent,
                tenant: creds.tenant,
                token: creds.token,
            };
            creds.save(&a.state.state_dir)?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({ "message_type": "registered", "agent": creds.agent, "tenant": creds.tenant })
                );
            } else if !cli.quiet {
                println!("registered as {creds}");
            }
            Ok(exit::OK)
        }
        AgentCommand::Run(a) => {
            let creds = Credentials::load(&a.state.state_dir)?;
            let password_file = cli.password_file.clone().context(
                "the agent needs the repository password: --password-file or ZAIBEI_PASSWORD_FILE",
            )?;
            let opts = RunOptions {
                zaibei: std::env::current_exe().context("finding the zaibei executable")?,
                password_file,
                server_ca: cli.storage.server_ca.clone(),
                poll: a.poll,
                heartbeat: Duration::from_secs(30),
                restore_root: a.restore_root.clone(),
            };
            let client = client(cli, &creds.server)?;
            if a.once {
                let ran = zaibei_agent::run_once(&client, &creds, &opts).await?;
                return Ok(if ran { exit::OK } else { exit::PARTIAL });
            }
            if !cli.quiet {
                eprintln!("zaibei agent: {creds}; polling every {:?}", a.poll);
            }
            zaibei_agent::run_loop(&client, &creds, &opts, super::server::shutdown_signal()).await;
            Ok(exit::OK)
        }
    }
}
