#!/usr/bin/env python3
"""Rewrites BENCHMARKS.md from one run of the benchmarks.

  benchmarks_md.py REPORT_DIR BENCHMARKS.md

REPORT_DIR holds, per benchmark, `<bench>.json` (machine, date, rows: figure, mticket, peer,
ratio) and `<bench>.md` (its section), written by benches/common/report.rs. The new file
has the table of every row of this run, then the sections of this run, then the earlier
runs: what the old file held below its table, oldest first, as it was written.
"""
import json
import sys
from pathlib import Path

ORDER = ["intake", "submission", "mailbox-sqlite", "mailbox-postgres", "scale"]
THIS_RUN = "<!-- this run: written by scripts/bench -->"
EARLIER = "<!-- earlier runs -->"


def earlier_runs(old: str) -> str:
    """The old file's sections and earlier runs, oldest first, without the markers."""
    if THIS_RUN in old:
        body = old.split(THIS_RUN, 1)[1]
        last, _, before = body.partition(EARLIER)
        before = before.strip()
        for lead in ("## Earlier runs", "As they were written, oldest first."):
            before = before.removeprefix(lead).strip()
        return (before + "\n\n" + last.strip()).strip()
    # A file written before this script: its title and first paragraph, then sections.
    parts = old.split("\n## ", 1)
    return ("## " + parts[1]).strip() if len(parts) == 2 else ""


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main():
    report_dir, target = Path(sys.argv[1]), Path(sys.argv[2])
    benches = [b for b in ORDER if (report_dir / f"{b}.json").exists()]
    benches += sorted(p.stem for p in report_dir.glob("*.json") if p.stem not in ORDER)
    if not benches:
        sys.exit(f"no benchmark results in {report_dir}")
    old = target.read_text() if target.exists() else ""
    runs = [json.loads((report_dir / f"{b}.json").read_text()) for b in benches]
    out = [
        "# Benchmarks",
        "",
        "Written by `scripts/bench`, which builds release, starts the peers and runs every "
        "benchmark on SQLite and PostgreSQL. The table has every figure of the last run; "
        "each benchmark's section below gives its details and how it measures. Ratio: "
        "mticket against the peer in the same run, as the section defines it (above 1: "
        "mticket is ahead); for a figure with a target, whether the target is met.",
        "",
        "| figure | mticket | peer | ratio | machine | date |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        for row in run["rows"]:
            out.append("| " + " | ".join(cell(x) for x in (
                f'{run["bench"]}: {row["figure"]}', row["mticket"], row["peer"], row["ratio"],
                run["machine"], run["date"])) + " |")
    out += ["", THIS_RUN, ""]
    for b in benches:
        out.append((report_dir / f"{b}.md").read_text().strip())
        out.append("")
    earlier = earlier_runs(old)
    if earlier:
        out += [EARLIER, "", "## Earlier runs", "",
                "As they were written, oldest first.", "", earlier, ""]
    target.write_text("\n".join(out))
    print(f"{target}: {sum(len(r['rows']) for r in runs)} figures from {', '.join(benches)}")


if __name__ == "__main__":
    main()
