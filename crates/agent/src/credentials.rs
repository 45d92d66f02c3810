//! The agent's credentials, kept in its state directory (mode 0600).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::client::ClientError;

/// What registration gave this agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// The server's base URL (`https://HOST:PORT`).
    pub server: String,
    /// The agent's id.
    pub agent: String,
    /// Its tenant.
    pub tenant: String,
    /// Its bearer token.
    pub token: String,
}

impl Credentials {
    /// The file in `state_dir`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("agent.json")
    }

    /// Reads the credentials of `state_dir`.
    pub fn load(state_dir: &Path) -> Result<Credentials, ClientError> {
        let path = Self::path(state_dir);
        let text = std::fs::read(&path).map_err(|e| {
            ClientError::State(format!(
                "reading {}: {e} (register the agent first)",
                path.display()
            ))
        })?;
        serde_json::from_slice(&text)
            .map_err(|e| ClientError::State(format!("{}: {e}", path.display())))
    }

    /// Writes them crash-safely (temporary file, fsync, rename) readable only by the owner.
    pub fn save(&self, state_dir: &Path) -> Result<(), ClientError> {
        let io =
            |e: std::io::Error| ClientError::State(format!("writing {}: {e}", state_dir.display()));
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let path = Self::path(state_dir);
        let tmp = state_dir.join("agent.json.tmp");
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| ClientError::State(e.to_string()))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        std::fs::File::open(state_dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }
}

impl std::fmt::Display for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "agent {} of tenant {} at {}",
            self.agent, self.tenant, self.server
        )
    }
}
