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
    sites: std::collections::BTreeMap<String, Location>,
    options: OpenOptions,
}

fn parse_root(text: &str) -> Result<Location, ServerError> {
    let root = Location::parse(text).map_err(|e| ServerError::Config(e.to_string()))?;
    if matches!(root, Location::Memory(_) | Location::Server(_)) {
        return Err(ServerError::Config(format!(
            "repository storage {text:?} must be a directory or a bucket"
        )));
    }
    Ok(root)
}

impl Storage {
    /// Storage beneath `root` (a directory or bucket location), plus named `sites`.
    pub fn new(
        root: &str,
        sites: &std::collections::BTreeMap<String, String>,
    ) -> Result<Storage, ServerError> {
        let mut parsed = std::collections::BTreeMap::new();
        for (name, location) in sites {
            if !crate::extract::valid_name(name) {
                return Err(ServerError::Config(format!(
                    "site name {name:?} is not valid"
                )));
            }
            parsed.insert(name.clone(), parse_root(location)?);
        }
        // Buckets take their credentials and signing region from the usual variables
        // (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION or AWS_DEFAULT_REGION).
        let mut options = OpenOptions::default();
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        };
        options.bucket.region = var(&["AWS_REGION", "AWS_DEFAULT_REGION"]);
        options.bucket.access_key_id = var(&["AWS_ACCESS_KEY_ID"]);
        options.bucket.secret_access_key = var(&["AWS_SECRET_ACCESS_KEY"]);
        Ok(Storage {
            root: parse_root(root)?,
            sites: parsed,
            options,
        })
    }

    /// Whether `site` is configured.
    pub fn has_site(&self, site: &str) -> bool {
        self.sites.contains_key(site)
    }

    fn root_of(&self, site: Option<&str>) -> Result<&Location, ServerError> {
        match site {
            None => Ok(&self.root),
            Some(s) => self
                .sites
                .get(s)
                .ok_or_else(|| ServerError::Config(format!("no storage site {s:?} is configured"))),
        }
    }

    /// The location of one repository.
    pub fn location(
        &self,
        site: Option<&str>,
        tenant: &str,
        repo: &str,
    ) -> Result<Location, ServerError> {
        Ok(beneath(self.root_of(site)?, &[tenant, repo]))
    }

    /// Opens one repository's store (names already validated).
    pub fn open(
        &self,
        site: Option<&str>,
        tenant: &str,
        repo: &str,
    ) -> Result<Arc<dyn Store>, ServerError> {
        let opened = zaibei_store::open(&self.location(site, tenant, repo)?, &self.options)?;
        Ok(opened.store)
    }

    /// The location holding all of a tenant's repositories.
    fn tenant_location(&self, site: Option<&str>, tenant: &str) -> Result<Location, ServerError> {
        Ok(beneath(self.root_of(site)?, &[tenant]))
    }

    /// The objects of repository `tenant/repo` beneath directory `dir`, or all of them when
    /// `dir` is empty (a store lists only beneath a directory, so the whole repository is
    /// listed as a directory of the tenant's store). Names are relative to the repository.
    pub async fn list(
        &self,
        site: Option<&str>,
        tenant: &str,
        repo: &str,
        dir: &str,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        let location = |l: Result<Location, ServerError>| {
            l.map_err(|e| {
                StoreError::new(
                    zaibei_store::StoreErrorKind::InvalidInput,
                    "list",
                    dir,
                    "catalogue",
                )
                .with_detail(e.to_string())
            })
        };
        let result = if dir.is_empty() {
            let store = zaibei_store::open(
                &location(self.tenant_location(site, tenant))?,
                &self.options,
            )?
            .store;
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
            let store =
                zaibei_store::open(&location(self.location(site, tenant, repo))?, &self.options)?
                    .store;
            store.list(dir).await
        };
        match result {
            Err(e) if e.kind == StoreErrorKind::NotFound => Ok(Vec::new()),
            other => other,
        }
    }
}

/// `root` with `segments` appended (a subdirectory, or a longer bucket prefix).
fn beneath(root: &Location, segments: &[&str]) -> Location {
    match root {
        Location::Fs(path) => {
            let mut p = path.clone();
            for s in segments {
                p = p.join(s);
            }
            Location::Fs(p)
        }
        Location::Bucket(b) => {
            let mut b = b.clone();
            let tail = segments.join("/");
            b.prefix = if b.prefix.is_empty() {
                tail
            } else {
                format!("{}/{tail}", b.prefix)
            };
            Location::Bucket(b)
        }
        other => other.clone(),
    }
}
