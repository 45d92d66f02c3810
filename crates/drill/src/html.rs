//! The report as one self-contained HTML page: inline CSS, inline SVG charts of RTO and RPO
//! over past drills, labels in Chinese and English, no scripts and no external resources.
//! Every piece of text is escaped (host names and paths come from snapshots, which may be
//! hostile).

use std::fmt::Write;
use std::io::Write as _;
use std::path::Path;

use crate::chart::{self, LineChart, Series};
use crate::report::{CheckStatus, DrillReport, DrillStatus, FailurePhase};
use crate::table::{cause_label, causes_text, check_label, window_text};
use crate::{DrillError, units};

/// Past drills drawn in the charts at most (the newest ones).
pub const MAX_CHARTED: usize = 60;

/// `text` escaped for HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// The page's style sheet (inline in the page).
const STYLE: &str = include_str!("report.css");

fn status_text(s: DrillStatus) -> (&'static str, &'static str) {
    match s {
        DrillStatus::Passed => ("passed", "演练通过 PASSED"),
        DrillStatus::TargetsMissed => ("targets_missed", "未达目标 TARGETS MISSED"),
        DrillStatus::Failed => ("failed", "演练失败 FAILED"),
    }
}

fn status_class(s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::Met => "met",
        CheckStatus::NotMet => "not_met",
        CheckStatus::NotMeasured => "not_measured",
    }
}

fn opt_duration(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_owned(), units::duration)
}

fn card(o: &mut String, key: &str, value: &str) {
    let _ = write!(
        o,
        r#"<div class="card"><div class="k">{}</div><div class="v">{}</div></div>"#,
        escape(key),
        escape(value)
    );
}

fn row(o: &mut String, cells: &[&str]) {
    o.push_str("<tr>");
    for c in cells {
        let _ = write!(o, "<td>{}</td>", escape(c));
    }
    o.push_str("</tr>");
}

/// Renders the page for `r`; `history` holds the drills to chart, oldest first (`r` is
/// added when it is not among them).
pub fn render(r: &DrillReport, history: &[DrillReport]) -> String {
    let mut o = String::with_capacity(32 * 1024);
    let (class, label) = status_text(r.status);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>灾备演练报告 DR drill report {}</title><style>{STYLE}</style></head><body><main>",
        escape(&r.drill_id)
    );
    let _ = write!(
        o,
        r#"<h1>灾备演练报告 DR drill report <span class="badge {class}">{label}</span></h1><div class="sub">{} · {} → {} · 演练主机 drill host {} · {}</div>"#,
        escape(&r.drill_id),
        escape(&units::short_time_text(&r.started_at)),
        escape(&units::short_time_text(&r.finished_at)),
        escape(&r.drill_host),
        escape(&r.program)
    );
    if let Some(e) = &r.error {
        let _ = write!(
            o,
            r#"<p class="not_met">演练中止 stopped by: {}</p>"#,
            escape(e)
        );
    }
    summary(&mut o, r);
    assessment(&mut o, r);
    rto(&mut o, r);
    rpo(&mut o, r);
    charts(&mut o, r, history);
    failures(&mut o, r);
    o.push_str("<h2>说明 Notes</h2>");
    for n in r.assessment.notes.iter().chain([&r.rpo.proof]) {
        let _ = write!(o, r#"<p class="note">{}</p>"#, escape(n));
    }
    o.push_str("</main></body></html>\n");
    o
}

/// Writes `page` to `path` so that a crash leaves either the old file or the new one: a
/// temporary file in the same directory, flushed to disk, then renamed over `path`.
pub fn write_page(path: &Path, page: &str) -> Result<(), DrillError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name() else {
        return Err(DrillError::io(
            "writing the HTML report",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        ));
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(page.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(DrillError::io("writing the HTML report", path, e));
    }
    crate::history::sync_dir(dir).map_err(|e| DrillError::io("writing the HTML report", dir, e))
}

