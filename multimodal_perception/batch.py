"""``mmp batch BAGS... --out DIR``: many bags replayed in parallel, one task per bag.

Owns the fan-out: expanding bag arguments (paths or globs), the per-bag config hash
that makes a batch resumable (parameters + model directory + bag path, sizes and
mtimes; stored as ``DIR/<bag>/batch_config.sha256`` once the bag is done), and the two
executors: a local process pool (``concurrent.futures``, the default: Ray stays an
optional extra) and Ray (``--ray``: a local instance sized to the machine, ``auto`` or
``ray://host:port`` for an existing cluster). Each worker loads the model stack once
(a pool initializer, a Ray actor) and hands it to every ``replay()`` it runs. Each bag
is written exactly as ``mmp replay`` writes it, into ``DIR/<bag name>/``; one bag's
failure is a row with a one-line reason, never the end of the batch. Long bags are not
time-sliced: a bag is the unit of work. The pool spawns its processes, so a script that
calls :func:`run_batch` needs the ``if __name__ == "__main__":`` guard (``mmp`` has it).
"""

from __future__ import annotations

import glob
import hashlib
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .batch_report import bag_row, build_batch, one_line, write_batch
from .config import Parameters, load_parameters
from .perception.models import model_directory
from .progress import Progress

HASH_FILE = "batch_config.sha256"
BAG_SUFFIXES = (".mcap", ".db3", ".bag")


@dataclass(frozen=True)
class BatchConfig:
    """What every bag is replayed with (the same as ``mmp replay``'s options)."""

    params_path: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    pictures: int = 6
    # inference (onnxruntime) and OpenCV threads per worker when models.threads is 0 (the
    # default: all cores per model, which N workers would oversubscribe); set by run_batch
    threads: int = 0

    def parameters(self) -> Parameters:
        params = load_parameters(self.params_path)
        return params.with_overrides(self.overrides) if self.overrides else params


@dataclass(frozen=True)
class Job:
    name: str
    bag: str
    out: str
    digest: str


def expand_bags(items: Iterable[str]) -> list[Path]:
    """Paths as given, globs expanded (sorted); duplicates dropped, order kept."""
    out: list[Path] = []
    for item in items:
        if glob.has_magic(item):
            matches = sorted(glob.glob(item))
            if not matches:
                raise FileNotFoundError(f"no bag matches {item}")
            out += [Path(m) for m in matches]
        else:
            out.append(Path(item))
    seen: set[Path] = set()
    return [p for p in out if not (p.resolve() in seen or seen.add(p.resolve()))]


def bag_names(bags: list[Path]) -> list[str]:
    """One output folder name per bag: the folder name, or the file name without suffix."""
    names: list[str] = []
    for bag in bags:
        base = bag.stem if bag.suffix in BAG_SUFFIXES else bag.name
        name, n = base or "bag", 1
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


def config_hash(bag: Path, config: BatchConfig) -> str:
    """sha256 of the resolved parameters, the model directory and the bag's files."""
    params = config.parameters()
    files = sorted(p for p in bag.rglob("*") if p.is_file()) if bag.is_dir() else [bag]
    stats = []
    for f in files:
        st = f.stat()
        stats.append(
            [str(f.relative_to(bag) if bag.is_dir() else f.name), st.st_size, st.st_mtime_ns]
        )
    doc = {
        "params": {k: params.values[k] for k in sorted(params.values)},
        "model_dir": str(model_directory(params["models.directory"] or None) or ""),
        "bag": str(bag.resolve()),
        "files": stats,
        "pictures": config.pictures,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def run_job(job: Job, config: BatchConfig, models: Any = None) -> dict[str, Any]:
    """Replay one bag into ``job.out``; the hash file is written only once it is done."""
    from .replay import replay

    out = Path(job.out)
    start = time.perf_counter()
    try:
        if isinstance(models, Exception):
            raise models  # the worker could not load the models
        (out / HASH_FILE).unlink(missing_ok=True)
        result = replay(
            [Path(job.bag)],
            out,
            config.params_path,
            config.overrides,
            pictures=config.pictures,
            progress=False,
            models=models,
        )
        report = result.report
        if not report["inputs"] and report["damage"]:  # replayed, but nothing was readable
            problems = [p for d in report["damage"] for p in d["problems"]] or ["no messages"]
            reason = f"nothing readable: {problems[-1]}".splitlines()[0]
            return bag_row(job.name, job.bag, "failed", None, reason)
        (out / HASH_FILE).write_text(job.digest + "\n")
        row = bag_row(job.name, job.bag, "ok", report)
        row["pid"] = os.getpid()
        row["job_s"] = round(time.perf_counter() - start, 3)  # the whole replay(), reports too
        return row
    except Exception as exc:  # one bag's failure is its row, never the batch's end
        return bag_row(job.name, job.bag, "failed", None, one_line(exc))


def _load_models(config: BatchConfig) -> Any:
    from .perception.stack import load_models

    try:
        params = config.parameters()
        if config.threads and not params["models.threads"]:
            import cv2

            cv2.setNumThreads(config.threads)
            params = params.with_overrides({"models.threads": config.threads})
        return load_models(params)
    except Exception as exc:  # every bag of this worker then fails with this reason
        return exc


# -- the process pool: one model stack per process, built by the initializer ---------------
_WORKER_MODELS: Any = None


def _pool_init(config: BatchConfig) -> None:
    global _WORKER_MODELS
    _WORKER_MODELS = _load_models(config)


def _pool_job(job: Job, config: BatchConfig) -> dict[str, Any]:
    return run_job(job, config, _WORKER_MODELS)


def _run_pool(
    jobs: list[Job], config: BatchConfig, workers: int, done: Callable[[dict[str, Any]], None]
) -> None:
    # spawn: workers start clean (no threads or onnxruntime state inherited from the driver)
    context = multiprocessing.get_context("spawn")
    queue, crashes = list(jobs), dict.fromkeys((j.name for j in jobs), 0)
    # A process that dies (a crash, killed for memory) breaks the pool and every bag then in
    # flight: those get a fresh pool; a bag in flight at two breaks is reported failed.
    while queue:
        retry: list[Job] = []
        with ProcessPoolExecutor(min(workers, len(queue)), context, _pool_init, (config,)) as pool:
            futures: dict[Future, Job] = {pool.submit(_pool_job, j, config): j for j in queue}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    job = futures[fut]
                    try:
                        done(fut.result())
                    except Exception as exc:
                        crashes[job.name] += 1
                        if crashes[job.name] >= 2:
                            done(bag_row(job.name, job.bag, "failed", None, one_line(exc)))
                        else:
                            retry.append(job)
        queue = retry


# -- Ray: one actor per worker holds the model stack ----------------------------------------
class _RayWorker:
    def __init__(self, config: BatchConfig) -> None:
        self.config = config
        self.models = _load_models(config)

    def run(self, job: Job) -> dict[str, Any]:
        return run_job(job, self.config, self.models)


def _run_ray(
    jobs: list[Job],
    config: BatchConfig,
    address: str,
    workers: int | None,
    done: Callable[[dict[str, Any]], None],
) -> int:
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs Ray: pip install 'multimodal_perception[ray]'") from None
    started = not ray.is_initialized()
    if started:
        if address == "local":
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False)
        else:
            ray.init(address=address)
    try:
        cpus = int(ray.available_resources().get("CPU", 1))
        n = max(1, min(len(jobs), workers or cpus, cpus))
        actor = ray.remote(num_cpus=1)(_RayWorker)
        idle = [actor.remote(config) for _ in range(n)]
        queue, pending = list(jobs), {}
        while queue or pending:
            while idle and queue:
                worker, job = idle.pop(), queue.pop(0)
                pending[worker.run.remote(job)] = (worker, job)
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                worker, job = pending.pop(ref)
                try:
                    done(ray.get(ref))
                except Exception as exc:  # the actor died: count the bag, replace the actor
                    done(bag_row(job.name, job.bag, "failed", None, one_line(exc)))
                    ray.kill(worker)
                    worker = actor.remote(config)
                idle.append(worker)
        for worker in idle:
            ray.kill(worker)
        return n
    finally:
        if started:
            ray.shutdown()


