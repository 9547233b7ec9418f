"""Where every input message went, and the diagnostics built from it.

``account`` folds the synchroniser's outcomes into the ingest counts: per input topic,
messages in, used, and dropped by reason, where ``in == used + sum(dropped)`` once a
stream has ended (``pending`` counts what the synchroniser still holds).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from .fusion.sync import Outcome, Synchronizer
from .ingest import SENSOR_ROLES, Ingest
from .ros_pkg import outputs as out


def account(ingest: Ingest, sync: Synchronizer) -> dict[str, dict[str, Any]]:
    pending = sync.pending_by_key()
    report: dict[str, dict[str, Any]] = {}
    for topic, stats in list(ingest.stats.items()):
        outcomes = Counter(stats.outcomes)
        role = ingest.roles.get(topic)
        if role in SENSOR_ROLES:  # the synchroniser decided what became of its messages
            for outcome, n in sync.key_counts.get(topic, Counter()).items():
                outcomes[outcome.value if isinstance(outcome, Outcome) else outcome] += n
            if pending[topic]:
                outcomes["pending"] += pending[topic]
        used = outcomes.pop("used", 0)
        report[topic] = {
            "role": role,
            "in": stats.received,
            "used": used,
            "dropped": {k: v for k, v in sorted(outcomes.items()) if v},
        }
        rate = stats.rate_hz()
        if rate is not None:
            report[topic]["rate_hz"] = round(rate, 3)
        if stats.notes:
            report[topic]["notes"] = dict(sorted(stats.notes.items()))
        if stats.last_problem:
            report[topic]["last_problem"] = stats.last_problem
    return report


def drops_by_reason(accounting: dict[str, dict[str, Any]]) -> Counter[str]:
    """Dropped messages over every input, by reason."""
    return sum((Counter(row["dropped"]) for row in accounting.values()), Counter())


def diagnostics_statuses(
    accounting: dict[str, dict[str, Any]],
    timings: dict[str, Any],
    frames: int,
    qa: Any | None,  # perception.scene_qa.SceneQA: its worker's health, or why none runs
    degraded: Counter[str] | None = None,
    degraded_detail: str = "",
    silences: dict[str, float] | None = None,  # sensor topic -> seconds without a message
) -> list[out.StatusReport]:
    statuses = []
    for topic, row in sorted(accounting.items()):
        level = out.WARN if sum(row["dropped"].values()) > row["used"] else out.OK
        message = f"{row['in']} in, {row['used']} used"
        silent = (silences or {}).get(topic)
        if silent is not None:
            level = out.WARN
            message = f"silent for {silent:.1f} s; " + message
        if row.get("last_problem"):
            message += f"; last problem: {row['last_problem']}"
        statuses.append(
            out.StatusReport(
                f"multimodal_perception: input {topic}",
                level,
                message,
                values={
                    "in": row["in"],
                    "used": row["used"],
                    **({"rate_hz": row["rate_hz"]} if "rate_hz" in row else {}),
                    **{f"dropped.{k}": v for k, v in row["dropped"].items()},
                    **{f"note.{k}": v for k, v in row.get("notes", {}).items()},
                },
            )
        )
    if degraded:
        statuses.append(
            out.StatusReport(
                "multimodal_perception: degraded frames",
                out.WARN,
                f"last: {degraded_detail}" if degraded_detail else "frames ran degraded",
                values=dict(sorted(degraded.items())),
            )
        )
    stage_ms = {
        f"{k}.ms_median": f"{np.median(list(v)[-100:]):.2f}" for k, v in timings.items() if v
    }
    multimodal = qa.worker if qa is not None else None
    if qa is not None and qa.problem:
        statuses.append(
            out.StatusReport("multimodal_perception: multimodal model", out.ERROR, qa.problem)
        )
    if multimodal is not None:
        st, cache, health = multimodal.stats, multimodal.cache, multimodal.health()
        message = f"{health['backend']}: {health['state']}, {st.model_calls} calls"
        if health["state"] != "ok":
            message += f"; last error: {health['last_error']}"
        statuses.append(
            out.StatusReport(
                "multimodal_perception: multimodal model",
                {"ok": out.OK, "degraded": out.WARN}.get(health["state"], out.ERROR),
                message,
                values={
                    "offered": st.offered,
                    "skipped_rate": st.skipped_rate,
                    "superseded": st.superseded,
                    "questions": st.questions,
                    "cache_hit_rate": f"{cache.hit_rate:.3f}",
                    "cache_saved_s": f"{cache.saved_s:.3f}",
                    **{k: str(v) for k, v in health.items() if k != "backend"},
                },
            )
        )
    statuses.append(
        out.StatusReport(
            "multimodal_perception: pipeline",
            out.OK,
            f"{frames} frames",
            values={"frames": frames, **stage_ms},
        )
    )
    return statuses
