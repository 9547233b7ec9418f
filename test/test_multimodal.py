"""The multimodal model: backends, scheduling, the result cache, CLIP and the grounded
fallback."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from multimodal_common import IMAGE, SCENE, SHIPPED

from conftest import REPO
from multimodal_perception.config import load_parameters
from multimodal_perception.perception.multimodal import (
    GroundedFallback,
    MultimodalError,
    ResultCache,
    dhash,
)
from multimodal_perception.perception.multimodal_backends import OpenAIChatVLM, TransformersVLM
from multimodal_perception.perception.multimodal_worker import (
    MultimodalWorker,
)
from multimodal_perception.pipeline import Pipeline
from multimodal_perception.ros_pkg.bag_io import iter_bag
from multimodal_perception.ros_pkg.factory import RosbagsFactory
from multimodal_perception.ros_pkg.typestore import get_project_typestore


def build_tiny_vlm(directory: Path) -> Path:
    """A LLaVA-class image-text-to-text model with RANDOM weights (not a real model),
    saved like a downloaded one: config, safetensors, processor, tokenizer, template."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "USER", "ASSISTANT", ":"]
    words += [f"w{i}" for i in range(200)]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    template = (
        "{% for m in messages %}{{ m['role'].upper() }} : {% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}"
        "{% endfor %}{% endfor %}{% if add_generation_prompt %}ASSISTANT : {% endif %}"
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    fast.chat_template = template
    image_processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor = transformers.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=fast,
        patch_size=16,
        num_additional_image_tokens=1,
        vision_feature_select_strategy="default",
        chat_template=template,
    )
    config = transformers.LlavaConfig(
        vision_config=transformers.CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=16,
        ),
        text_config=transformers.LlamaConfig(
            vocab_size=len(words),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=512,
        ),
        image_token_index=vocab["<image>"],
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    transformers.LlavaForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def test_random_weight_vlm_loads_and_runs_through_the_real_code_path(tmp_path):
    """The weights are RANDOM: this checks loading, prompting and decoding, not quality."""
    model_dir = build_tiny_vlm(tmp_path / "tiny_random_llava")
    vlm = TransformersVLM(model_dir, max_new_tokens=6)
    text = vlm.describe([IMAGE], SCENE)
    assert isinstance(text, str) and re.fullmatch(r"(w\d+ ?)+", text), text
    assert vlm.device == "cpu"
    answer = vlm.answer("w1 w2", [IMAGE], SCENE)
    assert re.fullmatch(r"(w\d+ ?)+", answer)
    with pytest.raises(MultimodalError, match=r"no config\.json"):
        TransformersVLM(tmp_path / "missing")


def test_random_weight_vlm_captions_through_the_pipeline(tmp_path):
    model_dir = build_tiny_vlm(tmp_path / "tiny_random_llava")
    params = load_parameters(REPO / "config" / "perception.yaml").with_overrides(
        {"vlm.backend": "transformers", "vlm.model_dir": str(model_dir), "vlm.rate_hz": 2.0}
    )
    pipeline = Pipeline(params, RosbagsFactory(get_project_typestore()))
    outputs = []
    for rec in iter_bag(SHIPPED):
        outputs += pipeline.process(rec.topic, rec.msg)
    outputs += pipeline.finish() + pipeline.ask("w3 w4") + pipeline.close()
    captions = [json.loads(o.msg.data) for o in outputs if o.topic == "scene_caption"]
    answers = [json.loads(o.msg.data) for o in outputs if o.topic == "answer"]
    scenes = {o.stamp_ns for o in outputs if o.topic == "scene"}
    assert captions and all(
        c["stamp_ns"] in scenes and c["backend"] == "transformers" for c in captions
    )
    assert answers and answers[0]["question"] == "w3 w4"
    # 5 s of frames at 2 Hz in header time: at most 10 captions.
    assert len(captions) <= 10


class ChatServer:
    """A local OpenAI-compatible chat-completions server (127.0.0.1) for the tests."""

    def __init__(self, mode: str) -> None:
        self.mode, self.requests = mode, []
        self.release = threading.Event()  # "slow" replies only once the test is done
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, body))
                if outer.mode == "slow":
                    outer.release.wait(30.0)
                payload = (
                    b"<html>not json"
                    if outer.mode == "malformed"
                    else json.dumps(
                        {
                            "id": "x",
                            "object": "chat.completion",
                            "choices": [
                                {
                                    "index": 0,
                                    "finish_reason": "stop",
                                    "message": {
                                        "role": "assistant",
                                        "content": "A car #3 is ahead.",
                                    },
                                }
                            ],
                        }
                    ).encode()
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError):  # the client gave up (timeout)
                    self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


