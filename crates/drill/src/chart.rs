//! Inline SVG charts for the HTML report: durations over past drills, and the phases of one
//! drill. Plain SVG elements with `<title>` tooltips; no scripts, no external resources.

use std::fmt::Write;

use crate::clock::PhaseTime;
use crate::html::escape;
use crate::units;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 270.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 52.0;

/// A target more than this many times the largest value is named, not drawn (it would
/// flatten the chart).
const TARGET_SCALE: f64 = 5.0;

/// Tick steps for a duration axis, in seconds.
const STEPS: [f64; 26] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    900.0, 1800.0, 3600.0, 7200.0, 10_800.0, 21_600.0, 43_200.0, 86_400.0, 172_800.0, 604_800.0,
];

/// One line of a chart.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Its name in the legend.
    pub name: String,
    /// Its colour (a CSS colour literal).
    pub color: &'static str,
    /// One value per drill (`None`: not measured).
    pub values: Vec<Option<f64>>,
}

/// A chart of durations over drills.
#[derive(Debug, Clone)]
pub(crate) struct LineChart<'a> {
    /// The title.
    pub title: &'a str,
    /// One label per drill (its date), also shown in tooltips.
    pub labels: &'a [String],
    /// Drills that failed, drawn in red.
    pub failed: &'a [bool],
    /// The lines.
    pub series: &'a [Series],
    /// A target drawn as a dashed line, with its label.
    pub target: Option<(f64, String)>,
}

/// The largest duration an axis reaches: a hundred years. Larger values (a history file
/// edited by hand, say) are drawn at the top.
const AXIS_MAX: f64 = 100.0 * 365.25 * 86_400.0;

/// Most grid lines an axis draws.
const MAX_TICKS: usize = 12;

/// A value fit to draw: finite and not negative (`None` otherwise).
fn drawable(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite() && *v >= 0.0)
}

/// The tick step and top of a duration axis whose largest value is `max`.
fn axis(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max.min(AXIS_MAX)
    } else {
        1.0
    };
    let step = STEPS
        .iter()
        .copied()
        .find(|s| max / s <= 5.0)
        .unwrap_or_else(|| (max / 5.0).ceil());
    (step, (max / step).ceil().max(1.0) * step)
}

