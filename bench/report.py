#!/usr/bin/env python3
"""Tables of medians and ratios from a bench/run results directory.

usage: bench/report.py RESULTS_DIR [--write docs/BENCHMARKS.md]

Prints Markdown: the run's header (versions.txt), one table per measure (wall time, CPU time,
peak RSS, repository size) with the median of every round and, for wall time, the range, then
the speed issue's targets with the measured ratio and whether each is met. With --write, the
text replaces what lies between the markers `<!-- bench/run: begin -->` and
`<!-- bench/run: end -->` in the given file.
"""
import csv
import statistics
import sys
from pathlib import Path

STEPS = [
    ("backup1", "first backup of `src`"),
    ("backup2", "unchanged re-backup"),
    ("backup3", "re-backup of `src-v2` (1% changed)"),
    ("restore", "full restore of that snapshot"),
    ("big", "first backup of `big` (2 GiB)"),
]
SIZES = [
    ("size1", "after the first backup"),
    ("size3", "after the `src-v2` backup"),
    ("size-big", "after the `big` backup"),
]
BEGIN, END = "<!-- bench/run: begin -->", "<!-- bench/run: end -->"


def load(results):
    """Rows by (tool, step). A timed step that failed, or a restore whose tree differed, is
    kept apart (under step + ":failed") so that it never enters a median."""
    rows = {}
    with open(results / "results.csv", newline="") as f:
        all_rows = list(csv.DictReader(f))
    bad_restores = {(r["tool"], r["round"]) for r in all_rows if r["step"] == "verify" and r["exit"] != "0"}
    for r in all_rows:
        failed = r["wall_s"] and (r["exit"] != "0" or (r["step"] == "restore" and (r["tool"], r["round"]) in bad_restores))
        rows.setdefault((r["tool"], r["step"] + (":failed" if failed else "")), []).append(r)
    return rows


def med(rows, tool, step, field):
    vals = [float(r[field]) for r in rows.get((tool, step), []) if r[field] not in ("", None)]
    return statistics.median(vals) if vals else None


def cpu(rows, tool, step):
    vals = [float(r["user_s"]) + float(r["sys_s"]) for r in rows.get((tool, step), []) if r["user_s"]]
    return statistics.median(vals) if vals else None


def fmt(x, unit="", digits=2):
    return "—" if x is None else f"{x:.{digits}f}{unit}"