def _bag_seconds(bag: str) -> float:
    from .ros_pkg.bag_io import bag_time_range

    try:
        start, end = bag_time_range([bag])
    except Exception:
        return 0.0
    return (end - start) / 1e9 if start is not None and end is not None else 0.0


def run_batch(
    bags: list[str],
    out_dir: Path,
    config: BatchConfig | None = None,
    ray_address: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Replay ``bags`` (paths or globs) into ``out_dir/<name>/``; returns the batch report.

    ``ray_address``: None for the process pool, ``"local"`` for a local Ray instance,
    ``"auto"`` or ``"ray://host:port"`` for a running cluster. ``workers``: default the
    machine's CPU count (capped by the number of bags)."""
    config = config or BatchConfig()
    config.parameters()  # a bad parameter is the user's error, before any work starts
    paths = expand_bags(bags)
    if not paths:
        raise ValueError("no bags given")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, Any]] = {}
    jobs: list[Job] = []
    for name, bag in zip(bag_names(paths), paths, strict=True):
        out = out_dir / name
        try:
            digest = config_hash(bag, config) if bag.exists() else ""
        except OSError as exc:
            rows[name] = bag_row(name, str(bag), "failed", None, one_line(exc))
            continue
        marker, report = out / HASH_FILE, out / "report.json"
        if (
            digest
            and marker.is_file()
            and marker.read_text().strip() == digest
            and report.is_file()
        ):
            rows[name] = bag_row(name, str(bag), "skipped", json.loads(report.read_text()))
            continue
        jobs.append(Job(name, str(bag), str(out), digest))
    seconds = {job.name: _bag_seconds(job.bag) for job in jobs}
    total_ns = int(sum(seconds.values()) * 1e9)
    bar = Progress(0, total_ns) if progress and jobs else None
    state = {"bag_ns": 0, "frames": 0, "drops": 0}

    def done(row: dict[str, Any]) -> None:
        row["bag_seconds"] = seconds.get(row["name"], 0.0)
        rows[row["name"]] = row
        state["bag_ns"] += int(row["bag_seconds"] * 1e9)
        state["frames"] += row.get("frames", 0)
        state["drops"] += row.get("dropped", 0)
        if row["status"] == "failed" and progress:
            print(f"\n{row['name']}: failed: {row['reason']}", file=sys.stderr)
        if bar is not None:
            bar.update(state["bag_ns"], state["frames"], state["drops"])

    n = max(1, min(len(jobs), workers or os.cpu_count() or 1))
    start = time.perf_counter()
    if jobs and ray_address:  # an actor holds one CPU (num_cpus=1): one thread each
        n = _run_ray(jobs, replace(config, threads=1), ray_address, workers, done)
    elif jobs:
        threads = max(1, (os.cpu_count() or 1) // n)
        _run_pool(jobs, replace(config, threads=threads), n, done)
    wall = time.perf_counter() - start
    if bar is not None:
        bar.close(state["bag_ns"], state["frames"], state["drops"])
    ordered = [rows[name] for name in bag_names(paths) if name in rows]
    batch = build_batch(ordered, "ray" if ray_address else "process_pool", n, wall)
    write_batch(out_dir, batch)
    return batch
