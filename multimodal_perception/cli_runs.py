"""``mmp diff`` and ``mmp regress``: the commands that compare runs (and ``mmp batch
--baseline``'s diff against a previous batch); ``mmp check-calibration``, which checks a
recording's calibration."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .run_metrics import BagRun, RunError


def _load(path: Path, gt: str | None, zones: str | None) -> dict[str, BagRun]:
    from .labels import load_labels
    from .run_metrics import load_bag_run, run_folders

    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder (give a replay or batch output)")
    runs = {}
    for name, folder in run_folders(path).items():
        labels = None
        if gt:  # labels are per frame, in the replay's stamp order
            from .ros_pkg.bag_io import iter_bag
            from .run_metrics import KEPT_TOPIC

            stamps = [r.msg.header.stamp.sec * 10**9 + r.msg.header.stamp.nanosec
                      for r in iter_bag(folder / "output.mcap", [KEPT_TOPIC])]  # fmt: skip
            labels = load_labels(gt, stamps)
        runs[name] = load_bag_run(name, folder, labels, Path(zones) if zones else None)
    return runs


def diff_and_gate(
    a: Path, b: Path, out: Path | None, fail_on: str | None, gt: str | None = None,
    zones: str | None = None, boot: int = 500,
) -> int:  # fmt: skip
    from .diff_report import format_table, write_diff
    from .run_diff import diff_runs, gate, parse_fail_on

    bounds = parse_fail_on(fail_on) if fail_on else []  # a bad spec fails before the work
    if boot < 0:
        raise ValueError(f"--bootstrap {boot}: must be >= 0")
    runs_a, runs_b = _load(a, gt, zones), _load(b, gt, zones)
    diff = diff_runs(a, runs_a, b, runs_b, boot)
    print(format_table(diff))
    if out is not None:
        paths = write_diff(diff, out, runs_a, runs_b)
        print("wrote " + ", ".join(str(p) for p in paths))
    if not bounds:
        return 0
    failures = gate(diff, bounds)
    for line in failures:
        print(f"REGRESSION {line}")
    print(f"gate {'FAILED' if failures else 'passed'}: {', '.join(str(b) for b in bounds)}")
    return 1 if failures else 0


def _cmd_diff(args: argparse.Namespace) -> int:
    return diff_and_gate(Path(args.run_a), Path(args.run_b), Path(args.out) if args.out else None,
                         args.fail_on, args.gt, args.zones, args.bootstrap)  # fmt: skip


def _cmd_regress(args: argparse.Namespace) -> int:
    from .regress import REPO, command

    shared = Path(os.environ.get("MMP_SHARED", REPO.parent / "shared"))
    return command(Path(args.out), shared if shared.is_dir() else None, args.update,
                   args.synthetic_only)  # fmt: skip


def _angles(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: give roll,pitch,yaw in degrees")
    return values  # type: ignore[return-value]


def _cmd_check_calibration(args: argparse.Namespace) -> int:
    from .calibration_check import report, run_check

    bag = Path(args.bag)
    if not bag.exists():
        raise FileNotFoundError(f"bag {bag} does not exist")
    if args.window_s <= 0:
        raise ValueError(f"--window-s {args.window_s}: must be > 0")
    params = Path(args.params) if args.params else None
    if params is not None and not params.is_file():
        raise FileNotFoundError(f"--params {params}: no such file")
    results = run_check(bag, Path(args.out), args.camera, args.window_s, args.rotate, params)
    print("\n".join(report(results)))
    bad = [r for r in results if r.verdict != "ok"]
    if bad:
        e = bad[0].estimate
        fix = ", ".join(f"{a} {-v:+.2f} deg" for a, v in e.rotation_deg.items())
        print(f"{len(bad)} of {len(results)} windows beyond limits; suggested correction of "
              f"the camera's extrinsic (not applied): {fix}")  # fmt: skip
    print(f"written: {Path(args.out) / 'calibration.md'}, calibration.json, overlay pictures")
    return 1 if bad else 0


def add_run_commands(sub: argparse._SubParsersAction) -> None:
    df = sub.add_parser("diff", help="compare two replays (or batches) of the same bags; gate")
    df.add_argument("run_a", help="the reference: a replay or batch output folder")
    df.add_argument("run_b", help="the change: a replay or batch output folder")
    df.add_argument("--out", help="write diff.json, diff.md, diff.html and pictures here")
    df.add_argument("--fail-on", help='bounds, e.g. "recall:-0.02,ap50:-0.02,latency_p95:+20%%": '
                    "exit 1 naming each metric beyond its bound")  # fmt: skip
    df.add_argument("--gt", help="labels for bags without ground-truth topics (as mmp eval)")
    df.add_argument("--zones", help="the zones file both ran with: also compare zone events")
    df.add_argument("--bootstrap", type=int, default=500, help="replicates for the intervals")
    df.set_defaults(func=_cmd_diff)
    rg = sub.add_parser("regress", help="the regression suite against its committed baseline")
    rg.add_argument("--out", default="out/regress", help="where the replays are written")
    rg.add_argument("--update", action="store_true", help="rewrite the baseline, say what moved")
    rg.add_argument("--synthetic-only", action="store_true", help="skip the real bags")
    rg.set_defaults(func=_cmd_regress)
    cc = sub.add_parser("check-calibration", help="lidar-camera rotation error of a recording")
    cc.add_argument("bag")
    cc.add_argument("--camera", help="only this camera of a rig (default: every camera)")
    cc.add_argument("--params", help="parameter file (the rig, calibration.warn_deg, ...)")
    cc.add_argument("--out", default="out/calibration", help="table, JSON and pictures here")
    cc.add_argument("--window-s", type=float, default=2.0, help="header time per estimate")
    cc.add_argument("--rotate", type=_angles, default=(0.0, 0.0, 0.0),
                    help="first perturb the extrinsic: roll,pitch,yaw deg")  # fmt: skip
    cc.set_defaults(func=_cmd_check_calibration)


__all__ = ["RunError", "add_run_commands", "diff_and_gate"]
