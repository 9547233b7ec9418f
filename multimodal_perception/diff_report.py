"""What ``mmp diff`` writes: ``diff.json`` (numbers), ``diff.md`` and ``diff.html`` (tables
and side-by-side pictures of the frames that changed most), and the terminal table.

A picture is the frame's camera image from run A's output bag twice: A's kept boxes on
the left (red: removed in B, orange: moved, magenta: class changed), B's on the right
(green: added); boxes that did not change are grey.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .html_report import _data_uri, _e, _page, _table
from .ros_pkg.bag_io import iter_bag
from .ros_pkg.image import compressed_to_bgr8, image_to_bgr8
from .run_diff import SAME_IOU, BagDiff, MetricDelta, RunDiff, compare_frame
from .run_metrics import BagRun

GREY, RED, ORANGE, MAGENTA, GREEN = (
    (160, 160, 160),
    (40, 40, 220),
    (0, 140, 255),
    (200, 0, 200),
    (40, 180, 40),
)


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:.4g}{unit}"


def metric_rows(metrics: list[MetricDelta]) -> list[list[str]]:
    rows = []
    for m in metrics:
        ci = f"[{m.low:+.4g}, {m.high:+.4g}]" if m.low is not None else "-"
        worse = np.isfinite(m.delta) and m.delta * m.better < 0
        rows.append([m.metric, _fmt(m.a, m.unit), _fmt(m.b, m.unit),
                     f"{m.delta:+.4g}" if np.isfinite(m.delta) else "-", ci,
                     "worse" if worse else ("better" if m.delta else "same")])  # fmt: skip
    return rows


HEADER = ["metric", "A", "B", "B - A", "95% CI", ""]


def to_json(diff: RunDiff) -> dict[str, Any]:
    return {
        "schema": "mmp.diff/1",
        "a": str(diff.a),
        "b": str(diff.b),
        "versions": diff.versions,
        "only_in": diff.only_in,
        "pooled": [m.to_json() for m in diff.pooled],
        "bags": [
            {
                "name": b.name, "problem": b.problem, "frames": [b.frames_a, b.frames_b],
                "paired_frames": b.paired, "metrics": [m.to_json() for m in b.metrics],
                "changes": b.change_totals(), "messages": b.messages,
                "most_changed": [vars(c) for c in most_changed(b)],
            }
            for b in diff.bags
        ],
    }  # fmt: skip


def most_changed(bag: BagDiff, n: int = 5) -> list[Any]:
    changed = [c for c in bag.changes if c.total or c.id_changes]
    return sorted(changed, key=lambda c: (-c.total, -c.id_changes, c.stamp_ns))[:n]


def format_table(diff: RunDiff) -> str:
    lines = [f"A: {diff.a}  ({_version_line(diff.versions.get('a'))})",
             f"B: {diff.b}  ({_version_line(diff.versions.get('b'))})"]  # fmt: skip
    width = max([len(r[0]) for r in metric_rows(diff.pooled)] + [8])
    lines.append(f"pooled over {len(diff.bags)} bag(s):")
    for row in metric_rows(diff.pooled):
        lines.append(
            f"  {row[0]:{width}} {row[1]:>10} {row[2]:>10} {row[3]:>10} {row[4]:>22} {row[5]}"
        )
    for bag in diff.bags:
        if bag.problem:
            lines.append(f"bag {bag.name}: {bag.problem}")
            continue
        t = bag.change_totals()
        lines.append(
            f"bag {bag.name}: {bag.paired} paired frames ({bag.frames_a} in A, "
            f"{bag.frames_b} in B); boxes added {t['added']}, removed {t['removed']}, moved "
            f"{t['moved']}, class changed {t['class_changed']}, track id changes "
            f"{t['id_changes']}; {t['frames_changed']} frames changed"
        )
    for side in ("a", "b"):
        if diff.only_in.get(side):
            lines.append(f"only in run {side.upper()}: {', '.join(diff.only_in[side])}")
    return "\n".join(lines)


def _version_line(v: dict[str, Any] | None) -> str:
    if not v:
        return "versions not recorded"
    git = v.get("git") or {}
    commit = (git.get("commit") or "no git")[:10] + ("+dirty" if git.get("dirty") else "")
    models = ", ".join(f"{k} {str(d)[:8]}" for k, d in (v.get("models") or {}).items())
    return f"{commit}, params {str(v.get('parameters_sha256'))[:8]}, {models}"


def camera_images(run: BagRun, stamps: set[int]) -> dict[int, np.ndarray]:
    """The camera images of ``stamps`` from a run's output bag, in one pass."""
    inputs = run.report.get("inputs", {})
    cameras = [topic for topic, row in inputs.items() if row.get("role") == "camera"]
    images: dict[int, np.ndarray] = {}
    if not stamps or not cameras:
        return images
    for rec in iter_bag(run.out_dir / "output.mcap", cameras[:1]):
        msg = rec.msg
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        if stamp not in stamps:
            continue
        try:
            images[stamp] = (
                compressed_to_bgr8(msg) if hasattr(msg, "format") else image_to_bgr8(msg)
            )
        except Exception:  # a picture is best effort; the tables stand
            continue
    return images