/// Renders a line chart as an `<svg>` element.
pub(crate) fn line_chart(c: &LineChart<'_>) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}">"#,
        escape(c.title)
    );
    let _ = write!(
        s,
        r#"<text x="{LEFT}" y="18" class="title">{}</text>"#,
        escape(c.title)
    );
    let n = c.labels.len();
    let data_max = c
        .series
        .iter()
        .flat_map(|se| se.values.iter().filter_map(|v| drawable(*v)))
        .fold(0.0f64, f64::max)
        .min(AXIS_MAX);
    let target = c
        .target
        .as_ref()
        .filter(|t| drawable(Some(t.0)).is_some() && t.0 <= data_max * TARGET_SCALE);
    let max = data_max.max(target.map_or(0.0, |t| t.0));
    if n == 0
        || c.series
            .iter()
            .all(|se| se.values.iter().all(|v| drawable(*v).is_none()))
    {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" class="empty">无数据 no data</text></svg>"#,
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        return s;
    }
    let (step, top) = axis(max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let y = |v: f64| TOP + plot_h - (v / top).clamp(0.0, 1.0) * plot_h;
    let x = |i: usize| {
        if n == 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (n - 1) as f64
        }
    };
    // Grid and y labels (a bounded count of them, whatever the values).
    let ticks = ((top / step).round() as usize).min(MAX_TICKS);
    for k in 0..=ticks {
        let tick = step * k as f64;
        let ty = y(tick);
        let _ = write!(
            s,
            r#"<line x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="ylabel">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 6.0,
            ty + 4.0,
            if tick == 0.0 {
                "0".to_owned()
            } else {
                escape(&units::duration(tick))
            }
        );
    }
    // X labels: at most six, first and last included; times of day when all drills fall on
    // one day.
    let same_day =
        c.labels.first().and_then(|l| l.get(..10)) == c.labels.last().and_then(|l| l.get(..10));
    let every = n.div_ceil(6).max(1);
    for (i, label) in c.labels.iter().enumerate() {
        if i % every == 0 || i + 1 == n {
            let short = if same_day {
                label.get(11..19).unwrap_or(label)
            } else {
                label.get(..10).unwrap_or(label)
            };
            let anchor = match i {
                _ if n == 1 => "middle",
                0 => "start",
                _ if i + 1 == n => "end",
                _ => "middle",
            };
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" class="xlabel" text-anchor="{anchor}">{}</text>"#,
                x(i),
                HEIGHT - BOTTOM + 16.0,
                escape(short)
            );
        }
    }
    if let Some((t, label)) = c.target.as_ref().filter(|_| target.is_none()) {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="tlabel">{} (above the chart{})</text>"#,
            WIDTH - RIGHT,
            TOP - 4.0,
            escape(label),
            if data_max > 0.0 && *t / data_max < 1e6 {
                format!(", {}×", (*t / data_max).round())
            } else {
                String::new()
            }
        );
    }
    if let Some((t, label)) = target {
        let ty = y(*t);
        let _ = write!(
            s,
            r#"<line x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" class="target"/><text x="{:.1}" y="{:.1}" class="tlabel">{}</text>"#,
            WIDTH - RIGHT,
            WIDTH - RIGHT,
            ty - 4.0,
            escape(label)
        );
    }
    for se in c.series {
        let points: Vec<String> = se
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| drawable(*v).map(|v| format!("{:.1},{:.1}", x(i), y(v))))
            .collect();
        if points.len() > 1 {
            let _ = write!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
                points.join(" "),
                se.color
            );
        }
        for (i, v) in se.values.iter().enumerate() {
            let Some(v) = drawable(*v) else { continue };
            let bad = c.failed.get(i).copied().unwrap_or(false);
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{}"><title>{}: {} {}</title></circle>"#,
                x(i),
                y(v),
                if bad { "#c62828" } else { se.color },
                escape(c.labels.get(i).map_or("", String::as_str)),
                escape(&se.name),
                escape(&units::duration(v))
            );
        }
    }
    // Legend, below the x labels.
    let mut lx = LEFT;
    let ly = HEIGHT - 14.0;
    for se in c.series {
        let _ = write!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{ly:.1}" class="legend">{}</text>"#,
            ly - 10.0,
            se.color,
            lx + 16.0,
            escape(&se.name)
        );
        lx += 24.0 + 7.0 * se.name.chars().count() as f64;
    }
    s.push_str("</svg>");
    s
}

/// Colours of the phases, in [`crate::clock::Phase::ALL`] order.
const PHASE_COLORS: [&str; 5] = ["#8e99ab", "#5c6bc0", "#26a69a", "#1e88e5", "#43a047"];

