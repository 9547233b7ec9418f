"""``mmp``: the command-line entry point (make-bag, info; replay, eval, bench as they land)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_runs import add_run_commands
from .cli_tools import (
    _cmd_describe_image,
    _cmd_info,
    _cmd_make_bag,
    _cmd_models,
    _cmd_preview,
    _cmd_query,
)
from .perception.runtime import ModelLoadError


def _parse_sets(items: list[str]) -> dict[str, object]:
    import yaml

    out: dict[str, object] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects name=value, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def _cmd_replay(args: argparse.Namespace) -> int:
    from .replay import replay

    overrides = _parse_sets(args.set)
    if args.model_dir:
        overrides["models.directory"] = args.model_dir
    if args.tiled:
        overrides["detector.tiling"] = True
    view = None
    if args.foxglove is not None:
        from .live_view import FoxgloveView

        view = FoxgloveView(args.foxglove)
        print(
            f"Foxglove live view: {view.url} (layout: config/foxglove_layout.json); waiting up "
            "to 30 s for a client",
            file=sys.stderr,
        )
        view.wait_for_subscribers(1, 30.0)
    try:
        result = replay(
            [Path(b) for b in args.bags],
            Path(args.out),
            args.params,
            overrides,
            progress=not args.quiet,
            topics_auto=args.topics == "auto",
            on_frame=view.publish if view is not None else None,
            questions=args.ask,
        )
    finally:
        if view is not None:
            view.close()
    r = result.report
    print(
        f"{r['frames']} frames, {r['scene_messages']} scene messages, "
        f"{r['timing']['frames_per_s']} frames/s; models {r['models']['detector']} / "
        f"{r['models']['segmenter']}"
        + (" (project-trained embedded defaults)" if r["models"]["embedded_default"] else "")
    )
    for topic, row in sorted(r["inputs"].items()):
        print(f"  {topic:34} in {row['in']:5d}  used {row['used']:5d}  dropped {row['dropped']}")
    for a in r["multimodal"]:
        if a["topic"] == "answer":
            print(f"  asked {a.get('question')!r}: {a['text']}  [{a['backend']}]")
    print(
        f"outputs: {result.out_dir / 'output.mcap'}, {result.out_dir / 'report.json'}, "
        f"{result.out_dir / 'report.md'}"
    )
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    from .batch import BatchConfig, run_batch

    overrides = _parse_sets(args.set)
    if args.model_dir:
        overrides["models.directory"] = args.model_dir
    if args.tiled:
        overrides["detector.tiling"] = True
    out = Path(args.out)
    batch = run_batch(
        args.bags,
        out,
        BatchConfig(args.params, overrides),
        ray_address=args.ray,
        workers=args.workers,
        progress=not args.quiet,
    )
    t = batch["totals"]
    for r in batch["bags"]:
        if r["status"] == "failed":
            print(f"  {r['name']:24} failed: {r['reason']}")
        else:
            print(f"  {r['name']:24} {r['status']:7} {r['frames']:5d} frames")
    print(
        f"{t['bags']} bags on {batch['executor']} ({batch['workers']} workers): ok {t['ok']}, "
        f"skipped {t['skipped']}, failed {t['failed']}; {t['frames_per_s']} frames/s; "
        f"report {out / 'batch.md'}, {out / 'batch.html'}"
    )
    if args.baseline:  # the diff against a previous batch, gated when bounds are given
        from .cli_runs import diff_and_gate

        gated = diff_and_gate(Path(args.baseline), out, out / "diff", args.fail_on)
        return 1 if t["failed"] or gated else 0
    return 1 if t["failed"] else 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from .evaluation import SYNTHETIC_CLASSES, evaluate_output_bag
    from .labels import load_labels
    from .rig_eval import evaluate_rig, format_rig_scores, rig_input_bag
    from .ros_pkg.bag_io import iter_bag
    from .tracking_eval import evaluate_tracking

    if args.zones:  # a bad zones file fails before any scoring
        from .event_eval import evaluate_bag_events
        from .fusion.zones import load_zones

        load_zones(args.zones)
    for target in args.outputs:
        path = Path(target)
        if path.is_dir():
            path = path / "output.mcap"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist (give a replay's output folder)")
        rig_bag = rig_input_bag(path, args.input)
        if rig_bag is not None:  # a camera rig: its ground truth is in the input bag
            print(format_rig_scores(evaluate_rig(rig_bag, path)))
            continue
        stamps, topics = [], set()
        for r in iter_bag(path, ["/multimodal_perception/detections_2d", "/ground_truth/scene"]):
            topics.add(r.topic)
            if r.topic.endswith("detections_2d"):
                stamps.append(r.msg.header.stamp.sec * 10**9 + r.msg.header.stamp.nanosec)
        synthetic = "/ground_truth/scene" in topics  # the synthetic world's class set
        vocab = SYNTHETIC_CLASSES if synthetic else None
        labels = load_labels(args.gt, stamps) if args.gt else None
        scores = evaluate_output_bag(path, vocab, labels=labels)
        if scores.frames == 0:
            raise ValueError(
                f"{path}: no frame has both outputs and ground truth (no /ground_truth/boxes_2d "
                "topic, or labels matching no frame): give labels with --gt FILE"
            )
        print(scores.before.format(f"{path}: all detector boxes (before the filter)"))
        print(scores.after.format(f"{path}: kept boxes (after the filter)"))
        if scores.center_errors:
            errors = [e.center_m for e in scores.center_errors]
            print(
                f"  3D centre error: median {np.median(errors):.2f} m over {len(errors)} "
                "matched objects"
            )
            print(scores.format_3d())
        if synthetic and not args.gt:  # tracking needs the world's track ids
            print("  " + evaluate_tracking(path).format("tracking"))
        if args.zones:  # inspection events against the world's true actor states
            events = evaluate_bag_events(path, args.zones)[0]
            print(events.format(f"{path}: inspection events, zones {args.zones}"))
    return 0


def _cmd_ask(args: argparse.Namespace) -> int:
    from .replay import replay

    overrides = _parse_sets(args.set)
    if args.model_dir:
        overrides["models.directory"] = args.model_dir
    result = replay(
        [Path(b) for b in args.bags],
        Path(args.out),
        args.params,
        overrides,
        pictures=0,
        progress=False,
        questions=[args.question],
        ask_every=args.every,
    )
    for a in result.report["multimodal"]:
        if a["topic"] == "answer":
            print(f"[{a['stamp_ns']}] {a['backend']}: {a['text']}")
    return 0


def _cmd_play(args: argparse.Namespace) -> int:
    for bag in args.bags:
        if not Path(bag).exists():
            raise FileNotFoundError(f"bag {bag} does not exist")
    from .ros_pkg.player import main as play_main

    if args.loops < 1:
        raise ValueError(f"--loops {args.loops}: must be >= 1")
    return play_main([Path(b) for b in args.bags], args.rate, args.topics, args.loops)


def _cmd_calibrate_filter(args: argparse.Namespace) -> int:
    from .calibrate import command

    return command(args.bags, args.out, args.report_on, args.max_recall_loss,
                   args.params, _parse_sets(args.set), args.model_dir)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmp", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make-bag", help="write rosbag2 (MCAP) files from real or synthetic data")
    mk.add_argument("--dataset", default="all", choices=["all", "kitti_raw", "kitti_object", "vod"])
    mk.add_argument("--data", help="data directory (default: $MMP_DATA_DIR or ../shared/data)")
    mk.add_argument("--out", help="output directory (default: .cache/bags)")
    mk.add_argument("--force", action="store_true", help="rebuild bags that exist")
    mk.add_argument("--synthetic", action="store_true", help="the project's synthetic world")
    mk.add_argument(
        "--scenario",
        default="urban_crossing",
        choices=["urban_crossing", "highway_following", "indoor_aisle", "indoor_inspection"],
    )
    mk.add_argument("--seconds", type=float, default=10.0, help="synthetic duration")
    mk.add_argument("--seed", type=int, default=0, help="synthetic world seed")
    mk.add_argument("--image-format", default="jpeg", choices=["jpeg", "png", "raw"])
    mk.add_argument(
        "--surround", action="store_true", help="with --synthetic: four cameras (sim/surround.py)"
    )
    mk.set_defaults(func=_cmd_make_bag)
    pv = sub.add_parser("preview", help="picture of a synthetic frame with its ground truth")
    pv.add_argument(
        "--scenario",
        default="urban_crossing",
        choices=["urban_crossing", "highway_following", "indoor_aisle", "indoor_inspection"],
    )
    pv.add_argument("--time", type=float, default=4.0, help="scenario time, seconds")
    pv.add_argument("--seed", type=int, default=0)
    pv.add_argument("--out", required=True, help="PNG file to write")
    pv.set_defaults(func=_cmd_preview)
    rp = sub.add_parser("replay", help="run the pipeline over a bag, write outputs and a report")
    rp.add_argument("bags", nargs="+")
    rp.add_argument("--out", default="out/replay", help="output directory")
    rp.add_argument("--params", help="ROS 2 parameter YAML (default: built-in defaults)")
    rp.add_argument("--model-dir", help="real model directory (default: $MMP_MODEL_DIR)")
    rp.add_argument("--tiled", action="store_true", help="tiled detection")
    rp.add_argument("--set", action="append", help="override a parameter: name=value")
    rp.add_argument("--quiet", action="store_true", help="no progress bar")
    rp.add_argument("--ask", action="append", help="a question about the last frame (repeatable)")
    rp.add_argument(
        "--topics",
        choices=["config", "auto"],
        default="config",
        help="input topics from the parameters (default) or picked by type (auto)",
    )
    rp.add_argument(
        "--foxglove",
        nargs="?",
        type=int,
        const=8765,
        metavar="PORT",
        help="serve a live Foxglove WebSocket view on 127.0.0.1 (default port 8765)",
    )
    rp.set_defaults(func=_cmd_replay)
    bt = sub.add_parser("batch", help="replay many bags in parallel (process pool or Ray)")
    bt.add_argument("bags", nargs="+", help="bags or globs (quote globs)")
    bt.add_argument("--out", required=True, help="output directory: one folder per bag")
    bt.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run on Ray: a local instance (default), 'auto' or ray://host:port",
    )
    bt.add_argument("--workers", type=int, help="parallel workers (default: the CPU count)")
    bt.add_argument("--params", help="ROS 2 parameter YAML (default: built-in defaults)")
    bt.add_argument("--model-dir", help="real model directory (default: $MMP_MODEL_DIR)")
    bt.add_argument("--tiled", action="store_true", help="tiled detection")
    bt.add_argument("--set", action="append", help="override a parameter: name=value")
    bt.add_argument("--quiet", action="store_true", help="no progress bar")
    bt.add_argument("--baseline", help="a previous batch folder: diff against it (DIR/diff)")
    bt.add_argument("--fail-on", help="with --baseline: gate bounds, as mmp diff --fail-on")
    bt.set_defaults(func=_cmd_batch)
    ev = sub.add_parser("eval", help="score a replay's output.mcap against its ground truth")
    ev.add_argument("outputs", nargs="+", help="replay output directories or output.mcap files")
    ev.add_argument(
        "--gt",
        help="labels: a KITTI label_2 directory (n-th file = n-th frame) or mmp.labels/1 JSON",
    )
    ev.add_argument(
        "--input",
        help="the replayed bag, for its ground truth (a surround bag: per camera and merged "
        "scores; default: the first bag in the replay's report.json)",
    )
    ev.add_argument(
        "--zones",
        help="the zones file the replay ran with: also score its inspection events against "
        "events from the true actor states (synthetic bags): precision, recall, delay per rule",
    )
    ev.set_defaults(func=_cmd_eval)
    ak = sub.add_parser("ask", help="replay a bag and answer a question about its scenes")
    ak.add_argument("bags", nargs="+")
    ak.add_argument("question")
    ak.add_argument("--every", type=int, default=0, help="also ask every N frames")
    ak.add_argument("--out", default="out/ask")
    ak.add_argument("--params")
    ak.add_argument("--model-dir")
    ak.add_argument("--set", action="append", help="override a parameter: name=value")
    ak.set_defaults(func=_cmd_ask)
    di = sub.add_parser(
        "describe-image", help="score one image's regions against texts, read its text"
    )
    di.add_argument("image")
    di.add_argument("--boxes", help="JSON list of [x0, y0, x1, y1] pixels (default: the "
                    "whole image and the detector's boxes)")  # fmt: skip
    di.add_argument("--query", action="append", help="a text to score (repeatable)")
    di.add_argument("--read-text", action="store_true", help="also read text (PP-OCRv4)")
    di.add_argument("--json", action="store_true", help="print JSON")
    di.add_argument("--out", help="also write the JSON here (whole or not at all)")
    di.add_argument("--model-dir", help="model directory (default: $MMP_MODEL_DIR, ../shared)")
    di.set_defaults(func=_cmd_describe_image)
    qy = sub.add_parser("query", help="replay a bag, rank its last frame's tracks by a text")
    qy.add_argument("bags", nargs="+")
    qy.add_argument("text")
    qy.add_argument("--json", action="store_true", help="print the mmp.query/1 JSON")
    qy.add_argument("--out", default="out/query")
    qy.add_argument("--params")
    qy.add_argument("--model-dir")
    qy.add_argument("--set", action="append", help="override a parameter: name=value")
    qy.set_defaults(func=_cmd_query)
    models = sub.add_parser("models", help="list, check or fetch models")
    models.add_argument("action", choices=["list", "check", "fetch", "convert-clip"])
    models.add_argument("names", nargs="*")
    models.add_argument("--model-dir", help="model directory (default: $MMP_MODEL_DIR)")
    models.add_argument("--accept-digest", help="accept a download with exactly this sha256")
    models.add_argument("--providers", nargs="+", default=["tensorrt", "cuda", "cpu"])
    models.add_argument("--out", help="convert-clip: the CLIP ONNX directory to write")
    models.add_argument("--licence", default="", help="convert-clip: the weights' licence")
    models.set_defaults(func=_cmd_models)
    cal = sub.add_parser(
        "calibrate-filter", help="fit per-class filter thresholds on labelled bags"
    )
    cal.add_argument("bags", nargs="+", help="labelled bags (with /ground_truth/boxes_2d)")
    cal.add_argument("--out", required=True, help="parameter YAML to write (thresholds)")
    cal.add_argument("--report-on", nargs="+", help="labelled bags NOT used for the fit")
    cal.add_argument(
        "--max-recall-loss", type=float, default=0.02, help="per class, 0.02 = 2 points"
    )
    cal.add_argument("--params", help="ROS 2 parameter YAML (default: built-in defaults)")
    cal.add_argument("--model-dir", help="real model directory (default: $MMP_MODEL_DIR)")
    cal.add_argument("--set", action="append", help="override a parameter: name=value")
    cal.set_defaults(func=_cmd_calibrate_filter)
    play = sub.add_parser("play", help="publish a bag over ROS 2 with /clock (needs rclpy)")
    play.add_argument("bags", nargs="+")
    play.add_argument("--rate", type=float, default=1.0, help="playback rate")
    play.add_argument("--topics", nargs="+", help="only these topics")
    play.add_argument(
        "--loops", type=int, default=1, help="play it N times as one continuous recording"
    )
    play.set_defaults(func=_cmd_play)
    info = sub.add_parser("info", help="topics, types, counts and header-stamp rates of bags")
    info.add_argument("bags", nargs="+")
    info.set_defaults(func=_cmd_info)
    add_run_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (OSError, ValueError, KeyError, ModelLoadError) as exc:
        # A user's error (a path, a parameter, a model): one line; --debug shows where.
        if args.debug:
            raise
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mmp {args.command}: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
