"""The aggregated ``mmp batch`` report: one row per bag, totals, ``batch.json`` + ``batch.md``.

Owns the per-bag summary row (frames, frames/s, accounting balance, detections per
class, dropped inputs, failure reason in one line) built from a replay's ``report.json``,
and the batch totals (bags ok/skipped/failed, frames, wall clock, throughput).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from .html_report import write_batch_html


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def bag_row(
    name: str, bag: str, status: str, report: dict[str, Any] | None, reason: str = ""
) -> dict[str, Any]:
    """The summary of one bag: ``status`` is ok, skipped (done before, same config) or failed."""
    row: dict[str, Any] = {"name": name, "bag": bag, "status": status, "reason": reason}
    if report is None:
        return row
    dropped = sum(
        n for r in report["inputs"].values() for k, n in r["dropped"].items() if k != "pending"
    )
    row.update(
        frames=report["frames"],
        frames_per_s=report["timing"]["frames_per_s"],
        elapsed_s=report["timing"]["elapsed_s"],
        balanced=report["inputs_balanced"],
        detections_per_class=report["detections_per_class"],
        dropped=dropped,
        damaged=bool(report.get("damage")),
    )
    return row


def build_batch(
    rows: list[dict[str, Any]], executor: str, workers: int, wall_s: float
) -> dict[str, Any]:
    """Rows in the order the bags were given, plus totals; throughput counts this run's bags."""
    ran = [r for r in rows if r["status"] == "ok"]
    classes: Counter[str] = Counter()
    for r in rows:
        classes.update(r.get("detections_per_class", {}))
    frames_run = sum(r["frames"] for r in ran)
    bag_s = sum(r.get("bag_seconds", 0.0) for r in ran)
    return {
        "schema": "mmp.batch/1",
        "executor": executor,
        "workers": workers,
        "bags": rows,
        "totals": {
            "bags": len(rows),
            "ok": len(ran),
            "skipped": sum(r["status"] == "skipped" for r in rows),
            "failed": sum(r["status"] == "failed" for r in rows),
            "frames": sum(r.get("frames", 0) for r in rows),
            "frames_this_run": frames_run,
            "all_balanced": all(r.get("balanced", True) for r in rows if "balanced" in r),
            "detections_per_class": dict(sorted(classes.items())),
            "wall_s": round(wall_s, 3),  # wall clock: differs between runs
            "frames_per_s": round(frames_run / wall_s, 3) if wall_s > 0 else None,
            "bags_per_min": round(60 * len(ran) / wall_s, 3) if wall_s > 0 else None,
            "bag_seconds_per_s": round(bag_s / wall_s, 3) if wall_s > 0 else None,
        },
    }


def write_batch(out_dir: Path, batch: dict[str, Any]) -> None:
    """``batch.json``, ``batch.md`` and ``batch.html`` in ``out_dir``."""
    (out_dir / "batch.json").write_text(json.dumps(batch, indent=2, sort_keys=True))
    t = batch["totals"]
    lines = [
        "# Batch replay report",
        "",
        f"Executor: {batch['executor']} ({batch['workers']} workers). Bags: {t['bags']} "
        f"(ok {t['ok']}, skipped {t['skipped']}, failed {t['failed']}).",
        f"Wall clock {t['wall_s']} s: {t['frames_per_s']} frames/s, {t['bags_per_min']} bags/min, "
        f"{t['bag_seconds_per_s']} s of bag per s.",
        f"Detections kept per class: {t['detections_per_class']}",
        "",
        "| bag | status | frames | frames/s | balanced | kept per class | reason |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in batch["bags"]:
        link = f"[{r['name']}]({r['name']}/report.md)" if r["status"] != "failed" else r["name"]
        balanced = {True: "yes", False: "NO", None: "-"}[r.get("balanced")]
        classes = ", ".join(f"{k} {v}" for k, v in r.get("detections_per_class", {}).items())
        lines.append(
            f"| {link} | {r['status']} | {r.get('frames', '-')} | {r.get('frames_per_s', '-')} "
            f"| {balanced} | {classes or '-'} | {r.get('reason') or ''} |"
        )
    (out_dir / "batch.md").write_text("\n".join(lines) + "\n")
    write_batch_html(out_dir, batch)
