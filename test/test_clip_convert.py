"""`mmp models convert-clip` on real CLIP architectures at RANDOM initialisation (no CLIP
weights can be had here): transformers' CLIPModel with its default configuration (the
ViT-B/32 architecture, 151 M parameters) and a small one, saved as a downloaded checkpoint
is, converted, loaded by the project's scorer, and compared with torch: the encoders
within 1e-4, and the scorer's probabilities for the same texts equal to CLIPModel's own
``logits_per_image`` softmax. Checks the conversion and loading, not recognition."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from multimodal_perception.cli import main  # noqa: E402
from multimodal_perception.perception.open_vocab import OpenVocabScorer, load_clip  # noqa: E402
from multimodal_perception.perception.runtime import ModelLoadError  # noqa: E402

WORDS = [
    "<pad>",
    "<unk>",
    "<|startoftext|>",
    "a",
    "photo",
    "of",
    ".",
    "car",
    "person",
    "forklift",
    "background",
]


def save_random_clip(directory, config) -> None:
    """A CLIPModel at random init saved like a download: config, safetensors, tokenizer.
    The tokenizer is a word-level one over a few words, end-of-text the highest id (CLIP
    pools its text at the highest id)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    torch.manual_seed(0)
    model = transformers.CLIPModel(config).eval()
    model.save_pretrained(directory)
    vocab = {w: i for i, w in enumerate(WORDS)}
    vocab["<|endoftext|>"] = config.text_config.vocab_size - 1
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", 2), ("<|endoftext|>", vocab["<|endoftext|>"])],
    )
    tok.save(str(directory / "tokenizer.json"))


def small_config():
    return transformers.CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "vocab_size": 100, "max_position_embeddings": 16,
                     "eos_token_id": 99, "pad_token_id": 0},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 64, "patch_size": 16},
        projection_dim=24,
    )  # fmt: skip


def scorer_matches_clipmodel(src, out) -> None:
    clip, manifest = load_clip(out)
    model = transformers.CLIPModel.from_pretrained(src).eval()
    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((90, 120), (64, 64))]
    prompts = ["car", "person", "forklift"]
    scorer = OpenVocabScorer(clip, prompts, background=())
    ours = scorer.score(crops)
    texts = [manifest.prompt_template.format(p) for p in prompts]
    ids = np.full((len(texts), manifest.context_length), manifest.pad_id, np.int64)
    for i, t in enumerate(texts):
        tokens = clip.tokenizer.encode(t).ids
        ids[i, : len(tokens)] = tokens
    pixels = torch.from_numpy(np.stack([clip._pixels(c) for c in crops]))
    with torch.no_grad():
        theirs = model(
            pixel_values=pixels,
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy((ids != manifest.pad_id).astype(np.int64)),
        ).logits_per_image.softmax(dim=-1)
    np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-4)


def test_a_small_clip_converts_and_scores_as_clipmodel_does(tmp_path, capsys):
    src, out = tmp_path / "hf_clip", tmp_path / "clip_onnx"
    save_random_clip(src, small_config())
    assert main(["models", "convert-clip", str(src), "--out", str(out), "--licence", "test"]) == 0
    assert "set open_vocab.model_dir" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["image_size"] == 64 and manifest["context_length"] == 16
    assert manifest["logit_scale"] == pytest.approx(np.exp(2.6592), rel=1e-4)  # CLIP's init
    scorer_matches_clipmodel(src, out)


def test_the_vit_b_32_architecture_converts_within_1e_4(tmp_path):
    src, out = tmp_path / "vit_b_32", tmp_path / "clip_onnx"
    config = transformers.CLIPConfig()  # ViT-B/32: 224 px, patch 32, 12 + 12 layers
    assert (config.vision_config.patch_size, config.vision_config.image_size) == (32, 224)
    save_random_clip(src, config)
    from multimodal_perception.perception.clip_convert import convert_hf_clip

    convert_hf_clip(src, out)  # refuses (ModelLoadError) beyond 1e-4 of torch
    scorer_matches_clipmodel(src, out)


def test_what_is_not_a_clip_directory_is_one_line_exit_2(tmp_path, capsys):
    assert main(["models", "convert-clip", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a Hugging Face CLIP directory" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    with pytest.raises(ModelLoadError):
        from multimodal_perception.perception.clip_convert import convert_hf_clip

        convert_hf_clip(tmp_path, tmp_path / "o")
