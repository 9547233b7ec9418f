"""``report.html`` (one replay) and ``batch.html`` (``mmp batch``): self-contained pages.

Owns the HTML rendering of the reports ``replay.py`` and ``batch.py`` already computed:
tables (input accounting, detections per class, filter decisions, latency per stage),
the plots and overlay pictures embedded as data URIs, so the page opens from disk in a
browser without a server; the batch page links each bag's own ``report.html``.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1300px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f2f2f2}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#17702a;font-weight:600}.bad{color:#b00020;font-weight:600}.skip{color:#776}
.pics img{width:420px;margin:4px;border:1px solid #ccc}
.kv span{display:inline-block;margin-right:18px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _data_uri(path: Path) -> str | None:
    if not path.is_file():
        return None
    mime = "image/png" if path.suffix == ".png" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _table(header: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='n'>{_e(c)}</td>" if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _page(title: str, body: list[str]) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{_e(title)}</h1>"
        + "\n".join(body)
        + "</body></html>\n"
    )


def write_html(out_dir: Path, report: dict[str, Any]) -> Path:
    """``out_dir/report.html`` from a replay's report (plots.png and pictures embedded)."""
    t = report.get("timing", {})
    models = report.get("models", {})
    body = [
        "<div class='kv'>"
        f"<span>Bags: {_e(', '.join(report.get('bags', [])))}</span>"
        f"<span>Frames: <b>{_e(report.get('frames'))}</b></span>"
        f"<span>Frames/s: <b>{_e(t.get('frames_per_s'))}</b></span>"
        f"<span>Wall clock: {_e(t.get('elapsed_s'))} s</span>"
        f"<span>Accounting balanced: "
        + (
            "<span class='ok'>yes</span>"
            if report.get("inputs_balanced")
            else "<span class='bad'>no</span>"
        )
        + "</span>"
        f"<span>Models: {_e(models.get('detector'))} / {_e(models.get('segmenter'))}"
        + (" (project-trained, synthetic world only)" if models.get("embedded_default") else "")
        + "</span></div>",
        "<h2>Input accounting</h2>",
        _table(
            ["topic", "role", "in", "used", "dropped"],
            [
                [
                    _e(topic),
                    _e(row.get("role")),
                    row["in"],
                    row["used"],
                    _e(", ".join(f"{k} {v}" for k, v in row["dropped"].items()) or "-"),
                ]
                for topic, row in sorted(report.get("inputs", {}).items())
            ],
            {2, 3},
        ),
    ]
    classes = report.get("detections_per_class", {})
    decisions = report.get("filter", {})
    body += [
        "<h2>Detections kept per class and filter decisions</h2>",
        "<div style='display:flex;gap:40px'>",
        _table(["class", "kept"], [[_e(k), v] for k, v in classes.items()], {1}),
        _table(["decision", "boxes"], [[_e(k), v] for k, v in decisions.items()], {1}),
        "</div>",
        "<h2>Latency per stage (ms, wall clock)</h2>",
        _table(
            ["stage", "p50", "p90", "p99", "max", "n"],
            [
                [_e(k), v["p50"], v["p90"], v["p99"], v["max"], v["n"]]
                for k, v in t.get("stage_ms", {}).items()
            ],
            {1, 2, 3, 4, 5},
        ),
    ]
    plots = _data_uri(out_dir / "plots.png")
    if plots:
        body += ["<h2>Plots</h2>", f"<img src='{plots}' alt='plots' style='max-width:100%'>"]
    pics = [u for u in (_data_uri(out_dir / p) for p in report.get("pictures", [])) if u]
    if pics:
        body += ["<h2>Overlays (sampled frames)</h2>", "<div class='pics'>"]
        body += [f"<img src='{u}' alt='frame'>" for u in pics]
        body.append("</div>")
    if report.get("damage"):
        body += ["<h2>Damage in the bag</h2>", f"<pre>{_e(report['damage'])}</pre>"]
    if report.get("multimodal"):
        body += ["<h2>Captions and answers</h2>", "<ul>"]
        body += [
            f"<li>{_e(a.get('topic'))}: {_e(a.get('text'))}</li>" for a in report["multimodal"]
        ]
        body.append("</ul>")
    path = out_dir / "report.html"
    path.write_text(_page("Replay report", body))
    return path


def _bar_chart(rows: list[dict[str, Any]]) -> str | None:
    done = [r for r in rows if r["status"] != "failed"]
    if not done:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(12, 3.2))
    names = [r["name"] for r in done]
    ax[0].bar(names, [r["frames"] for r in done], color="#4a7fb5")
    ax[0].set_title("frames per bag")
    ax[1].bar(names, [r.get("frames_per_s") or 0 for r in done], color="#5aa36b")
    ax[1].set_title("frames/s per bag (wall clock)")
    for a in ax:
        a.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def write_batch_html(out_dir: Path, batch: dict[str, Any]) -> Path:
    """``out_dir/batch.html``: the batch summary with a link to each bag's report.html."""
    totals = batch["totals"]
    klass = {"ok": "ok", "skipped": "skip", "failed": "bad"}
    rows = []
    for r in batch["bags"]:
        link = f"{r['name']}/report.html"
        name = (
            f"<a href='{_e(link)}'>{_e(r['name'])}</a>"
            if (out_dir / link).is_file()
            else _e(r["name"])
        )
        rows.append(
            [
                name,
                f"<span class='{klass[r['status']]}'>{_e(r['status'])}</span>",
                r.get("frames", "-"),
                r.get("frames_per_s", "-"),
                _e({True: "yes", False: "NO", None: "-"}[r.get("balanced")]),
                _e(", ".join(f"{k} {v}" for k, v in r.get("detections_per_class", {}).items())),
                _e(r.get("reason") or ""),
            ]
        )
    body = [
        "<div class='kv'>"
        f"<span>Executor: <b>{_e(batch['executor'])}</b> ({_e(batch['workers'])} workers)</span>"
        f"<span>Bags: {totals['bags']} (ok {totals['ok']}, skipped {totals['skipped']}, "
        f"failed {totals['failed']})</span>"
        f"<span>Frames: {totals['frames']}</span>"
        f"<span>Wall clock: {totals['wall_s']} s</span>"
        f"<span>Throughput: {totals['frames_per_s']} frames/s, "
        f"{totals['bag_seconds_per_s']} s of bag per s</span></div>",
        "<h2>Bags</h2>",
        _table(
            ["bag", "status", "frames", "frames/s", "balanced", "kept per class", "reason"],
            rows,
            {2, 3},
        ),
    ]
    chart = _bar_chart(batch["bags"])
    if chart:
        body += ["<h2>Per bag</h2>", f"<img src='{chart}' alt='per bag' style='max-width:100%'>"]
    path = out_dir / "batch.html"
    path.write_text(_page("Batch replay report", body))
    return path
