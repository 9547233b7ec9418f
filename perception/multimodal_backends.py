"""The vision-language model backends: a local server and a local model directory.

- :class:`OpenAIChatVLM`: an OpenAI-compatible chat-completions endpoint with image input
  (llama.cpp's server, Ollama, vLLM, NanoLLM). Every attempt has a deadline of
  ``timeout_s`` of wall time whatever the server does (refuses, answers garbage, stops
  mid-body, trickles a byte at a time); any failure is a :class:`MultimodalError`
  (:class:`MultimodalTimeout` when the deadline passed), never another exception type.
- :class:`TransformersVLM`: Hugging Face image-text-to-text models from a local directory
  (SmolVLM, Florence-2, Qwen2-VL, LLaVA class), on CUDA in fp16 when present, else CPU.

Both implement :class:`~.multimodal.MultimodalBackend`; nothing is downloaded at run time.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .multimodal import CAPTION_PROMPT, MultimodalError, MultimodalTimeout, grounding

MAX_REPLY_BYTES = 1 << 20


# -- OpenAI-compatible endpoint ----------------------------------------------------------
def _jpeg_data_url(image: np.ndarray, quality: int = 85) -> str:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise MultimodalError("could not encode the image as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


class _Transient(MultimodalError):
    """A failure worth another attempt: the connection failed or the server said 5xx."""


def _read_body(
    resp: http.client.HTTPResponse, sock: socket.socket, deadline: float, limit: int
) -> bytes:
    """The reply body, read in chunks with the time left as each read's timeout: a server
    that trickles bytes cannot stretch the attempt past the deadline."""
    expected = resp.getheader("Content-Length")
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed while reading the reply")
        sock.settimeout(remaining)
        chunk = resp.read1(65536)
        if not chunk:
            break
        size += len(chunk)
        chunks.append(chunk)
        if size > limit:
            if resp.status != 200:  # an error page: its start is enough
                return b"".join(chunks)
            raise MultimodalError(f"reply longer than {limit} bytes")
    body = b"".join(chunks)
    if expected is not None and expected.strip().isdigit() and size < int(expected):
        raise http.client.IncompleteRead(body, int(expected) - size)
    return body


@dataclass
class OpenAIChatVLM:
    """POST {base_url}/v1/chat/completions with text + image parts; local servers only in
    tests (127.0.0.1), whatever the user configures in deployment.

    ``timeout_s`` is a deadline per attempt (connect, send, status line, headers and body
    together); ``retries`` more attempts follow a transport failure, a timeout or an HTTP
    5xx. The worker (:class:`~.multimodal_worker.MultimodalWorker`) adds backoff across
    calls, so it builds this with ``retries=0``."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 10.0
    retries: int = 1
    max_tokens: int = 128
    name: str = "openai_compatible"

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> bytes:
        """One attempt: the 200 reply's body, within ``timeout_s`` of wall time."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MultimodalError(f"{url}: not an http(s) URL")
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        deadline = time.monotonic() + self.timeout_s
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname, parts.port, timeout=self.timeout_s)
        expired = threading.Event()
        sockets: list[socket.socket] = []

        def expire() -> None:  # wakes a read blocked in the status line or headers
            expired.set()
            for s in list(sockets):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

        watchdog = threading.Timer(self.timeout_s, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.connect()
            sock = conn.sock
            sockets.append(sock)
            if expired.is_set():
                raise TimeoutError("deadline passed while connecting")
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            limit = MAX_REPLY_BYTES if resp.status == 200 else 4096
            raw = _read_body(resp, sock, deadline, limit)
            if expired.is_set():
                raise TimeoutError("deadline passed")
        except MultimodalError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if expired.is_set() or isinstance(exc, TimeoutError):
                raise MultimodalTimeout(
                    f"{url}: timed out after {self.timeout_s} s ({type(exc).__name__})"
                ) from None
            raise _Transient(f"{url}: {type(exc).__name__}: {exc}") from None
        finally:
            watchdog.cancel()
            conn.close()
        if resp.status != 200:
            error = _Transient if resp.status >= 500 else MultimodalError
            raise error(f"{url}: HTTP {resp.status} {resp.reason}: {raw[:120]!r}")
        return raw

    def _chat(self, text: str, images: list[np.ndarray], scene: dict[str, Any]) -> str:
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        content += [
            {"type": "image_url", "image_url": {"url": _jpeg_data_url(im)}} for im in images
        ]
        body = json.dumps(
            {
                "model": self.model,
                "max_tokens": self.max_tokens,
                "temperature": 0.0,
                "messages": [
                    {"role": "system", "content": grounding(scene)},
                    {"role": "user", "content": content},
                ],
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.base_url.rstrip("/") + "/v1/chat/completions"
        last: MultimodalError | None = None
        for _ in range(self.retries + 1):
            try:
                raw = self._post(url, body, headers)
            except (_Transient, MultimodalTimeout) as exc:
                last = exc
                continue
            try:
                reply = json.loads(raw)
                text_out = reply["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                raise MultimodalError(
                    f"{url}: malformed chat-completions reply: {raw[:120]!r}"
                ) from None
            if not isinstance(text_out, str):
                raise MultimodalError(f"{url}: reply content is not text: {text_out!r}")
            return text_out.strip()
        kind = MultimodalTimeout if isinstance(last, MultimodalTimeout) else MultimodalError
        raise kind(f"{url}: no reply after {self.retries + 1} attempts: {last}")

    def describe(self, images: list[np.ndarray], scene: dict[str, Any]) -> str:
        return self._chat(CAPTION_PROMPT, images, scene)

    def answer(self, question: str, images: list[np.ndarray], scene: dict[str, Any]) -> str:
        return self._chat(question, images, scene)


# -- Hugging Face transformers, local directory -----------------------------------------
@dataclass
class TransformersVLM:
    model_dir: str | Path
    max_new_tokens: int = 64
    name: str = "transformers"
    device: str = field(init=False, default="cpu")

    def __post_init__(self) -> None:
        path = Path(self.model_dir)
        if not (path / "config.json").is_file():
            raise MultimodalError(
                f"vlm.model_dir {path}: no config.json (a local model "
                "directory is needed; nothing is downloaded)"
            )
        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as exc:
            raise MultimodalError(
                f"the transformers backend needs torch and transformers: {exc}"
            ) from None
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.float16 if self.device == "cuda" else torch.float32
        try:
            self.processor = AutoProcessor.from_pretrained(path, local_files_only=True)
            self.model = (
                AutoModelForImageTextToText.from_pretrained(
                    # safetensors only: a pickled pytorch_model.bin from a user's directory
                    # could run code when loaded.
                    path,
                    local_files_only=True,
                    use_safetensors=True,
                    dtype=dtype,
                )
                .to(self.device)
                .eval()
            )
        except Exception as exc:
            raise MultimodalError(f"vlm.model_dir {path}: cannot load: {exc}") from None

    def _generate(self, text: str, images: list[np.ndarray], scene: dict[str, Any]) -> str:
        import torch

        rgb = [cv2.cvtColor(im, cv2.COLOR_BGR2RGB) for im in images]
        content = [{"type": "image"} for _ in rgb]
        content.append({"type": "text", "text": f"{grounding(scene)}\n{text}"})
        prompt = self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True
        )
        inputs = self.processor(text=prompt, images=rgb or None, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new, skip_special_tokens=True)[0].strip()

    def describe(self, images: list[np.ndarray], scene: dict[str, Any]) -> str:
        return self._generate(CAPTION_PROMPT, images, scene)

    def answer(self, question: str, images: list[np.ndarray], scene: dict[str, Any]) -> str:
        return self._generate(question, images, scene)
