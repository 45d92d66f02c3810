//! `zaibei audit verify`: checks an exported audit log against its anchored checkpoints.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::Cli;
use crate::exit;

/// `zaibei audit` commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify an exported audit log (JSON Lines from GET /api/v1/audit/export) against the
    /// signed checkpoints anchored outside the server's database: finds every edited, removed,
    /// inserted, reordered or truncated record. Exit 0: intact; 4: tampering found.
    Verify(VerifyArgs),
}

/// Options of `zaibei audit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The exported log (JSON Lines).
    #[arg(long, value_name = "FILE")]
    pub log: PathBuf,
    /// The anchor store: the server's audit anchor directory (DATA_DIR/audit-anchors by
    /// default) or bucket location. Checkpoints anchored after the export make it look
    /// truncated: verify soon after exporting, or use --checkpoints.
    #[arg(
        long,
        value_name = "LOCATION",
        required_unless_present = "checkpoints",
        conflicts_with = "checkpoints"
    )]
    pub anchors: Option<String>,
    /// The checkpoints as a JSON array (GET /api/v1/audit/checkpoints), fetched just BEFORE
    /// the export, so that every one of them must be covered by the exported log.
    #[arg(long, value_name = "FILE")]
    pub checkpoints: Option<PathBuf>,
    /// The SM2 public key (PEM) that signs checkpoints (GET /api/v1/audit/key).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
}

/// Runs an audit command.
pub async fn run(cli: &Cli, command: &AuditCommand) -> Result<u8> {
    let AuditCommand::Verify(a) = command;
    let pem =
        std::fs::read_to_string(&a.key).with_context(|| format!("reading {}", a.key.display()))?;
    let key = zaibei_crypto::Sm2VerifyingKey::from_public_key_pem(&pem)
        .with_context(|| format!("{} is not an SM2 public key", a.key.display()))?;
    let anchors = match (&a.anchors, &a.checkpoints) {
        (Some(anchors), _) => {
            let location = zaibei_store::Location::parse(anchors)?;
            let store = zaibei_store::open(&location, &zaibei_store::OpenOptions::default())?;
            zaibei_audit::AnchorStore::new(store.store)
                .load_all()
                .await?
        }
        (None, Some(file)) => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            zaibei_audit::AnchorSet {
                checkpoints: serde_json::from_slice(&bytes).with_context(|| {
                    format!("{} is not a JSON array of checkpoints", file.display())
                })?,
                corrupt: Vec::new(),
            }
        }
        (None, None) => anyhow::bail!("give --anchors or --checkpoints"),
    };
    let file =
        std::fs::File::open(&a.log).with_context(|| format!("opening {}", a.log.display()))?;
    let report = zaibei_audit::verify_jsonl(
        std::io::BufReader::new(file),
        &anchors.checkpoints,
        &[key],
        zaibei_audit::VerifyOptions::default(),
    )
    .with_context(|| format!("reading {}", a.log.display()))?;
    let corrupt: Vec<String> = anchors.corrupt.iter().map(ToString::to_string).collect();
    let clean = report.is_ok() && corrupt.is_empty();
    if cli.json {
        println!(
            "{}",
            serde_json::json!({ "message_type": "audit_verify", "clean": clean, "report": report, "corrupt_anchors": corrupt })
        );
    } else {
        println!(
            "{} records (seq {}..{}), {} of {} checkpoints verified, anchored up to seq {}, {} records after the last checkpoint",
            report.records,
            report.first_seq.map_or("-".into(), |s| s.to_string()),
            report.last_seq.map_or("-".into(), |s| s.to_string()),
            report.checkpoints_verified,
            report.checkpoints,
            report
                .last_anchored_seq
                .map_or("-".into(), |s| s.to_string()),
            report.unanchored_records,
        );
        for f in &report.findings {
            println!("  TAMPERED: {f}");
        }
        if report.findings_omitted > 0 {
            println!("  … and {} more findings", report.findings_omitted);
        }
        for c in &corrupt {
            println!("  BAD ANCHOR: {c}");
        }
        println!(
            "{}",
            if clean {
                "audit log intact"
            } else {
                "audit log TAMPERED"
            }
        );
    }
    Ok(if clean { exit::OK } else { exit::DAMAGED })
}