/// The phases of one drill as one horizontal stacked bar, with a legend.
pub(crate) fn phase_bar(phases: &[PhaseTime]) -> String {
    let seconds = |p: &PhaseTime| drawable(Some(p.seconds)).unwrap_or(0.0).min(AXIS_MAX);
    let total: f64 = phases.iter().map(seconds).sum();
    let mut s = String::from(
        r#"<svg class="chart" viewBox="0 0 720 90" role="img" aria-label="RTO phases">"#,
    );
    let (x0, w) = (10.0, 700.0);
    let mut x = x0;
    for (i, p) in phases.iter().enumerate() {
        let share = if total > 0.0 { seconds(p) / total } else { 0.0 };
        let pw = share * w;
        let color = PHASE_COLORS[i % PHASE_COLORS.len()];
        let _ = write!(
            s,
            r#"<rect x="{x:.1}" y="10" width="{pw:.1}" height="28" fill="{color}"><title>{}: {}</title></rect>"#,
            escape(p.phase.label()),
            escape(&units::duration(p.seconds))
        );
        x += pw;
        let lx = x0 + 140.0 * i as f64;
        let _ = write!(
            s,
            r#"<rect x="{lx:.1}" y="54" width="12" height="12" fill="{color}"/><text x="{:.1}" y="64" class="legend">{} {}</text>"#,
            lx + 16.0,
            escape(p.phase.name()),
            escape(&units::duration(p.seconds))
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Phase;

    #[test]
    fn axis_steps_are_round_durations() {
        assert_eq!(axis(0.0), (0.2, 1.0));
        assert_eq!(axis(4.2), (1.0, 5.0));
        assert_eq!(axis(100.0), (30.0, 120.0));
        assert_eq!(axis(3.0 * 3600.0), (3600.0, 3.0 * 3600.0));
        assert_eq!(axis(f64::NAN), (0.2, 1.0));
        let (step, top) = axis(1e9);
        assert!(top >= 1e9 && top / step <= 6.0);
        // Values no history should hold are clamped to a finite axis.
        for huge in [f64::MAX, f64::MAX / 2.0, 1e300, f64::INFINITY] {
            let (step, top) = axis(huge);
            assert!(step.is_finite() && top.is_finite() && step > 0.0, "{huge}");
            assert!(top / step <= MAX_TICKS as f64, "{huge}");
        }
    }

    #[test]
    fn absurd_values_from_a_hand_edited_history_still_draw() {
        let labels = vec![
            "2026-03-01".to_owned(),
            "2026-03-02".to_owned(),
            "2026-03-03".to_owned(),
            "2026-03-04".to_owned(),
            "2026-03-05".to_owned(),
        ];
        let series = [Series {
            name: "RPO".into(),
            color: "#000",
            values: vec![
                Some(f64::MAX),
                Some(f64::INFINITY),
                Some(f64::NAN),
                Some(-5.0),
                Some(60.0),
            ],
        }];
        let svg = line_chart(&LineChart {
            title: "t",
            labels: &labels,
            failed: &[false; 5],
            series: &series,
            target: Some((f64::MAX, "target".into())),
        });
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
        assert!(svg.matches("class=\"grid\"").count() <= MAX_TICKS + 1);
        for bad in ["inf", "NaN"] {
            assert!(!svg.contains(bad), "{bad} in {svg}");
        }
        let bar = phase_bar(&[
            PhaseTime {
                phase: Phase::Open,
                seconds: f64::MAX,
            },
            PhaseTime {
                phase: Phase::Restore,
                seconds: f64::NAN,
            },
        ]);
        assert!(!bar.contains("NaN") && !bar.contains("inf"), "{bar}");
    }

    #[test]
    fn charts_draw_every_point_and_escape_labels() {
        let labels = vec![
            "2026-03-01 <b>".to_owned(),
            "2026-03-02".to_owned(),
            "2026-03-03".to_owned(),
        ];
        let series = [Series {
            name: "RTO & co".into(),
            color: "#1e88e5",
            values: vec![Some(10.0), None, Some(30.0)],
        }];
        let svg = line_chart(&LineChart {
            title: "恢复时间 RTO <x>",
            labels: &labels,
            failed: &[false, false, true],
            series: &series,
            target: Some((20.0, "target 20 s".into())),
        });
        // A target far above the values is named instead of drawn.
        let far = line_chart(&LineChart {
            title: "t",
            labels: &labels,
            failed: &[false, false, false],
            series: &series,
            target: Some((3600.0, "target 1 h".into())),
        });
        assert!(!far.contains("class=\"target\""));
        assert!(far.contains("target 1 h (above the chart, 120×)"), "{far}");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("#c62828"), "the failed drill is red");
        assert!(svg.contains("class=\"target\""));
        assert!(svg.contains("RTO &amp; co"));
        assert!(svg.contains("&lt;x&gt;"));
        assert!(!svg.contains("<b>") && !svg.contains("<x>"));
        let empty = line_chart(&LineChart {
            title: "t",
            labels: &[],
            failed: &[],
            series: &[],
            target: None,
        });
        assert!(empty.contains("no data"));
        let one = line_chart(&LineChart {
            title: "t",
            labels: &labels[1..2],
            failed: &[false],
            series: &[Series {
                name: "a".into(),
                color: "#000",
                values: vec![Some(1.0)],
            }],
            target: None,
        });
        assert_eq!(one.matches("<circle").count(), 1);
        assert!(!one.contains("<polyline"));
    }

    #[test]
    fn the_phase_bar_has_one_segment_per_phase() {
        let phases: Vec<PhaseTime> = Phase::ALL
            .iter()
            .map(|&phase| PhaseTime {
                phase,
                seconds: 1.0,
            })
            .collect();
        let svg = phase_bar(&phases);
        assert_eq!(svg.matches("<title>").count(), 5);
        assert!(svg.contains("width=\"140.0\""), "{svg}");
    }
}
