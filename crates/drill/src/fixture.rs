//! A real repository in memory with a backed-up source tree, for the tests of verification
//! and of whole drills.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zaibei_archive::backup::{BackupOptions, BackupOutcome, backup};
use zaibei_archive::progress::Counters;
use zaibei_crypto::{PasswordKdf, Suite};
use zaibei_repo::{IndexedRepository, InitOptions, Repository};
use zaibei_store::{MemoryStore, Store};

pub(crate) const PASSWORD: &[u8] = b"drill test";

/// Pseudo-random bytes (xorshift), so that chunks do not deduplicate.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Regular files [`source_tree`] makes.
pub(crate) const FILES: u64 = 7;

/// A source tree with files of several sizes (one of several chunks), a sparse file, an
/// empty file, a read-only file, a symlink, a FIFO and nested directories.
pub(crate) fn source_tree(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(root.join("dir/sub"))?;
    fs::create_dir_all(root.join("empty-dir"))?;
    fs::write(root.join("big"), noise(5 << 20, 11))?;
    fs::write(root.join("small"), b"hello, drill\n")?;
    fs::write(root.join("empty"), b"")?;
    fs::write(root.join("dir/sub/deep"), noise(70_000, 12))?;
    fs::write(root.join("dir/text"), "灾备演练\n".repeat(1000))?;
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::create(root.join("sparse"))?;
        f.set_len(8 << 20)?;
        f.write_all_at(&noise(100_000, 13), 3 << 20)?;
    }
    fs::write(root.join("secret"), b"mode 000\n")?;
    fs::set_permissions(root.join("secret"), fs::Permissions::from_mode(0o400))?;
    std::os::unix::fs::symlink("dir/text", root.join("link"))?;
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )?;
    Ok(())
}

/// A repository in memory holding one backup of a fresh source tree.
pub(crate) struct Fixture {
    pub store: Arc<dyn Store>,
    pub dir: tempfile::TempDir,
    pub source: PathBuf,
    pub repo: Arc<IndexedRepository>,
    pub first: BackupOutcome,
}

impl Fixture {
    pub(crate) async fn new() -> Fixture {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let suite = Suite::Gm;
        let repo = Repository::init(
            Arc::clone(&store),
            PASSWORD,
            InitOptions::new(suite, PasswordKdf::insecure_for_tests(suite)),
        )
        .await
        .unwrap();
        let repo = Arc::new(repo.load_index().await.unwrap());
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        source_tree(&source).unwrap();
        let first = backup_path(&repo, &source).await;
        let mut f = Fixture {
            store,
            dir,
            source,
            repo,
            first,
        };
        f.reindex().await;
        f
    }

    /// Opens the repository again (not indexed), as a drill does.
    pub(crate) async fn open(&self) -> Repository {
        Repository::open(Arc::clone(&self.store), PASSWORD)
            .await
            .unwrap()
    }

    /// Opens and indexes the repository again, to see what was written since.
    pub(crate) async fn reindex(&mut self) {
        self.repo = Arc::new(self.open().await.load_index().await.unwrap());
    }
}

/// Backs up `path` into `repo`.
pub(crate) async fn backup_path(repo: &Arc<IndexedRepository>, path: &Path) -> BackupOutcome {
    let opts = BackupOptions {
        paths: vec![path.to_path_buf()],
        host: "drill-test".into(),
        connections: 2,
        workers: 2,
        ..Default::default()
    };
    backup(Arc::clone(repo), opts, Arc::new(Counters::default()))
        .await
        .unwrap()
}