def test_openai_compatible_backend_request_and_reply():
    server = ChatServer("ok")
    try:
        vlm = OpenAIChatVLM(server.url, "local-vlm", api_key="k", timeout_s=5.0)
        assert vlm.answer("What is ahead?", [IMAGE], SCENE) == "A car #3 is ahead."
        path, body = server.requests[0]
        assert path == "/v1/chat/completions" and body["model"] == "local-vlm"
        system, user = body["messages"]
        assert "#3 car, 12.3 m ahead" in system["content"]  # grounded with track ids
        kinds = [part["type"] for part in user["content"]]
        assert kinds == ["text", "image_url"]
        assert user["content"][1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    finally:
        server.close()


def test_openai_backend_times_out_with_retries_and_refuses_malformed_replies():
    slow = ChatServer("slow")
    try:
        # The server holds every reply until the test ends: only the client's own timeout
        # can end each attempt, so three requests and the error show that it fired.
        vlm = OpenAIChatVLM(slow.url, "m", timeout_s=0.3, retries=2)
        with pytest.raises(MultimodalError, match="no reply after 3 attempts"):
            vlm.describe([IMAGE], SCENE)
        assert len(slow.requests) == 3
    finally:
        slow.close()
    bad = ChatServer("malformed")
    try:
        with pytest.raises(MultimodalError, match="malformed chat-completions reply"):
            OpenAIChatVLM(bad.url, "m").describe([IMAGE], SCENE)
    finally:
        bad.close()


class CountingBackend:
    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def describe(self, images, scene):
        self.calls += 1
        return f"caption {self.calls}"

    def answer(self, question, images, scene):
        self.calls += 1
        return f"answer {self.calls}"


def test_same_frame_replayed_calls_the_model_once_and_new_objects_call_it_again():
    backend = CountingBackend()
    worker = MultimodalWorker(backend, rate_hz=10.0)
    for k in range(6):  # one frame replayed: only the sensor noise differs
        noisy = np.clip(
            IMAGE.astype(int) + np.random.default_rng(k).integers(-2, 3, IMAGE.shape), 0, 255
        ).astype(np.uint8)
        worker.offer_frame(k * 200_000_000, noisy, SCENE)
        worker.wait_idle()
    assert backend.calls == 1 and worker.cache.hits == 5
    more = {
        "objects": [
            *SCENE["objects"],
            {"confirmed": True, "class": "bus", "track_id": 9, "range_m": 30.0, "bearing_deg": 0.0},
        ]
    }
    worker.offer_frame(2_000_000_000, IMAGE, more)
    worker.wait_idle()
    assert backend.calls == 2
    results = worker.results()
    assert [r.cached for r in results] == [False, True, True, True, True, True, False]
    worker.close()
    assert bin(dhash(IMAGE) ^ dhash(IMAGE[::-1])).count("1") > 6  # other content, other hash


class GatedBackend:
    """A model that is busy until the test lets it finish: "slow" without any timing."""

    name = "gated"

    def __init__(self) -> None:
        self.busy, self.finish = threading.Event(), threading.Event()
        self.described: list[int] = []

    def describe(self, images, scene):
        self.described.append(scene["stamp_ns"])
        self.busy.set()
        assert self.finish.wait(30.0), "the test never let the model finish"
        return f"caption {len(self.described)}"

    def answer(self, question, images, scene):
        return self.describe(images, scene)


def test_worker_keeps_the_rate_in_header_time_and_skips_frames_when_slow():
    backend = GatedBackend()
    worker = MultimodalWorker(backend, rate_hz=1.0, cache=ResultCache(max_hamming=-1))
    accepted = []
    for k in range(30):  # 3 s of 10 Hz frames offered at once (header time is what counts)
        stamp = k * 100_000_000
        accepted.append(worker.offer_frame(stamp, IMAGE, {**SCENE, "stamp_ns": stamp}))
        if k == 0:
            assert backend.busy.wait(30.0)  # the model is now busy with frame 0
    backend.finish.set()
    worker.wait_idle()
    stats = worker.stats
    # 1 Hz in header time: frames at 0, 1 and 2 s pass the rate limit, 27 are skipped.
    assert [k for k, a in enumerate(accepted) if a] == [0, 10, 20]
    assert stats.offered == 30 and stats.skipped_rate == 27
    # While the model was busy, the 2 s frame replaced the 1 s one: the newest frame wins
    # and nothing queues up behind a slow model.
    assert stats.superseded == 1 and stats.model_calls == 2
    assert backend.described == [0, 2_000_000_000]
    assert [r.stamp_ns for r in worker.results()] == [0, 2_000_000_000]
    worker.close()


# -- a model server that misbehaves ----------------------------------------------------
def test_fallback_says_plainly_when_it_cannot_answer():
    text = GroundedFallback().answer("What colour is the sky?", [IMAGE], SCENE)
    assert text.startswith("I cannot answer that")


def test_clip_onnx_similarity_with_random_weight_encoders(tmp_path):
    """Tiny CLIP-style encoders with RANDOM weights, exported to ONNX: checks loading,
    preprocessing, tokenising and scoring, not recognition quality."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from tokenizers import Tokenizer, models, pre_tokenizers

    from multimodal_perception.perception.multimodal import ClipOnnx

    torch.manual_seed(0)
    image_encoder = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 8, 8),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 16),
    )
    text_encoder = torch.nn.Sequential(
        torch.nn.Embedding(64, 16), torch.nn.Flatten(), torch.nn.Linear(16 * 77, 16)
    )
    torch.onnx.export(
        image_encoder,
        torch.zeros(1, 3, 224, 224),
        str(tmp_path / "image_encoder.onnx"),
        input_names=["pixels"],
        dynamic_axes={"pixels": {0: "n"}},
        dynamo=False,
    )
    torch.onnx.export(
        text_encoder,
        torch.zeros(1, 77, dtype=torch.long),
        str(tmp_path / "text_encoder.onnx"),
        input_names=["ids"],
        dynamic_axes={"ids": {0: "n"}},
        dynamo=False,
    )
    words = ["<unk>", "a", "photo", "of", "car", "person", "bus", "forklift"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(tmp_path / "tokenizer.json"))
    clip = ClipOnnx(tmp_path)
    crops = [IMAGE, IMAGE[::-1].copy(), IMAGE[:40, :40].copy()]
    scores = clip.similarity(crops, ["car", "person", "forklift"])
    assert scores.shape == (3, 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(clip.similarity(crops, ["car", "person", "forklift"]), scores)
    assert not np.allclose(scores[0], scores[1])  # other pixels, other scores
    with pytest.raises(MultimodalError, match=r"missing text_encoder\.onnx"):
        (tmp_path / "text_encoder.onnx").unlink()
        ClipOnnx(tmp_path)