def table(title, tools, lines):
    out = [f"**{title}**", "", "| | " + " | ".join(tools) + " |", "| --- |" + " --- |" * len(tools)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return out + [""]


def report(results):
    rows = load(results)
    tools = []
    for tool, _ in rows:
        if tool not in tools and tool != "tar-zstd":
            tools.append(tool)
    out = [BEGIN, "", "```text"] + (results / "versions.txt").read_text().strip().splitlines() + ["```", ""]
    failed = sorted({f"{t} {s[:-7]} (round {r['round']})" for (t, s), rs in rows.items() if s.endswith(":failed") for r in rs})
    if failed:
        out += [f"**Failed steps, left out of every median** (see the logs): {', '.join(failed)}", ""]
    ref = med(rows, "tar-zstd", "backup1", "wall_s")
    if ref is not None:
        out += [f"Reference `tar -cf - src | zstd -3 -T2 >/dev/null`: median {ref:.2f} s.", ""]

    def walls(step):
        line = [label_of(step)]
        for t in tools:
            vals = [float(r["wall_s"]) for r in rows.get((t, step), []) if r["wall_s"]]
            line.append(f"{statistics.median(vals):.2f} s ({min(vals):.2f}–{max(vals):.2f})" if vals else "—")
        return line

    out += table("Wall time, median (min–max) of the rounds", tools, [walls(s) for s, _ in STEPS])
    out += table("CPU time (user + system), median", tools,
                 [[label_of(s)] + [fmt(cpu(rows, t, s), " s") for t in tools] for s, _ in STEPS])
    out += table("Peak RSS, median", tools,
                 [[label_of(s)] + [fmt(kib / 1024 if (kib := med(rows, t, s, "rss_kib")) else None, " MiB", 0)
                                   for t in tools] for s, _ in STEPS])
    out += table("Repository size, median", tools,
                 [[label] + [fmt(b / 2**20 if (b := med(rows, t, s, "repo_bytes")) else None, " MiB", 1)
                             for t in tools] for s, label in SIZES])
    verify = {t: [r["exit"] for r in rows.get((t, "verify"), [])] for t in tools}
    out += ["Restores checked with `diff -r` against `src-v2`: " +
            ", ".join(f"{t} {v.count('0')}/{len(v)} identical" for t, v in verify.items()), ""]
    out += targets(rows, ref) + [END]
    return "\n".join(out) + "\n"


def label_of(step):
    return dict(STEPS)[step]


def targets(rows, ref):
    def ratio(peer, ours, step):
        a, b = med(rows, peer, step, "wall_s"), med(rows, ours, step, "wall_s")
        return None if not a or not b else a / b

    lines = []

    def faster(name, peer, ours, step, goal):
        r = ratio(peer, ours, step)
        lines.append((name, f"≥ {goal}×", fmt(r, "×"), r is not None and r >= goal))

    faster("first backup vs restic", "restic", "zaibei-gm", "backup1", 2.5)
    faster("first backup vs borg (zstd,3)", "borg-zstd3", "zaibei-gm", "backup1", 5)
    faster("first backup vs rustic", "rustic", "zaibei-gm", "backup1", 5)
    ours = med(rows, "zaibei-gm", "backup1", "wall_s")
    r = None if not ours or not ref else ours / ref
    lines.append(("first backup vs `tar \\| zstd -3 -T2`", "≤ 1.3×", fmt(r, "×"), r is not None and r <= 1.3))
    faster("first backup, intl suite, vs restic", "restic", "zaibei-intl", "backup1", 3.5)
    faster("unchanged re-backup vs restic", "restic", "zaibei-gm", "backup2", 8)
    faster("1%-changed re-backup vs restic", "restic", "zaibei-gm", "backup3", 6)
    faster("full restore vs restic", "restic", "zaibei-gm", "restore", 3)
    faster("first backup of the 2 GiB file vs restic", "restic", "zaibei-gm", "big", 2.5)
    for step, label in SIZES:
        a, b = med(rows, "restic", step, "repo_bytes"), med(rows, "zaibei-gm", step, "repo_bytes")
        r = None if not a or not b else b / a
        lines.append((f"repository size {label}, vs restic", "≤ 1.03×", fmt(r, "×", 3), r is not None and r <= 1.03))
    for step, label in STEPS:
        a, b = med(rows, "restic", step, "rss_kib"), med(rows, "zaibei-gm", step, "rss_kib")
        r = None if not a or not b else b / a
        lines.append((f"peak RSS, {label}, vs restic", "≤ 1×", fmt(r, "×"), r is not None and r <= 1))
    out = ["**Targets of the speed issue** (ratios of medians; `gm` suite unless said)", "",
           "| target | goal | measured | met |", "| --- | --- | --- | --- |"]
    out += [f"| {n} | {g} | {m} | {'yes' if ok else '**no**'} |" for n, g, m, ok in lines]
    return out + [""]


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--write"):
        sys.exit(__doc__)
    text = report(Path(argv[1]))
    print(text)
    if len(argv) == 4:
        doc = Path(argv[3])
        old = doc.read_text()
        if BEGIN in old and END in old:
            new = old[: old.index(BEGIN)] + text.rstrip("\n") + old[old.index(END) + len(END):]
        else:
            new = old.rstrip("\n") + "\n\n" + text
        doc.write_text(new)


if __name__ == "__main__":
    main(sys.argv)
