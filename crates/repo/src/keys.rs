//! Key management: several keys per repository, each wrapping the master key (or the
//! maintenance key alone) under its own password and KDF cost.

use zaibei_crypto::PasswordKdf;
use zaibei_format::{Id, KeyScope, Timestamp};

use crate::repository::{decode_key, wrap_key};
use crate::{RepoError, Repository, Result, names};

/// What `key list` shows about one key.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// Key object id.
    pub id: Id,
    /// Scope.
    pub scope: KeyScope,
    /// KDF and cost.
    pub kdf: PasswordKdf,
    /// Creation time.
    pub created: Timestamp,
    /// Host where it was made.
    pub host: String,
    /// User who made it.
    pub user: String,
    /// True for the key used to open the repository now.
    pub current: bool,
}

impl Repository {
    /// Adds a key for `password`. A full key can add keys of either scope; a maintenance key
    /// only maintenance keys.
    pub async fn add_key(
        &self,
        password: &[u8],
        scope: KeyScope,
        kdf: PasswordKdf,
        host: String,
        user: String,
    ) -> Result<Id> {
        let secret = match (self.scope, scope) {
            (KeyScope::Full, KeyScope::Full) | (KeyScope::Maintenance, KeyScope::Maintenance) => {
                self.secret.clone()
            }
            (KeyScope::Full, KeyScope::Maintenance) => self.keys.maintenance().root().clone(),
            (KeyScope::Maintenance, KeyScope::Full) => {
                return Err(RepoError::Refused(
                    "a maintenance-only key cannot create a full key".into(),
                ));
            }
        };
        let (id, bytes) = wrap_key(&self.config, scope, kdf, password, &secret, host, user).await?;
        self.store.put(&names::key(&id), bytes).await?;
        Ok(id)
    }

    /// Lists the keys of the repository.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for info in self.store.list(names::KEYS).await? {
            let Some(id) = names::id_of(&info.name) else {
                continue;
            };
            let bytes = self.store.get(&info.name).await?;
            let kf = decode_key(self.suite(), &info.name, &id, &bytes)?;
            if kf.repo != self.config.id {
                continue;
            }
            out.push(KeyInfo {
                id,
                scope: kf.scope,
                kdf: kf.kdf,
                created: kf.created,
                host: kf.host,
                user: kf.user,
                current: id == self.key_id,
            });
        }
        out.sort_by_key(|k| k.created);
        Ok(out)
    }

    /// Removes a key. Refuses to remove the key in use and the last full key.
    pub async fn remove_key(&self, id: &Id) -> Result<()> {
        if *id == self.key_id {
            return Err(RepoError::Refused(
                "refusing to remove the key in use; open the repository with another key first"
                    .into(),
            ));
        }
        let keys = self.list_keys().await?;
        let Some(target) = keys.iter().find(|k| k.id == *id) else {
            return Err(RepoError::Refused(format!(
                "no key {id} in this repository"
            )));
        };
        if target.scope == KeyScope::Full
            && keys.iter().filter(|k| k.scope == KeyScope::Full).count() < 2
        {
            return Err(RepoError::Refused(
                "refusing to remove the last full key: the data could never be read again".into(),
            ));
        }
        self.store.delete(&names::key(id)).await?;
        Ok(())
    }

    /// Replaces the key in use by a new one for `new_password` (same scope); returns the new
    /// key's id. The new key is written before the old one is removed.
    pub async fn change_password(
        &mut self,
        new_password: &[u8],
        kdf: PasswordKdf,
        host: String,
        user: String,
    ) -> Result<Id> {
        let new_id = self
            .add_key(new_password, self.scope, kdf, host, user)
            .await?;
        let old = self.key_id;
        self.key_id = new_id;
        self.store.delete(&names::key(&old)).await?;
        Ok(new_id)
    }
}
