//! Creating and opening a repository.

use std::sync::Arc;

use bytes::Bytes;
use zaibei_crypto::{PasswordKdf, SecretKey, Suite};
use zaibei_format::config::DEFAULT_PACK_SIZE;
use zaibei_format::{ChunkerParams, Id, KeyFile, KeyScope, RepoConfig, RepoKeys};
use zaibei_store::{Store, StoreErrorKind};

use crate::{Cache, RepoError, Result, names};

/// Settings of a new repository.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Cryptographic suite.
    pub suite: Suite,
    /// Password KDF (with its cost) for the first key.
    pub kdf: PasswordKdf,
    /// Chunking parameters.
    pub chunker: ChunkerParams,
    /// zstd level for blobs (0: none).
    pub zstd_level: i32,
    /// Target pack size in bytes.
    pub pack_size: u64,
    /// Host name recorded in the key.
    pub hostname: String,
    /// User name recorded in the key.
    pub username: String,
}

impl InitOptions {
    /// Defaults for `suite` with the given KDF.
    pub fn new(suite: Suite, kdf: PasswordKdf) -> Self {
        InitOptions {
            suite,
            kdf,
            chunker: ChunkerParams::default(),
            zstd_level: 3,
            pack_size: DEFAULT_PACK_SIZE,
            hostname: String::new(),
            username: String::new(),
        }
    }
}

/// An opened repository: config verified, keys unwrapped. Load the index to read or write blobs
/// ([`Repository::load_index`]).
#[derive(Clone)]
pub struct Repository {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: RepoConfig,
    pub(crate) keys: RepoKeys,
    /// The unwrapped secret of the key used: the master key (scope full) or the maintenance key.
    pub(crate) secret: SecretKey,
    pub(crate) scope: KeyScope,
    pub(crate) key_id: Id,
    pub(crate) chunker_seed: Option<[u8; 32]>,
    /// Local cache of metadata objects, when one is in use.
    pub(crate) cache: Option<Arc<Cache>>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.store.location())
            .field("id", &self.config.id)
            .field("suite", &self.config.suite)
            .field("scope", &self.scope)
            .finish()
    }
}

impl Repository {
    /// Creates a repository in an empty store, protected by `password`.
    ///
    /// The first key object is written before the config, and the config is published with
    /// create-if-absent: the repository exists once (and only if) the config exists.
    pub async fn init(store: Arc<dyn Store>, password: &[u8], opts: InitOptions) -> Result<Self> {
        refuse_existing(store.as_ref()).await?;
        let master = SecretKey::random().map_err(|source| RepoError::Crypto {
            context: "creating the master key".into(),
            source,
        })?;
        let keys = RepoKeys::from_master(opts.suite, &master);
        let content = keys
            .content("init")
            .map_err(|e| RepoError::format("config", e))?;
        let (config, seed) = RepoConfig::create(
            content,
            keys.maintenance(),
            opts.chunker,
            opts.zstd_level,
            opts.pack_size,
        )
        .map_err(|e| RepoError::format("config", e))?;
        Self::publish_new(store, password, opts, keys, master, config, seed).await
    }

    /// Creates a repository in an empty store that shares `from`'s key material (its master
    /// key, wrapped here under `password`), chunker seed and parameters, compression level and
    /// pack size, under a repository id of its own: files chunk alike in both, and copying
    /// between them moves packs as they are, without decrypting anything. `from` must have
    /// been opened with a full key; `opts` gives only the KDF, host and user of the new key.
    pub async fn init_sharing_keys(
        store: Arc<dyn Store>,
        password: &[u8],
        opts: InitOptions,
        from: &Repository,
    ) -> Result<Self> {
        if from.scope != KeyScope::Full {
            return Err(RepoError::Refused(
                "sharing key material needs the source's full key; it was opened with a \
                 maintenance-only key"
                    .into(),
            ));
        }
        refuse_existing(store.as_ref()).await?;
        let master = from.secret.clone();
        let keys = RepoKeys::from_master(from.suite(), &master);
        let content = keys
            .content("init")
            .map_err(|e| RepoError::format("config", e))?;
        let seed = from.chunker_seed()?;
        let src = from.config();
        let config = RepoConfig::create_with_seed(
            content,
            keys.maintenance(),
            src.chunker,
            src.zstd_level,
            src.pack_size,
            &seed,
        )
        .map_err(|e| RepoError::format("config", e))?;
        let opts = InitOptions {
            suite: from.suite(),
            ..opts
        };
        Self::publish_new(store, password, opts, keys, master, config, seed).await
    }

