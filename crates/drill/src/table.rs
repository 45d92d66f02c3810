//! The report for a terminal: aligned sections of plain text, headings in Chinese and
//! English. Names from the snapshot (hosts, paths) are shown with control characters escaped,
//! so a hostile file name cannot drive the terminal.

use std::fmt::Write;

use crate::cause::MAX_EXAMINED;
use crate::report::{
    CheckStatus, DrillReport, DrillStatus, FailureCause, FailurePhase, RpoMeasure, Verification,
};
use crate::units;

/// Failures shown on a terminal (the JSON and HTML forms list more).
pub const FAILURES_SHOWN: usize = 20;

/// `text` with control characters written as escapes (`\n`, `\x1b`).
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// The status in both languages.
pub fn status_label(status: DrillStatus) -> &'static str {
    match status {
        DrillStatus::Passed => "通过 PASSED",
        DrillStatus::TargetsMissed => "未达目标 TARGETS MISSED",
        DrillStatus::Failed => "失败 FAILED",
    }
}

/// A check's status in both languages.
pub fn check_label(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Met => "达到 met",
        CheckStatus::NotMet => "未达到 not met",
        CheckStatus::NotMeasured => "未测量 not measured",
    }
}

/// A failure's cause for people.
pub fn cause_label(cause: FailureCause) -> &'static str {
    match cause {
        FailureCause::RepositoryDamage => "repository damage",
        FailureCause::StoreUnreachable => "store unreachable",
        FailureCause::Local => "local",
        FailureCause::Unknown => "not traced",
    }
}

/// The RPO window for people: `last 7 d 00 h (12 restorable snapshots in it)`.
pub fn window_text(rpo: &RpoMeasure) -> String {
    match rpo.window_seconds {
        Some(w) => format!(
            "last {}{}",
            units::duration(w),
            rpo.restorable_in_window
                .map(|n| format!(" ({n} restorable snapshots in it)"))
                .unwrap_or_default()
        ),
        None => "the whole history".into(),
    }
}

