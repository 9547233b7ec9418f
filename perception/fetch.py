"""``mmp models fetch NAME``: download a supported model's release file into the model
directory and check it against the manifest.

Only http(s) URLs from the manifest are used. The download streams to a temporary file
beside the target (size-capped), its sha256 is compared with the manifest's, and only a
match is moved into place. A digest the manifest does not list is refused unless the
user accepts exactly that digest (``--accept-digest <sha256>``), having seen it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from .manifest import ModelManifest

MAX_BYTES = 2 << 30


class FetchError(RuntimeError):
    pass


def fetch_model(
    manifest: ModelManifest,
    directory: Path,
    *,
    accept_digest: str | None = None,
    timeout_s: float = 60.0,
    max_bytes: int = MAX_BYTES,
) -> Path:
    if manifest.trained_by_project:
        raise FetchError(f"{manifest.name} ships with the project; nothing to fetch")
    if not manifest.urls:
        raise FetchError(f"manifest {manifest.name} lists no download URL")
    target = directory / manifest.file
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in manifest.urls:
        if urlparse(url).scheme not in ("http", "https"):
            errors.append(f"{url}: only http(s) URLs are fetched")
            continue
        try:
            tmp, digest = _download(url, target.parent, timeout_s, max_bytes)
        except (OSError, FetchError) as exc:
            errors.append(f"{url}: {exc}")
            continue
        if digest != manifest.sha256 and digest != (accept_digest or "").lower():
            os.unlink(tmp)
            raise FetchError(
                f"{url} has sha256 {digest}, not the manifest's {manifest.sha256}; refused. "
                f"If you trust this file, re-run with --accept-digest {digest}"
            )
        os.replace(tmp, target)
        return target
    raise FetchError(f"could not fetch {manifest.name}: " + "; ".join(errors))


def _download(url: str, where: Path, timeout_s: float, max_bytes: int) -> tuple[str, str]:
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=".fetch-", dir=where)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as resp:
            while block := resp.read(1 << 20):
                size += len(block)
                if size > max_bytes:
                    raise FetchError(f"larger than {max_bytes} bytes")
                digest.update(block)
                out.write(block)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp, digest.hexdigest()