def _draw(image: np.ndarray, boxes: np.ndarray, colours: list[tuple[int, int, int]], label: str):
    out = image.copy()
    for box, colour in zip(boxes.astype(int), colours, strict=True):
        cv2.rectangle(out, (box[0], box[1]), (box[2], box[3]), colour, 2)
    cv2.putText(out, label, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    return out


def picture(a: BagRun, b: BagRun, stamp_ns: int, image: np.ndarray) -> np.ndarray:
    fa, fb = a.outputs[stamp_ns], b.outputs[stamp_ns]
    pairs, removed, added = compare_frame(fa, fb)
    left, right = [GREY] * len(fa.classes), [GREY] * len(fb.classes)
    for i in removed:
        left[i] = RED
    for j in added:
        right[j] = GREEN
    for i, j, iou in pairs:
        colour = ORANGE if iou < SAME_IOU else (MAGENTA if fa.classes[i] != fb.classes[j] else GREY)
        left[i] = right[j] = colour
    both = np.hstack([_draw(image, fa.boxes, left, "A"), _draw(image, fb.boxes, right, "B")])
    scale = min(1.0, 1600 / both.shape[1])
    return cv2.resize(both, None, fx=scale, fy=scale) if scale < 1 else both


def write_diff(
    diff: RunDiff, out_dir: Path, a: dict[str, BagRun], b: dict[str, BagRun], pictures: int = 4
) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "diff.json").write_text(json.dumps(to_json(diff), indent=2, sort_keys=True))
    va, vb = _version_line(diff.versions.get("a")), _version_line(diff.versions.get("b"))
    md = ["# mmp diff", "", f"- A: `{diff.a}` ({va})", f"- B: `{diff.b}` ({vb})", "",
          "## Pooled", ""]  # fmt: skip
    md += _md_table(metric_rows(diff.pooled))
    html = [f"<p>A: {_e(diff.a)} ({_e(va)})<br>B: {_e(diff.b)} ({_e(vb)})</p>",
            "<h2>Pooled</h2>", _table(HEADER, metric_rows(diff.pooled))]  # fmt: skip
    for bag in diff.bags:
        md += ["", f"## {bag.name}", ""]
        html.append(f"<h2>{_e(bag.name)}</h2>")
        if bag.problem:
            md.append(bag.problem)
            html.append(f"<p class='bad'>{_e(bag.problem)}</p>")
            continue
        md += _md_table(metric_rows(bag.metrics))
        html.append(_table(HEADER, metric_rows(bag.metrics)))
        t = bag.change_totals()
        summary = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in t.items())
        md += ["", f"Outputs: {summary}.", ""]
        html.append(f"<p>Outputs: {_e(summary)}.</p>")
        rows = [[topic, *(f"{k} {x}->{y}" for k, (x, y) in row.items() if x != y or k == "in")]
                for topic, row in bag.messages.items()]  # fmt: skip
        md += ["Messages (A->B): " + "; ".join(" ".join(r) for r in rows), ""]
        html.append("<p>Messages (A->B): " + "<br>".join(_e(" ".join(r)) for r in rows) + "</p>")
        pics = []
        changes = most_changed(bag, pictures)
        images = camera_images(a[bag.name], {c.stamp_ns for c in changes})
        for change in changes:
            if change.stamp_ns not in images:
                continue
            image = picture(a[bag.name], b[bag.name], change.stamp_ns, images[change.stamp_ns])
            path = out_dir / f"{bag.name}_{change.stamp_ns}.jpg"
            cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 85])
            caption = (f"stamp {change.stamp_ns}: +{change.added} -{change.removed} "
                       f"moved {change.moved} class {change.class_changed}")  # fmt: skip
            md += [f"![{caption}]({path.name})", ""]
            pics.append(f"<figure><img src='{_data_uri(path)}' style='width:100%'>"
                        f"<figcaption>{_e(caption)}</figcaption></figure>")  # fmt: skip
        html += pics
    (out_dir / "diff.md").write_text("\n".join(md) + "\n")
    (out_dir / "diff.html").write_text(_page("mmp diff", html))
    return [out_dir / "diff.json", out_dir / "diff.md", out_dir / "diff.html"]


def _md_table(rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]
