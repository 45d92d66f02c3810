//! An in-memory store, for tests.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{ObjectInfo, Store, StoreError, StoreErrorKind, check_name};

type Objects = BTreeMap<String, (Bytes, SystemTime)>;

/// A store that keeps objects in memory; clones share the same objects.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    objects: Arc<Mutex<Objects>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Objects> {
        // A panic while holding the lock cannot leave the map half-updated: recover it.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(op: &'static str, name: &str) -> Result<(), StoreError> {
        if check_name(name) {
            Ok(())
        } else {
            Err(
                StoreError::new(StoreErrorKind::InvalidInput, op, name, "memory:")
                    .with_detail("invalid object name"),
            )
        }
    }

    fn missing(op: &'static str, name: &str) -> StoreError {
        StoreError::new(StoreErrorKind::NotFound, op, name, "memory:")
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn location(&self) -> &str {
        "memory:"
    }

    async fn put(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        Self::check("put", name)?;
        self.lock()
            .insert(name.to_owned(), (data, SystemTime::now()));
        Ok(())
    }

    async fn put_new(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        Self::check("put", name)?;
        let mut objects = self.lock();
        if objects.contains_key(name) {
            return Err(StoreError::new(
                StoreErrorKind::AlreadyExists,
                "put",
                name,
                "memory:",
            ));
        }
        objects.insert(name.to_owned(), (data, SystemTime::now()));
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        Self::check("get", name)?;
        self.lock()
            .get(name)
            .map(|(d, _)| d.clone())
            .ok_or_else(|| Self::missing("get", name))
    }

    async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let data = self.get(name).await?;
        if range.start > range.end || range.end > data.len() as u64 {
            return Err(
                StoreError::new(StoreErrorKind::InvalidInput, "get", name, "memory:").with_detail(
                    format!("range {range:?} outside object of {} bytes", data.len()),
                ),
            );
        }
        Ok(data.slice(range.start as usize..range.end as usize))
    }

    async fn stat(&self, name: &str) -> Result<ObjectInfo, StoreError> {
        Self::check("stat", name)?;
        self.lock()
            .get(name)
            .map(|(d, t)| ObjectInfo {
                name: name.to_owned(),
                size: d.len() as u64,
                modified: Some(*t),
            })
            .ok_or_else(|| Self::missing("stat", name))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        Self::check("list", prefix)?;
        let dir = format!("{prefix}/");
        Ok(self
            .lock()
            .range(dir.clone()..)
            .take_while(|(k, _)| k.starts_with(&dir))
            .map(|(k, (d, t))| ObjectInfo {
                name: k.clone(),
                size: d.len() as u64,
                modified: Some(*t),
            })
            .collect())
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        Self::check("delete", name)?;
        self.lock()
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| Self::missing("delete", name))
    }
}
