//! `zaibei key list|add|remove|passwd`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use zaibei_format::{Id, KeyScope};

use crate::{Cli, exit, output, password};

/// Key commands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List the keys of the repository.
    List,
    /// Add a key with a new password.
    Add(NewKeyArgs),
    /// Remove a key (never the one in use, never the last full key).
    Remove {
        /// Key id (or unique prefix).
        id: String,
    },
    /// Change the password of the key in use.
    Passwd(NewKeyArgs),
}

/// Options for a new key.
#[derive(Debug, Args)]
pub struct NewKeyArgs {
    /// Read the new password from this file.
    #[arg(long)]
    pub new_password_file: Option<PathBuf>,
    /// The key opens only the maintenance layer (prune, structural check, copy): never file
    /// contents or names. For servers.
    #[arg(long)]
    pub maintenance_only: bool,
    /// Minimum time one password derivation must take, in milliseconds.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub kdf_time: u64,
    /// Cheapest KDF parameters, for tests only.
    #[arg(long, hide = true)]
    pub insecure_test_kdf: bool,
}

#[derive(Serialize)]
struct KeyEntry {
    id: String,
    current: bool,
    scope: &'static str,
    kdf: String,
    created: String,
    host: String,
    user: String,
}

pub async fn run(cli: &Cli, cmd: &KeyCommand) -> Result<u8> {
    let mut repo = crate::repo::open(cli).await?;
    // Removing or replacing a key deletes one; adding deletes nothing.
    if matches!(cmd, KeyCommand::Remove { .. } | KeyCommand::Passwd(_)) {
        crate::sites::require_primary(cli, &repo, "removing or replacing a key").await?;
    }
    match cmd {
        KeyCommand::List => {
            let keys = repo.list_keys().await?;
            let entries: Vec<KeyEntry> = keys
                .iter()
                .map(|k| KeyEntry {
                    id: k.id.to_hex(),
                    current: k.current,
                    scope: k.scope.name(),
                    kdf: super::describe_kdf(&k.kdf),
                    created: output::time_short(k.created),
                    host: k.host.clone(),
                    user: k.user.clone(),
                })
                .collect();
            if cli.json {
                output::json_pretty(&entries)?;
            } else {
                crate::say!(
                    " {:<10} {:<12} {:<22} {:<16} {:<12} kdf",
                    "id",
                    "scope",
                    "created",
                    "host",
                    "user"
                )?;
                for e in &entries {
                    crate::say!(
                        "{}{:<10} {:<12} {:<22} {:<16} {:<12} {}",
                        if e.current { "*" } else { " " },
                        &e.id[..8],
                        e.scope,
                        e.created,
                        e.host,
                        e.user,
                        e.kdf
                    )?;
                }
            }
        }
        KeyCommand::Add(a) | KeyCommand::Passwd(a) => {
            let pw = password::get_new(a.new_password_file.as_deref(), "enter new password: ")?;
            let kdf = super::new_kdf(repo.suite(), a.kdf_time, a.insecure_test_kdf)?;
            let user = std::env::var("USER").unwrap_or_default();
            let id = if matches!(cmd, KeyCommand::Add(_)) {
                let scope = if a.maintenance_only {
                    KeyScope::Maintenance
                } else {
                    KeyScope::Full
                };
                let id = repo
                    .add_key(&pw, scope, kdf, super::hostname(), user)
                    .await?;
                if !cli.quiet && !cli.json {
                    crate::say!("added {} key {}", scope.name(), id.short())?;
                }
                id
            } else {
                if a.maintenance_only {
                    bail!(exit::WithCode(
                        exit::USAGE,
                        "passwd keeps the scope of the key in use; use key add --maintenance-only"
                            .into()
                    ));
                }
                let id = repo
                    .change_password(&pw, kdf, super::hostname(), user)
                    .await?;
                if !cli.quiet && !cli.json {
                    crate::say!("password changed; the key in use is now {}", id.short())?;
                }
                id
            };
            if cli.json {
                output::json_line(&serde_json::json!({"message_type": "key", "id": id.to_hex()}))?;
            }
        }
        KeyCommand::Remove { id } => {
            let keys = repo.list_keys().await?;
            let matches: Vec<Id> = keys
                .iter()
                .map(|k| k.id)
                .filter(|k| k.to_hex().starts_with(&id.to_ascii_lowercase()))
                .collect();
            let target = match matches.as_slice() {
                [one] => *one,
                [] => bail!(exit::WithCode(
                    exit::USAGE,
                    format!("no key matches {id:?}")
                )),
                _ => bail!(exit::WithCode(
                    exit::USAGE,
                    format!("key prefix {id:?} is ambiguous")
                )),
            };
            repo.remove_key(&target).await?;
            if !cli.quiet && !cli.json {
                crate::say!("removed key {}", target.short())?;
            }
        }
    }
    Ok(exit::OK)
}
