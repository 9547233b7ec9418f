"""``mmp`` data and model commands: make-bag, info, preview, models (list/check/fetch)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from . import paths


def _cmd_make_bag(args: argparse.Namespace) -> int:
    from .bagbuild import DATASETS, build_real_bag

    if args.surround and not args.synthetic:
        raise ValueError("--surround is a synthetic rig: give --synthetic too")
    if args.surround and args.image_format != "jpeg":
        raise ValueError("--surround writes JPEG images only")
    if args.synthetic:
        from .sim.bag import SyntheticConfig, write_synthetic_bag
        from .sim.surround import SurroundConfig, write_surround_bag

        name = f"synthetic_{args.scenario}"
        if args.surround:
            name = f"surround_{args.scenario}_{args.seconds:g}s"
        out = Path(args.out or paths.cache_dir() / "bags" / name)
        if out.exists():
            if not args.force:
                print(f"{out} exists (use --force to rebuild)")
                return 1
            shutil.rmtree(out)
        if args.surround:
            counts = write_surround_bag(out, SurroundConfig(args.scenario, args.seconds, args.seed))
        else:
            config = SyntheticConfig(args.scenario, args.seconds, args.seed, args.image_format)
            counts = write_synthetic_bag(out, config)
        print(f"wrote {out}: " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
        return 0
    datasets = DATASETS if args.dataset == "all" else (args.dataset,)
    out_root = Path(args.out or paths.cache_dir() / "bags")
    out_root.mkdir(parents=True, exist_ok=True)
    for name in datasets:
        out = out_root / name
        if out.exists():
            if not args.force:
                print(f"{out} exists (use --force to rebuild)")
                continue
            shutil.rmtree(out)
        counts = build_real_bag(name, Path(args.data or paths.data_dir()), out)
        print(f"wrote {out}: " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .ros_pkg.bag_io import bag_metadata, summarise_bag

    for bag in args.bags:
        print(f"{bag}:")
        for key, value in bag_metadata(bag).items():
            print(f"  {key}: {value}")
        summary = summarise_bag(bag)
        print(f"  {'topic':32} {'type':38} {'count':>6} {'errors':>6} {'rate_hz':>8}")
        for topic, s in sorted(summary.items()):
            rate = s.rate_hz()
            rate_text = f"{rate:8.2f}" if rate is not None else "       -"
            print(f"  {topic:32} {s.msgtype:38} {s.count:6d} {s.errors:6d} {rate_text}")
    return 0


def _cmd_preview(args: argparse.Namespace) -> int:
    import cv2

    from .sim.preview import preview

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), preview(args.scenario, args.time, args.seed))
    print(f"wrote {out}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .perception.fetch import FetchError, fetch_model
    from .perception.manifest import available_manifests
    from .perception.models import model_directory, resolve_model_path
    from .perception.runtime import ModelLoadError, RuntimeOptions, create_backend

    manifests = available_manifests()
    directory = model_directory(args.model_dir)
    if args.action == "list":
        for name, m in manifests.items():
            try:
                where = resolve_model_path(m, directory)
                state = "present" if where.exists() else "missing"
            except ModelLoadError:
                where, state = m.file, "no model directory"
            print(f"{name:30} {m.task:12} {m.decoder:11} {state:9} {where}")
        return 0
    if args.action == "convert-clip":
        if len(args.names) != 1 or not args.out:
            print("convert-clip: name one Hugging Face CLIP directory and --out", file=sys.stderr)
            return 2
        from .perception.clip_convert import convert_hf_clip

        m = convert_hf_clip(args.names[0], args.out, licence=args.licence)
        print(f"wrote {args.out}: {m['name']}, image {m['image_size']} px, context "
              f"{m['context_length']}; set open_vocab.model_dir to it")  # fmt: skip
        return 0
    if not args.names:
        print("name one or more models", file=sys.stderr)
        return 2
    status = 0
    for name in args.names:
        if name not in manifests:
            print(f"{name}: no such manifest; known: {', '.join(manifests)}", file=sys.stderr)
            status = 1
            continue
        m = manifests[name]
        try:
            if args.action == "fetch":
                if directory is None:
                    print("set --model-dir or MMP_MODEL_DIR", file=sys.stderr)
                    return 2
                print(f"{name}: {fetch_model(m, directory, accept_digest=args.accept_digest)}")
            else:
                backend = create_backend(
                    m,
                    resolve_model_path(m, directory),
                    RuntimeOptions(providers=tuple(args.providers)),
                )
                print(f"{name}: ok, runs on {backend.provider}")
        except (FetchError, ModelLoadError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            status = 1
    return status


def _cmd_describe_image(args: argparse.Namespace) -> int:
    from .describe_image import describe, format_text, write_atomically
    from .paths import model_dir
    from .perception.models import model_directory

    directory = model_directory(args.model_dir) or model_dir()
    doc = describe(args.image, args.boxes, args.query, args.read_text, directory)
    text = json.dumps(doc, indent=2) if args.json else format_text(doc)
    if args.out:
        write_atomically(Path(args.out), json.dumps(doc, indent=2) + "\n")
    print(text)
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from .cli import _parse_sets
    from .replay import replay

    overrides = {**_parse_sets(args.set), "vlm.backend": "zero_shot"}
    if args.model_dir:
        overrides["models.directory"] = args.model_dir
    result = replay([Path(b) for b in args.bags], Path(args.out), args.params, overrides,
                    pictures=0, progress=False, queries=[args.text])  # fmt: skip
    for a in result.report["multimodal"]:
        if a["topic"] == "query_result":
            doc = {k: v for k, v in a.items() if k != "topic"}
            print(json.dumps(doc, indent=2) if args.json else _format_query(doc))
            if "error" in doc:
                return 2
    return 0


def _format_query(doc: dict) -> str:
    head = f"{doc['text']!r}: {doc.get('method')} {doc.get('sense', '')} {doc.get('wordnet', '')}"
    if doc.get("reason") or doc.get("error"):
        head += f" ({doc.get('reason') or doc.get('error')})"
    lines = [head.rstrip()]
    lines += [
        f"  #{r['track_id']:<4} {r['class']:12} {r['score']:.3f}" for r in doc.get("ranked", [])
    ]
    if doc.get("whole_image") is not None:
        lines.append(f"  whole image       {doc['whole_image']:.3f}")
    return "\n".join(lines)