fn summary(o: &mut String, r: &DrillReport) {
    o.push_str(r#"<div class="cards">"#);
    card(o, "恢复时间 RTO", &units::duration(r.rto.seconds));
    card(o, "恢复点 RPO", &opt_duration(r.rpo.rpo_seconds));
    card(
        o,
        "校验文件 files verified",
        &format!(
            "{} / {}",
            r.verification.files_verified, r.verification.files_expected
        ),
    );
    card(
        o,
        "校验数据 bytes verified",
        &units::bytes(r.verification.bytes_verified),
    );
    card(
        o,
        &format!("{} 等级 level", r.assessment.standard),
        &r.assessment.level.to_string(),
    );
    o.push_str("</div><h2>演练对象 What was drilled</h2><table>");
    let s = &r.snapshot;
    row(
        o,
        &[
            "仓库 repository",
            &format!(
                "{} (id {}, {})",
                r.repository.location, r.repository.id, r.repository.suite
            ),
        ],
    );
    row(
        o,
        &[
            "快照 snapshot",
            &format!("{} · {}", s.id, units::short_time_text(&s.time)),
        ],
    );
    row(o, &["主机 host", &s.hostname]);
    row(o, &["路径 paths", &s.paths.join("  ")]);
    row(o, &["标签 tags", &s.tags.join(", ")]);
    row(
        o,
        &[
            "恢复位置 scratch",
            &format!(
                "{} ({})",
                r.scratch.path,
                if r.scratch.kept {
                    "保留 kept"
                } else {
                    "已删除 removed"
                }
            ),
        ],
    );
    o.push_str("</table>");
    for (name, t) in [("RTO", r.targets.rto), ("RPO", r.targets.rpo)] {
        if let Some(t) = t {
            let _ = write!(
                o,
                r#"<p>目标 target {name} ≤ {}: <span class="{}">{}</span> (measured {})</p>"#,
                escape(&units::duration(t.target_seconds)),
                if t.met { "met" } else { "not_met" },
                if t.met {
                    "达到 met"
                } else {
                    "未达到 missed"
                },
                escape(&opt_duration(t.measured_seconds))
            );
        }
    }
}

fn assessment(o: &mut String, r: &DrillReport) {
    let a = &r.assessment;
    let _ = write!(
        o,
        r#"<h2>{} 灾难恢复能力等级 Capability level</h2><p><span class="level">{}</span>{}</p>"#,
        escape(&a.standard),
        a.level,
        if a.level == 0 {
            "测得的指标不支持任何等级 the measured figures support no level".to_owned()
        } else {
            format!(
                "{} · {}",
                escape(&a.level_name_zh),
                escape(&a.level_name_en)
            )
        }
    );
    if !a.conditions.is_empty() {
        o.push_str("<p>前提（未测量）holds only if (not measured): ");
        let list: Vec<String> = a
            .conditions
            .iter()
            .map(|c| format!("{} / {}", escape(&c.text_zh), escape(&c.text_en)))
            .collect();
        o.push_str(&list.join("; "));
        let _ = write!(
            o,
            "</p><p>仅凭测量确认 confirmed by measurement alone: level {}</p>",
            a.confirmed_level
        );
    }
    if let Some(next) = a.next_level {
        let _ = write!(o, "<h3>第{next}级尚缺 Missing for level {next}</h3><ul>");
        for m in &a.missing_for_next {
            let _ = write!(
                o,
                r#"<li class="{}">{} — {}</li>"#,
                status_class(m.status),
                escape(&m.text_zh),
                escape(&m.text_en)
            );
        }
        o.push_str("</ul>");
    }
    let _ = write!(
        o,
        "<h3>由运维方确认 For the operator to attest (level {})</h3><ul class=\"attest\">",
        a.attest.first().map_or(1, |i| i.level)
    );
    for i in &a.attest {
        let _ = write!(
            o,
            "<li>☐ <b>{} {}</b>: {} — {}{}</li>",
            escape(&i.element_zh),
            escape(&i.element_en),
            escape(&i.requirement_zh),
            escape(&i.requirement_en),
            i.evidence
                .as_ref()
                .map(|e| format!(" <span class=\"note\">({})</span>", escape(e)))
                .unwrap_or_default()
        );
    }
    o.push_str("</ul><details><summary>各级要求 Every requirement of every level</summary><table><tr><th>级 level</th><th>要求 requirement</th><th>结果 status</th><th>测得 measured</th></tr>");
    for c in &a.checks {
        let _ = write!(
            o,
            r#"<tr><td class="num">{}</td><td>{} / {}</td><td class="{}">{}</td><td>{}</td></tr>"#,
            c.level,
            escape(&c.text_zh),
            escape(&c.text_en),
            status_class(c.status),
            check_label(c.status),
            escape(&c.measured)
        );
    }
    o.push_str("</table></details>");
    if !a.offsite_measured {
        o.push_str("<p class=\"not_measured\">异地副本：未测量 Off-site copies: not measured</p>");
    } else {
        o.push_str("<table><tr><th>站点 site</th><th>位置 location</th><th>延迟 lag</th><th>可达 reachable</th></tr>");
        for s in &a.offsite_sites {
            row(
                o,
                &[
                    &s.name,
                    &s.location,
                    &opt_duration(s.lag_seconds.map(|l| l as f64)),
                    if s.reachable { "yes" } else { "no" },
                ],
            );
        }
        o.push_str("</table>");
    }
}

fn rto(o: &mut String, r: &DrillReport) {
    let _ = write!(
        o,
        "<h2>恢复时间 RTO: {}</h2>",
        escape(&units::duration(r.rto.seconds))
    );
    o.push_str(&chart::phase_bar(&r.rto.phases));
    o.push_str("<table><tr><th>阶段 phase</th><th>用时 time</th></tr>");
    for p in &r.rto.phases {
        let _ = write!(
            o,
            r#"<tr><td>{}</td><td class="num">{}</td></tr>"#,
            escape(p.phase.label()),
            escape(&units::duration(p.seconds))
        );
    }
    o.push_str("</table><table>");
    let v = &r.verification;
    let rows = [
        ("恢复文件 files restored", r.rto.files_restored.to_string()),
        ("恢复目录 directories", r.rto.dirs_restored.to_string()),
        ("其他条目 other entries", r.rto.others_restored.to_string()),
        (
            "恢复数据 bytes restored",
            units::bytes(r.rto.bytes_restored),
        ),
        (
            "恢复速率 restore rate",
            units::rate(r.rto.restore_bytes_per_second),
        ),
        (
            "下载 downloaded (until verified)",
            r.rto.bytes_downloaded.map_or("—".into(), units::bytes),
        ),
        ("应有文件 files expected", v.files_expected.to_string()),
        ("校验通过 files verified", v.files_verified.to_string()),
        (
            "校验速率 verify rate",
            units::rate(v.verify_bytes_per_second),
        ),
        ("失败项 failures", v.failures_total.to_string()),
    ];
    let rows = rows.into_iter().chain(v.cause_bytes_downloaded.map(|b| {
        (
            "追查原因下载 downloaded to trace failures (not in the RTO)",
            units::bytes(b),
        )
    }));
    for (k, val) in rows {
        row(o, &[k, &val]);
    }
    o.push_str("</table>");
}

fn rpo(o: &mut String, r: &DrillReport) {
    let p = &r.rpo;
    let _ = write!(
        o,
        "<h2>恢复点 RPO: {}</h2><table>",
        escape(&opt_duration(p.rpo_seconds))
    );
    let gap = match (&p.worst_gap_from, &p.worst_gap_to) {
        (Some(a), Some(b)) => format!(
            "{} ({} → {})",
            opt_duration(p.worst_gap_seconds),
            units::short_time_text(&a.time),
            units::short_time_text(&b.time)
        ),
        _ => opt_duration(p.worst_gap_seconds),
    };
    let rows = [
        (
            "分组 group",
            format!("{} · {}", p.group.hostname, p.group.paths.join("  ")),
        ),
        (
            "快照 snapshots",
            format!("{} ({} restorable)", p.snapshots, p.restorable),
        ),
        ("窗口 window", window_text(p)),
        ("最大间隔 worst gap (in the window)", gap),
        (
            "最新快照时长 newest age",
            opt_duration(p.newest_age_seconds),
        ),
        (
            "不可读快照对象 unreadable snapshot objects",
            p.unreadable_snapshot_objects.to_string(),
        ),
    ];
    for (k, v) in rows {
        row(o, &[k, &v]);
    }
    for n in &p.not_restorable {
        row(
            o,
            &[
                "不可恢复 not restorable",
                &format!(
                    "{} · {} · {}",
                    n.id,
                    units::short_time_text(&n.time),
                    n.reason
                ),
            ],
        );
    }
    o.push_str("</table>");
}

fn charts(o: &mut String, r: &DrillReport, history: &[DrillReport]) {
    let mut drills: Vec<&DrillReport> = history.iter().collect();
    if !drills.iter().any(|d| d.drill_id == r.drill_id) {
        drills.push(r);
    }
    let skip = drills.len().saturating_sub(MAX_CHARTED);
    let drills = &drills[skip..];
    let labels: Vec<String> = drills
        .iter()
        .map(|d| units::short_time_text(&d.started_at))
        .collect();
    let failed: Vec<bool> = drills.iter().map(|d| !d.recovered).collect();
    let _ = write!(o, "<h2>历次演练 Past drills ({})</h2>", drills.len());
    let rto_series = [Series {
        name: "RTO".into(),
        color: "#1e88e5",
        values: drills.iter().map(|d| Some(d.rto.seconds)).collect(),
    }];
    o.push_str(&chart::line_chart(&LineChart {
        title: "恢复时间 RTO（红点：演练失败 red: drill failed）",
        labels: &labels,
        failed: &failed,
        series: &rto_series,
        target: r.targets.rto.map(|t| {
            (
                t.target_seconds,
                format!("目标 target {}", units::duration(t.target_seconds)),
            )
        }),
    }));
    let rpo_series = [
        Series {
            name: "RPO".into(),
            color: "#6a1b9a",
            values: drills.iter().map(|d| d.rpo.rpo_seconds).collect(),
        },
        Series {
            name: "worst gap".into(),
            color: "#26a69a",
            values: drills.iter().map(|d| d.rpo.worst_gap_seconds).collect(),
        },
        Series {
            name: "newest age".into(),
            color: "#f9a825",
            values: drills.iter().map(|d| d.rpo.newest_age_seconds).collect(),
        },
    ];
    o.push_str(&chart::line_chart(&LineChart {
        title: "恢复点 RPO",
        labels: &labels,
        failed: &failed,
        series: &rpo_series,
        target: r.targets.rpo.map(|t| {
            (
                t.target_seconds,
                format!("目标 target {}", units::duration(t.target_seconds)),
            )
        }),
    }));
    o.push_str("<table><tr><th>演练 drill</th><th>结果 result</th><th>RTO</th><th>RPO</th><th>等级 level</th><th>快照 snapshot</th></tr>");
    for d in drills.iter().rev() {
        let (class, label) = status_text(d.status);
        let _ = write!(
            o,
            r#"<tr><td>{}</td><td><span class="badge {class}">{label}</span></td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
            escape(&units::short_time_text(&d.started_at)),
            escape(&units::duration(d.rto.seconds)),
            escape(&opt_duration(d.rpo.rpo_seconds)),
            d.assessment.level,
            escape(&d.snapshot.short_id)
        );
    }
    o.push_str("</table>");
}

fn failures(o: &mut String, r: &DrillReport) {
    let v = &r.verification;
    if v.failures_total == 0 {
        return;
    }
    let _ = write!(
        o,
        "<h2>失败项 Failures ({})</h2><p>{}</p>",
        v.failures_total,
        escape(&causes_text(v))
    );
    o.push_str("<table><tr><th>路径 path</th><th>阶段 phase</th><th>原因 cause</th><th>信息 message</th></tr>");
    for f in &v.failures {
        let phase = match f.phase {
            FailurePhase::Restore => "恢复 restore",
            FailurePhase::Verify => "校验 verify",
        };
        row(o, &[&f.path, phase, cause_label(f.cause), &f.reason]);
    }
    o.push_str("</table>");
    if (v.failures.len() as u64) < v.failures_total {
        let _ = write!(
            o,
            r#"<p class="note">{} more not listed</p>"#,
            v.failures_total - v.failures.len() as u64
        );
    }
}

#[cfg(test)]
#[path = "html_tests.rs"]
mod tests;
