"""Reading a user's YAML file: safe loading only, every problem one line naming the file.

Owns :func:`read_yaml`: unreadable, not UTF-8 text, or not YAML (a NUL byte, a tab
indent, an unclosed bracket) is a ``ValueError`` whose message names the file, what it was
read as, and the parser's own one-line reason with its line and column, so that
command-line tools print one line and exit 2 instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml(path: str | Path, what: str) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{what} {path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} {path}: not UTF-8 text (byte {exc.start})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if isinstance(exc, yaml.reader.ReaderError):
            where = f" at character {exc.position}"
            problem = f"character #x{exc.character:04x} is not allowed in YAML"
        raise ValueError(f"{what} {path}: not valid YAML{where}: {problem}") from None
