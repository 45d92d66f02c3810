//! `zaibei init`.

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use zaibei_crypto::Suite;
use zaibei_repo::{InitOptions, Repository};

use crate::{Cli, exit, output, password};

/// Create a new repository.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Crypto suite: gm (SM4-GCM, SM3, PBKDF2-HMAC-SM3) or intl (AES-256-GCM, BLAKE3, Argon2id).
    #[arg(long, default_value = "gm", value_parser = super::parse_suite)]
    pub suite: Suite,
    /// Minimum time one password derivation must take on this machine, in milliseconds.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub kdf_time: u64,
    /// zstd compression level for data (0 turns compression off).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub compression: i32,
    /// Size at which packs are closed (64K to 1G). Larger packs mean fewer objects on
    /// object storage; smaller ones waste less when prune repacks.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_pack_size)]
    pub pack_size: u64,
    /// Cheapest KDF parameters, for tests only.
    #[arg(long, hide = true)]
    pub insecure_test_kdf: bool,
    /// Share key material with this repository: the new one gets the same master key (wrapped
    /// under the new password), chunker seed and parameters, compression level and pack size,
    /// so copies between the two move packs as they are and never decrypt. How a replica site
    /// is made. --suite, --compression and --pack-size are then taken from it.
    #[arg(long, value_name = "LOCATION")]
    pub from: Option<String>,
    /// Password file of the --from repository (default: the same password as the new one).
    #[arg(long, requires = "from")]
    pub from_password_file: Option<std::path::PathBuf>,
}

fn parse_pack_size(text: &str) -> std::result::Result<u64, String> {
    let size = super::parse_size(text)?;
    if !(64 << 10..=1 << 30).contains(&size) {
        return Err(format!(
            "{text:?}: the pack size must be between 64 KiB and 1 GiB"
        ));
    }
    Ok(size)
}

#[derive(Serialize)]
struct Initialized<'a> {
    message_type: &'static str,
    id: String,
    location: &'a str,
    suite: &'static str,
    key: String,
    kdf: String,
}

pub async fn run(cli: &Cli, a: &InitArgs) -> Result<u8> {
    let store = crate::repo::store(cli)?.store;
    let password = password::get_new(
        cli.password_file.as_deref(),
        "enter password for new repository: ",
    )?;
    let from = match &a.from {
        Some(loc) => {
            let pw = match &a.from_password_file {
                Some(f) => password::from_file(f)?,
                None => password.clone(),
            };
            let src_store = crate::sites::open_store(cli, loc)?;
            Some(
                Repository::open(src_store, &pw)
                    .await
                    .with_context(|| format!("opening the repository {loc} to share its keys"))?,
            )
        }
        None => None,
    };
    let suite = from.as_ref().map_or(a.suite, |f| f.suite());
    let kdf = super::new_kdf(suite, a.kdf_time, a.insecure_test_kdf)?;
    let mut opts = InitOptions::new(suite, kdf);
    opts.zstd_level = a.compression;
    opts.pack_size = a.pack_size;
    opts.hostname = super::hostname();
    opts.username = std::env::var("USER").unwrap_or_default();
    let location = store.location().to_owned();
    let repo = match &from {
        Some(f) => Repository::init_sharing_keys(store, &password, opts, f).await,
        None => Repository::init(store, &password, opts).await,
    }
    .with_context(|| format!("creating repository at {location}"))?;
    let out = Initialized {
        message_type: "initialized",
        id: repo.config().id.to_hex(),
        location: &location,
        suite: suite.name(),
        key: repo.key_id().to_hex(),
        kdf: super::describe_kdf(&kdf),
    };
    if cli.json {
        output::json_line(&out)?;
    } else if !cli.quiet {
        crate::say!(
            "created repository {} at {location}",
            repo.config().id.short()
        )?;
        crate::say!(
            "  suite {}, key {} ({})",
            out.suite,
            repo.key_id().short(),
            out.kdf
        )?;
        crate::say!("Keep the password safe: without it the data cannot be recovered.")?;
    }
    Ok(exit::OK)
}