/// The failures counted by cause, and whether tracing stopped early.
pub fn causes_text(v: &Verification) -> String {
    let c = &v.failure_causes;
    let mut parts = Vec::new();
    for (n, what) in [
        (c.repository_damage, "repository damage"),
        (c.store_unreachable, "store unreachable"),
        (c.local, "local"),
        (c.unknown, "not traced"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    let mut text = format!("causes: {}", parts.join(", "));
    if v.causes_incomplete {
        let _ = write!(
            text,
            "; tracing stopped at its bounds ({MAX_EXAMINED} failures, {} read again): damage \
             among the failures not traced would not show, run `zaibei check --read-data`",
            units::bytes(crate::cause::MAX_REREAD_BYTES)
        );
    }
    if let Some(b) = v.cause_bytes_downloaded {
        let _ = write!(text, "; {} downloaded to trace them", units::bytes(b));
    }
    text
}

fn opt_duration(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_owned(), units::duration)
}

/// Renders the report as text for a terminal.
pub fn render(r: &DrillReport) -> String {
    let mut o = String::new();
    let p = printable;
    let _ = writeln!(
        o,
        "灾备演练 DR drill {}: {}",
        r.drill_id,
        status_label(r.status)
    );
    if let Some(e) = &r.error {
        let _ = writeln!(o, "  stopped by: {}", p(e));
    }
    let _ = writeln!(
        o,
        "  repository  {} (id {}, {})",
        p(&r.repository.location),
        r.repository.id.get(..8).unwrap_or(&r.repository.id),
        r.repository.suite
    );
    let _ = writeln!(
        o,
        "  snapshot    {}  {}  host {}  paths {}",
        r.snapshot.short_id,
        units::short_time_text(&r.snapshot.time),
        p(&r.snapshot.hostname),
        p(&r.snapshot.paths.join(" "))
    );
    let _ = writeln!(
        o,
        "  scratch     {} ({})",
        p(&r.scratch.path),
        if r.scratch.kept { "kept" } else { "removed" }
    );

    let _ = writeln!(o, "\n恢复时间 RTO: {}", units::duration(r.rto.seconds));
    for ph in &r.rto.phases {
        let _ = write!(
            o,
            "  {:<10} {:>12}",
            ph.phase.name(),
            units::duration(ph.seconds)
        );
        match ph.phase {
            crate::clock::Phase::Restore => {
                let _ = write!(
                    o,
                    "   {} files, {}, {}",
                    r.rto.files_restored,
                    units::bytes(r.rto.bytes_restored),
                    units::rate(r.rto.restore_bytes_per_second)
                );
            }
            crate::clock::Phase::Verify => {
                let _ = write!(
                    o,
                    "   {} of {} files, {}, {}",
                    r.verification.files_verified,
                    r.verification.files_expected,
                    units::bytes(r.verification.bytes_verified),
                    units::rate(r.verification.verify_bytes_per_second)
                );
            }
            _ => {}
        }
        o.push('\n');
    }
    if let Some(down) = r.rto.bytes_downloaded {
        let _ = writeln!(
            o,
            "  downloaded {:>12}   until verified",
            units::bytes(down)
        );
    }

    let rpo = &r.rpo;
    let _ = writeln!(o, "\n恢复点 RPO: {}", opt_duration(rpo.rpo_seconds));
    let _ = writeln!(
        o,
        "  snapshots   {} in the group (host {}, paths {}), {} restorable",
        rpo.snapshots,
        p(&rpo.group.hostname),
        p(&rpo.group.paths.join(" ")),
        rpo.restorable
    );
    let gap_ends = match (&rpo.worst_gap_from, &rpo.worst_gap_to) {
        (Some(a), Some(b)) => format!(
            "  ({} → {})",
            a.id.get(..8).unwrap_or(&a.id),
            b.id.get(..8).unwrap_or(&b.id)
        ),
        _ => String::new(),
    };
    let _ = writeln!(o, "  window      {}", window_text(rpo));
    let _ = writeln!(
        o,
        "  worst gap   {}{gap_ends} in the window",
        opt_duration(rpo.worst_gap_seconds)
    );
    let _ = writeln!(o, "  newest age  {}", opt_duration(rpo.newest_age_seconds));
    for n in &rpo.not_restorable {
        let _ = writeln!(
            o,
            "  not restorable: {} ({}): {}",
            n.id.get(..8).unwrap_or(&n.id),
            units::short_time_text(&n.time),
            p(&n.reason)
        );
    }
    if rpo.unreadable_snapshot_objects > 0 {
        let _ = writeln!(
            o,
            "  {} snapshot objects of the repository cannot be read",
            rpo.unreadable_snapshot_objects
        );
    }

    for (name, t) in [("RTO", r.targets.rto), ("RPO", r.targets.rpo)] {
        if let Some(t) = t {
            let _ = writeln!(
                o,
                "目标 target {name} ≤ {}: {} (measured {})",
                units::duration(t.target_seconds),
                if t.met { "met" } else { "MISSED" },
                opt_duration(t.measured_seconds)
            );
        }
    }

    let a = &r.assessment;
    let _ = writeln!(o, "\n{} 灾难恢复能力等级 capability level", a.standard);
    if a.level == 0 {
        let _ = writeln!(o, "  level 0: the measured figures support no level");
    } else {
        let _ = writeln!(
            o,
            "  level {} {} ({})",
            a.level, a.level_name_zh, a.level_name_en
        );
    }
    if !a.conditions.is_empty() {
        let _ = writeln!(
            o,
            "  holds only if (not measured): {}",
            a.conditions
                .iter()
                .map(|c| c.text_en.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
        let _ = writeln!(
            o,
            "  confirmed by measurement alone: level {}",
            a.confirmed_level
        );
    }
    if let Some(next) = a.next_level {
        let _ = writeln!(o, "  missing for level {next}:");
        for m in &a.missing_for_next {
            let mark = match m.status {
                CheckStatus::NotMet => "✗",
                _ => "?",
            };
            let _ = writeln!(o, "    {mark} {}", m.text_en);
        }
    }
    let _ = writeln!(
        o,
        "  for the operator to attest (level {}):",
        a.attest.first().map_or(1, |i| i.level)
    );
    for i in &a.attest {
        let _ = writeln!(o, "    ☐ {}: {}", i.element_en, i.requirement_en);
    }

    let v = &r.verification;
    if v.failures_total > 0 {
        let _ = writeln!(o, "\n失败项 failures: {}", v.failures_total);
        let _ = writeln!(o, "  {}", causes_text(v));
        for f in v.failures.iter().take(FAILURES_SHOWN) {
            let phase = match f.phase {
                FailurePhase::Restore => "restore",
                FailurePhase::Verify => "verify",
            };
            let _ = writeln!(
                o,
                "  {}  [{phase}, {}] {}",
                p(&f.path),
                cause_label(f.cause),
                p(&f.reason)
            );
        }
        if v.failures_total as usize > FAILURES_SHOWN {
            let _ = writeln!(
                o,
                "  … and {} more (see --json or --html)",
                v.failures_total as usize - FAILURES_SHOWN
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("a\nb\x1b[2Jc\u{7f}"), "a\\nb\\u{1b}[2Jc\\u{7f}");
        assert_eq!(printable("灾备 ok"), "灾备 ok");
    }

    #[test]
    fn the_table_shows_the_figures_and_escapes_names() {
        let r = testdata::failed_report("repo1", 1_000_000, "/srv/\x1b[31mred\nline");
        let text = render(&r);
        assert!(text.contains("失败 FAILED"), "{text}");
        assert!(text.contains("/srv/\\u{1b}[31mred\\nline"), "{text}");
        assert!(!text.contains('\x1b'));
        assert!(text.contains("repository damage"));
        assert!(text.contains("restore "), "{text}");
        assert!(text.contains("verify "), "{text}");
        assert!(text.contains("worst gap   1 h 50 min"), "{text}");
        assert!(
            text.contains("window      last 7 d 00 h (2 restorable"),
            "{text}"
        );
        assert!(text.contains("causes: 1 repository damage"), "{text}");
        assert!(!text.contains("tracing stopped"), "{text}");
        let mut capped = r.clone();
        capped.verification.causes_incomplete = true;
        assert!(render(&capped).contains("tracing stopped at its bounds"));
        assert!(text.contains("GB/T 20988-2025"), "{text}");
        assert!(text.contains("level 0"), "{text}");
        assert!(text.contains("☐"), "{text}");
        let ok = render(&testdata::report("repo1", 1_000_000, 3.0, "db", "/srv"));
        assert!(ok.contains("通过 PASSED"), "{ok}");
        assert!(ok.contains("level 4 电子传输及完整设备支持"), "{ok}");
        assert!(ok.contains("holds only if (not measured)"), "{ok}");
        assert!(!ok.contains("failures"), "{ok}");
    }
}
