"""``mmp models convert-clip``: a CLIP checkpoint to the directory ``open_vocab.model_dir``
reads (``perception/open_vocab.py``): ``image_encoder.onnx``, ``text_encoder.onnx``,
``tokenizer.json`` and ``manifest.json`` with their sha256.

Owns the conversion from a local Hugging Face CLIP directory (``CLIPModel``:
``config.json``, the weights, ``tokenizer.json``; e.g. ``openai/clip-vit-base-patch32``
fetched once with ``huggingface-cli download`` on a machine with internet). open_clip
checkpoints are not read here: open_clip needs torchvision, and no torchvision wheel
loads against the CPU torch build the project pins. The encoders are exported with a
free batch axis and compared with torch before the manifest is written: a
conversion whose ONNX differs from torch by more than ``tolerance`` is refused and
nothing is left in ``out``. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .multimodal import CLIP_MEAN, CLIP_STD
from .open_vocab import CLIP_MANIFEST_SCHEMA
from .runtime import ModelLoadError

TOLERANCE = 1e-4


def _features(out: Any) -> Any:
    """transformers 5 returns a model output from get_*_features; 4.x the tensor."""
    return out.pooler_output if hasattr(out, "pooler_output") else out


def _towers(model: Any) -> tuple[Any, Any]:
    import torch

    class Image(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return _features(self.model.get_image_features(pixel_values=pixel_values))

    class Text(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            out = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
            return _features(out)

    return Image().eval(), Text().eval()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _preprocessing(src: Path) -> tuple[list[float], list[float]]:
    path = src / "preprocessor_config.json"
    if not path.is_file():
        return list(CLIP_MEAN), list(CLIP_STD)
    doc = json.loads(path.read_text())
    return list(doc.get("image_mean", CLIP_MEAN)), list(doc.get("image_std", CLIP_STD))


def convert_hf_clip(
    src: str | Path,
    out: str | Path,
    name: str = "",
    licence: str = "",
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """Convert; returns the manifest written. ``ModelLoadError`` for a directory that is
    not a CLIP checkpoint or a conversion that does not match torch."""
    import onnxruntime as ort
    import torch
    from transformers import CLIPModel

    src, out = Path(src), Path(out)
    if not (src / "config.json").is_file() or not (src / "tokenizer.json").is_file():
        raise ModelLoadError(
            f"{src}: not a Hugging Face CLIP directory (config.json, tokenizer.json)"
        )
    try:
        model = CLIPModel.from_pretrained(src).eval()
    except Exception as exc:  # transformers raises many kinds for a wrong directory
        raise ModelLoadError(
            f"{src}: cannot load as CLIPModel: {str(exc).splitlines()[0]}"
        ) from None
    size = int(model.config.vision_config.image_size)
    context = int(model.config.text_config.max_position_embeddings)
    image, text = _towers(model)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, 3, size, size, generator=generator)
    ids = torch.randint(0, model.config.text_config.vocab_size, (2, context), generator=generator)
    mask = torch.ones_like(ids)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        work = Path(tmp)
        with torch.no_grad():
            torch.onnx.export(image, (pixels,), str(work / "image_encoder.onnx"),
                              input_names=["pixel_values"], output_names=["image_embeds"],
                              dynamic_axes={"pixel_values": {0: "n"}, "image_embeds": {0: "n"}},
                              opset_version=17, dynamo=False)  # fmt: skip
            torch.onnx.export(text, (ids, mask), str(work / "text_encoder.onnx"),
                              input_names=["input_ids", "attention_mask"],
                              output_names=["text_embeds"],
                              dynamic_axes={"input_ids": {0: "n"}, "attention_mask": {0: "n"},
                                            "text_embeds": {0: "n"}},
                              opset_version=17, dynamo=False)  # fmt: skip
            want_image, want_text = image(pixels).numpy(), text(ids, mask).numpy()
        cpu = ["CPUExecutionProvider"]
        got_image = ort.InferenceSession(str(work / "image_encoder.onnx"), providers=cpu).run(
            None, {"pixel_values": pixels.numpy()}
        )[0]
        got_text = ort.InferenceSession(str(work / "text_encoder.onnx"), providers=cpu).run(
            None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        )[0]
        for what, got, want in (("image", got_image, want_image), ("text", got_text, want_text)):
            err = float(np.abs(got - want).max())
            if err > tolerance:
                raise ModelLoadError(f"{what} encoder: ONNX differs from torch by {err:.2e}")
        shutil.copy(src / "tokenizer.json", work / "tokenizer.json")
        mean, std = _preprocessing(src)
        pad = json.loads((src / "tokenizer.json").read_text()).get("padding") or {}
        manifest = {
            "schema": CLIP_MANIFEST_SCHEMA,
            "name": name or src.name,
            "licence": licence,
            "source": f"Hugging Face CLIPModel directory {src.resolve()}",
            "files": {
                f: _sha256(work / f)
                for f in ("image_encoder.onnx", "text_encoder.onnx", "tokenizer.json")
            },
            "image_size": size,
            "context_length": context,
            "prompt_template": "a photo of {}.",
            "mean": mean,
            "std": std,
            "logit_scale": float(model.logit_scale.exp()),
            "pad_id": int(pad.get("pad_id", model.config.text_config.pad_token_id or 0)),
            "resize": "center_crop",
            "image_output": "image_embeds",
            "text_output": "text_embeds",
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        out.mkdir(parents=True, exist_ok=True)
        for f in (*manifest["files"], "manifest.json"):
            shutil.move(str(work / f), out / f)
    return manifest