    /// Writes the first key object, then publishes the config (create-if-absent).
    async fn publish_new(
        store: Arc<dyn Store>,
        password: &[u8],
        opts: InitOptions,
        keys: RepoKeys,
        master: SecretKey,
        config: RepoConfig,
        seed: [u8; 32],
    ) -> Result<Self> {
        let (key_id, key_bytes) = wrap_key(
            &config,
            KeyScope::Full,
            opts.kdf,
            password,
            &master,
            opts.hostname,
            opts.username,
        )
        .await?;
        store.put(&names::key(&key_id), key_bytes).await?;
        match store
            .put_new(names::CONFIG, Bytes::from(config.encode()))
            .await
        {
            Ok(()) => {}
            Err(e) if e.kind == StoreErrorKind::AlreadyExists => {
                let _ = store.delete(&names::key(&key_id)).await;
                return Err(RepoError::AlreadyExists {
                    location: store.location().to_owned(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Repository {
            store,
            config,
            keys,
            secret: master,
            scope: KeyScope::Full,
            key_id,
            chunker_seed: Some(seed),
            cache: None,
        })
    }

    /// Opens the repository in `store` with the keys `other` holds, without a password: it
    /// succeeds only when the two share key material (one was created from the other with
    /// [`init_sharing_keys`](Self::init_sharing_keys)), which the config's MAC proves.
    /// Returns `Ok(None)` when the keys do not fit.
    pub async fn open_sharing_keys(
        store: Arc<dyn Store>,
        other: &Repository,
    ) -> Result<Option<Self>> {
        let config = read_config(store.as_ref()).await?;
        if config.suite != other.suite() || config.verify(other.keys.maintenance()).is_err() {
            return Ok(None);
        }
        Self::from_secret(
            store,
            config,
            other.scope,
            other.key_id,
            other.secret.clone(),
        )
        .map(Some)
    }

    /// True when `other` holds the same key material as this repository (packs of one are
    /// valid in the other).
    pub fn shares_keys_with(&self, other: &Repository) -> bool {
        self.suite() == other.suite() && self.config.verify(other.keys.maintenance()).is_ok()
    }

    /// Opens the repository with `password`, trying every key object.
    pub async fn open(store: Arc<dyn Store>, password: &[u8]) -> Result<Self> {
        let config = read_config(store.as_ref()).await?;
        let listed = store.list(names::KEYS).await?;
        let mut tried = 0;
        let mut foreign = 0;
        let mut last_error = None;
        for info in listed {
            let Some(key_id) = names::id_of(&info.name) else {
                continue;
            };
            let bytes = match store.get(&info.name).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("cannot read key {}: {e}", info.name);
                    last_error = Some(RepoError::from(e));
                    continue;
                }
            };
            let kf = match decode_key(config.suite, &info.name, &key_id, &bytes) {
                Ok(kf) => kf,
                Err(e) => {
                    tracing::warn!("{e}");
                    last_error = Some(e);
                    continue;
                }
            };
            if kf.repo != config.id || kf.suite != config.suite {
                tracing::warn!("key {} belongs to another repository; skipped", info.name);
                foreign += 1;
                continue;
            }
            tried += 1;
            let password = password.to_vec();
            let kf2 = kf.clone();
            let unwrapped = tokio::task::spawn_blocking(move || kf2.unwrap_secret(&password))
                .await
                .map_err(|e| RepoError::Internal(format!("key derivation task failed: {e}")))?;
            match unwrapped {
                Ok(secret) => return Self::from_secret(store, config, kf.scope, key_id, secret),
                Err(e) if e.is_authentication_failure() => continue,
                Err(e) => {
                    last_error = Some(RepoError::format(info.name.clone(), e));
                }
            }
        }
        match (tried, last_error) {
            // Every readable key names another repository: the config is the odd one out.
            (0, _) if foreign > 0 => Err(RepoError::Refused(format!(
                "{}: names repository {} ({}), but all {foreign} key objects belong to another: \
                 the config is damaged or was replaced",
                names::CONFIG,
                config.id.short(),
                config.suite.name()
            ))),
            (0, Some(e)) => Err(e),
            (0, None) => Err(RepoError::Refused(format!(
                "repository at {} has no usable key object",
                store.location()
            ))),
            (tried, _) => Err(RepoError::WrongPassword { tried }),
        }
    }

    fn from_secret(
        store: Arc<dyn Store>,
        config: RepoConfig,
        scope: KeyScope,
        key_id: Id,
        secret: SecretKey,
    ) -> Result<Self> {
        let keys = match scope {
            KeyScope::Full => RepoKeys::from_master(config.suite, &secret),
            KeyScope::Maintenance => RepoKeys::from_maintenance(config.suite, secret.clone()),
        };
        config
            .verify(keys.maintenance())
            .map_err(|e| RepoError::format(names::CONFIG, e))?;
        let chunker_seed = match keys.content("") {
            Ok(content) => Some(
                config
                    .chunker_seed(content)
                    .map_err(|e| RepoError::format(names::CONFIG, e))?,
            ),
            Err(_) => None,
        };
        Ok(Repository {
            store,
            config,
            keys,
            secret,
            scope,
            key_id,
            chunker_seed,
            cache: None,
        })
    }

    /// Uses a local cache of index objects, snapshots and tree packs (see [`Cache`]).
    pub fn set_cache(&mut self, cache: Cache) {
        self.cache = Some(Arc::new(cache));
    }

    /// The metadata cache in use, if any.
    pub fn metadata_cache(&self) -> Option<&Cache> {
        self.cache.as_deref()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The verified config.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.config.suite
    }

    /// The keys held.
    pub fn keys(&self) -> &RepoKeys {
        &self.keys
    }

    /// The scope of the key used to open.
    pub fn scope(&self) -> KeyScope {
        self.scope
    }

    /// The id of the key object used to open.
    pub fn key_id(&self) -> Id {
        self.key_id
    }

    /// The chunker seed (only with a full key).
    pub fn chunker_seed(&self) -> Result<[u8; 32]> {
        self.chunker_seed.ok_or_else(|| RepoError::Refused("chunking needs the content key; this repository was opened with a maintenance-only key".into()))
    }

    /// Stores a content-addressed object under `dir/<hash of bytes>` and returns the id.
    pub(crate) async fn put_hashed(&self, dir: &str, bytes: Vec<u8>) -> Result<Id> {
        let id = Id(self.suite().hash(&bytes));
        let name = format!("{dir}/{id}");
        let bytes = Bytes::from(bytes);
        self.store.put(&name, bytes.clone()).await?;
        if let Some(cache) = &self.cache
            && Cache::keeps(&name)
        {
            cache.put(&name, &bytes);
        }
        Ok(id)
    }

    /// Reads an object and checks that its bytes hash to the id in its name.
    pub(crate) async fn get_verified(&self, name: &str) -> Result<Bytes> {
        let cache = self.cache.as_deref().filter(|_| Cache::keeps(name));
        if let Some(bytes) = cache.and_then(|c| c.get(name)) {
            return Ok(bytes);
        }
        let bytes = self.store.get(name).await?;
        if let Some(id) = names::id_of(name) {
            let actual = Id(self.suite().hash(&bytes));
            if actual != id {
                return Err(RepoError::format(
                    name,
                    zaibei_format::FormatError::invalid(
                        "object",
                        format!(
                            "content hash is {actual}, not the id in its name: the object is damaged"
                        ),
                    ),
                ));
            }
            if let Some(c) = cache {
                c.put(name, &bytes);
            }
        }
        Ok(bytes)
    }
}

/// Fails when the store already holds a repository.
async fn refuse_existing(store: &dyn Store) -> Result<()> {
    match store.stat(names::CONFIG).await {
        Ok(_) => Err(RepoError::AlreadyExists {
            location: store.location().to_owned(),
        }),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reads and parses the config (without verifying its MAC).
pub async fn read_config(store: &dyn Store) -> Result<RepoConfig> {
    let bytes = match store.get(names::CONFIG).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => {
            return Err(RepoError::NotFound {
                location: store.location().to_owned(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    RepoConfig::decode(&bytes).map_err(|e| RepoError::format(names::CONFIG, e))
}

pub(crate) fn decode_key(suite: Suite, name: &str, id: &Id, bytes: &[u8]) -> Result<KeyFile> {
    if Id(suite.hash(bytes)) != *id {
        return Err(RepoError::format(
            name,
            zaibei_format::FormatError::invalid(
                "key",
                "content hash does not match its name: the key object is damaged",
            ),
        ));
    }
    KeyFile::decode(bytes).map_err(|e| RepoError::format(name, e))
}

/// Wraps `secret` in a new key object; returns its id and bytes. Runs the KDF off the runtime.
pub(crate) async fn wrap_key(
    config: &RepoConfig,
    scope: KeyScope,
    kdf: PasswordKdf,
    password: &[u8],
    secret: &SecretKey,
    host: String,
    user: String,
) -> Result<(Id, Bytes)> {
    let (repo, suite) = (config.id, config.suite);
    let password = password.to_vec();
    let secret = secret.clone();
    let kf = tokio::task::spawn_blocking(move || {
        KeyFile::wrap(repo, suite, scope, kdf, &password, &secret, host, user)
    })
    .await
    .map_err(|e| RepoError::Internal(format!("key derivation task failed: {e}")))?
    .map_err(|e| RepoError::format("new key", e))?;
    let bytes = kf.encode();
    Ok((Id(suite.hash(&bytes)), Bytes::from(bytes)))
}
