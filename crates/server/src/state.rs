//! What every handler shares.

use std::sync::Arc;

use zaibei_store::{Location, ObjectInfo, OpenOptions, Store, StoreError, StoreErrorKind};

use crate::audit::Audit;
use crate::catalogue::Catalogue;
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::metrics::Metrics;

/// The state behind every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The catalogue.
    pub cat: Catalogue,
    /// The settings.
    pub config: Arc<ServerConfig>,
    /// The audit log.
    pub audit: Arc<Audit>,
    /// The tenants' repository storage.
    pub storage: Arc<Storage>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// This replica's name.
    pub replica: String,
    /// PBKDF2 iterations of new password hashes.
    pub password_iterations: u32,
    /// The key that seals maintenance-key passwords in the catalogue.
    pub secret: Arc<crate::secret::ServerSecret>,
}

impl AppState {
    /// Appends `event` to the audit log inside `tx`, commits both together, then anchors a
    /// checkpoint when one is due: the change and its audit record land together or not at all.
    pub async fn commit_audited(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        event: zaibei_audit::AuditEvent,
    ) -> Result<(), crate::error::ApiError> {
        self.audit.append(&self.cat, &mut tx, event).await?;
        tx.commit().await?;
        self.audit.after_commit(&self.cat).await;
        Ok(())
    }

    /// Hashes a password on a blocking thread (PBKDF2 takes a while by design).
    pub async fn hash_password(&self, password: &str) -> Result<String, crate::error::ApiError> {
        let iterations = self.password_iterations;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || crate::auth::password::hash(&password, iterations))
            .await
            .map_err(|e| crate::error::ApiError::internal("hashing a password", e))?
            .map_err(|e| crate::error::ApiError::internal("hashing a password", e))
    }
}

/// Where the tenants' repositories live: `ROOT/TENANT/REPO`.
#[derive(Debug)]
pub struct Storage {
    root: Location,
    options: OpenOptions,
}

impl Storage {
    /// Storage beneath `root` (a directory or bucket location).
    pub fn new(root: &str) -> Result<Storage, ServerError> {
        let root = Location::parse(root).map_err(|e| ServerError::Config(e.to_string()))?;
        if matches!(root, Location::Memory(_)) {
            return Err(ServerError::Config(
                "repository storage must be a directory or a bucket, not memory".into(),
            ));
        }
        Ok(Storage {
            root,
            options: OpenOptions::default(),
        })
    }

    /// The location of one repository.
    pub fn location(&self, tenant: &str, repo: &str) -> Location {
        match &self.root {
            Location::Fs(path) => Location::Fs(path.join(tenant).join(repo)),
            Location::Bucket(b) => {
                let mut b = b.clone();
                b.prefix = if b.prefix.is_empty() {
                    format!("{tenant}/{repo}")
                } else {
                    format!("{}/{tenant}/{repo}", b.prefix)
                };
                Location::Bucket(b)
            }
            other => other.clone(),
        }
    }

    /// Opens one repository's store (names already validated).
    pub fn open(&self, tenant: &str, repo: &str) -> Result<Arc<dyn Store>, ServerError> {
        let opened = zaibei_store::open(&self.location(tenant, repo), &self.options)?;
        Ok(opened.store)
    }

    /// The location holding all of a tenant's repositories.
    fn tenant_location(&self, tenant: &str) -> Location {
        match &self.root {
            Location::Fs(path) => Location::Fs(path.join(tenant)),
            Location::Bucket(b) => {
                let mut b = b.clone();
                b.prefix = if b.prefix.is_empty() {
                    tenant.to_owned()
                } else {
                    format!("{}/{tenant}", b.prefix)
                };
                Location::Bucket(b)
            }
            other => other.clone(),
        }
    }

    /// The objects of repository `tenant/repo` beneath directory `dir`, or all of them when
    /// `dir` is empty (a store lists only beneath a directory, so the whole repository is
    /// listed as a directory of the tenant's store). Names are relative to the repository.
    pub async fn list(
        &self,
        tenant: &str,
        repo: &str,
        dir: &str,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        let result = if dir.is_empty() {
            let store = zaibei_store::open(&self.tenant_location(tenant), &self.options)?.store;
            let strip = format!("{repo}/");
            store.list(repo).await.map(|all| {
                all.into_iter()
                    .filter_map(|mut o| {
                        o.name = o.name.strip_prefix(&strip)?.to_owned();
                        Some(o)
                    })
                    .collect()
            })
        } else {
            let store = zaibei_store::open(&self.location(tenant, repo), &self.options)?.store;
            store.list(dir).await
        };
        match result {
            Err(e) if e.kind == StoreErrorKind::NotFound => Ok(Vec::new()),
            other => other,
        }
    }
}
