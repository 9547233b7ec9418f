"""A CLIP directory with HAND-SET weights of known meaning, for the open-vocabulary tests.

No real CLIP weights exist on the test machines (nothing is downloaded). The image
embedding is the crop's mean colour (ReduceMean, MatMul) as hue plus a constant "plain"
part; the text embedding sums a few colour words' rows of a fixed table (Gather,
ReduceSum), tokenised by a ``tokenizers`` WordLevel tokenizer.json; the directory has the
manifest.json (sha256) a real export carries.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

W, H = 640, 480
GREY = (128, 128, 128)  # BGR: the floor
RED = (0, 0, 255)
BLUE = (255, 0, 0)
PROMPTS = "red spill,blue door"
WORDS = [
    "<pad>", "<unk>", "<bos>", "<eos>", "a", "photo", "of", ".", "red", "blue", "spill",
    "door", "background", "nothing", "in", "particular", "the", "floor", "wall",
]  # fmt: skip
HUE = {"red": (1.0, -0.5, -0.5, 0.0), "blue": (-0.5, -0.5, 1.0, 0.0)}
PLAIN = ("background", "nothing", "floor", "wall")  # the background prompts' words


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_clip_dir(path: Path) -> Path:
    """Hand-set CLIP-shaped encoders, tokenizer and manifest.json in ``path``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
    std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
    # Mean RGB colour c in [0, 1] -> (c - grey(c), 0.15): hue, plus a constant "plain".
    hue = np.eye(3, dtype=np.float32) - 1.0 / 3.0
    w = np.hstack([hue, np.zeros((3, 1), np.float32)])
    b = np.array([0, 0, 0, 0.15], np.float32)
    c = helper.make_tensor
    image = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["pixel_values"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("Mul", ["m", "std"], ["ms"]),
            helper.make_node("Add", ["ms", "mean"], ["rgb"]),  # undo CLIP's normalisation
            helper.make_node("MatMul", ["rgb", "w"], ["e"]),
            helper.make_node("Add", ["e", "b"], ["image_embeds"]),
        ],
        "image_encoder",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["n", 3, 224, 224])],
        # A first output that is not the embedding, as Hugging Face exports have.
        [
            helper.make_tensor_value_info("m", TensorProto.FLOAT, ["n", 3]),
            helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["n", 4]),
        ],
        [
            c("std", TensorProto.FLOAT, [3], std),
            c("mean", TensorProto.FLOAT, [3], mean),
            c("w", TensorProto.FLOAT, [3, 4], w.ravel()),
            c("b", TensorProto.FLOAT, [4], b),
        ],
    )
    table = np.zeros((len(WORDS), 4), np.float32)
    for word, row in HUE.items():
        table[WORDS.index(word)] = row
    for word in PLAIN:
        table[WORDS.index(word), 3] = 1.0
    text = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["rows"], axis=0),
            helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["maskf", "two"], ["mask3"]),
            helper.make_node("Mul", ["rows", "mask3"], ["masked"]),
            helper.make_node("ReduceSum", ["masked", "one"], ["text_embeds"], keepdims=0),
        ],
        "text_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["n", 77]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["n", 77]),
        ],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["n", 4])],
        [
            c("table", TensorProto.FLOAT, list(table.shape), table.ravel()),
            c("one", TensorProto.INT64, [1], [1]),
            c("two", TensorProto.INT64, [1], [2]),
        ],
    )
    path.mkdir(parents=True, exist_ok=True)
    for name, graph in (("image_encoder.onnx", image), ("text_encoder.onnx", text)):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, str(path / name))
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", 2), ("<eos>", 3)]
    )
    tok.save(str(path / "tokenizer.json"))
    files = ("image_encoder.onnx", "text_encoder.onnx", "tokenizer.json")
    manifest = {
        "schema": "mmp.clip_manifest/1",
        "name": "hand-set-colour-clip",
        "licence": "test only",
        "source": "built by test_open_vocab.py",
        "files": {f: sha256_of(path / f) for f in files},
        "image_size": 224,
        "context_length": 77,
        "prompt_template": "a photo of {}.",
        "image_output": "image_embeds",
        "text_output": "text_embeds",
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return path
