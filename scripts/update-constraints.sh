#!/usr/bin/env bash
# Regenerate the Python pins in constraints.txt: the project's direct dependencies (setup.py:
# install_requires and the torch, vlm and test extras) plus the few transitive ones pinned for
# reproducibility (TRANSITIVE below), at the newest versions that install together today,
# resolved in a scratch venv. Everything from the "# --- ROS 2" line on (the ROS 2 wheels of
# scripts/install-ros.sh, regenerated as that section says) is kept as it is.
# Usage: scripts/update-constraints.sh [PYTHON]   (default python3; use the oldest Python that
# setup.py's python_requires allows, so that the pins install there). Review the diff, then run
# `make test` (its venv reinstalls when constraints.txt changes).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-python3}"
# onnx and onnxruntime read and write protobuf; the VLM loader reads safetensors only.
TRANSITIVE="protobuf safetensors"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip
"$tmp/venv/bin/python" -m pip install -q "$REPO[test,torch,vlm]"
"$tmp/venv/bin/python" -m pip freeze --exclude multimodal_perception > "$tmp/freeze.txt"

"$tmp/venv/bin/python" - "$REPO/constraints.txt" "$tmp/freeze.txt" "$TRANSITIVE" <<'PY'
import re
import sys
from importlib.metadata import requires

out_path, freeze_path, transitive = sys.argv[1], sys.argv[2], sys.argv[3].split()


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


direct = {canonical(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in requires("multimodal_perception")}
wanted = direct | {canonical(n) for n in transitive}
pins = []
for line in open(freeze_path).read().splitlines():
    name, _, version = line.partition("==")
    if version and canonical(name) in wanted:
        pins.append(f"{name}=={version.split('+')[0]}")  # 2.13.0+cpu pins as 2.13.0
missing = wanted - {canonical(p.split("==")[0]) for p in pins}
if missing:
    sys.exit(f"update-constraints: not installed, cannot pin: {sorted(missing)}")
text = open(out_path).read()
ros = text[text.index("# --- ROS 2"):] if "# --- ROS 2" in text else ""
header = text[: text.index("\n\n")] if "\n\n" in text else ""
body = "\n".join(sorted(pins, key=canonical))
open(out_path, "w").write(f"{header}\n\n{body}\n" + (f"\n{ros}" if ros else ""))
print(f"update-constraints: {len(pins)} pins written; ROS section {'kept' if ros else 'absent'}")
PY
