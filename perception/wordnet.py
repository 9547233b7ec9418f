"""WordNet 3.0 nouns, read from the Princeton database files (Debian ``wordnet-base``).

Owns the vocabulary of the zero-shot image-text scorer (``perception/zero_shot.py``):

- :meth:`WordNet.senses`: a text (any case, spaces or underscores, plurals and irregular
  plurals through ``noun.exc`` and WordNet's detachment rules) to its noun senses, most
  frequent first, as the database orders them;
- :meth:`WordNet.synset`: one synset by its offset (an ImageNet id ``nXXXXXXXX`` is the
  offset of its noun in WordNet 3.0), read on demand: ``data.noun`` is addressed by byte
  offset, so a lookup is one seek and nothing is loaded up front but the lemma index;
- :meth:`WordNet.ancestors`: the hypernym closure (class and instance hypernyms) with the
  shortest distance to each ancestor; :meth:`WordNet.wu_palmer` from it.

The files are read as they are: nothing is copied or converted, no NLTK data layout is
needed. A missing or damaged database raises :class:`WordNetError` naming the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .runtime import ModelLoadError

DEFAULT_ROOT = Path("/usr/share/wordnet")
ROOT_ENV = "MMP_WORDNET_DIR"
_HYPERNYMS = ("@", "@i")
# WordNet's morphy detachment rules for nouns (wn(7) morphy), tried after noun.exc.
_DETACH = (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
           ("men", "man"), ("ies", "y"), ("s", ""))  # fmt: skip


class WordNetError(ModelLoadError):
    """The WordNet database cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class Synset:
    offset: int
    lexname: int  # lexicographer file number (e.g. 6 = noun.artifact)
    words: tuple[str, ...]  # lemmas, underscores for spaces, as the database spells them
    hypernyms: tuple[int, ...]  # offsets of class and instance hypernyms
    gloss: str

    @property
    def wnid(self) -> str:
        return f"n{self.offset:08d}"

    @property
    def name(self) -> str:
        return self.words[0].replace("_", " ")


def default_root() -> Path:
    return Path(os.environ.get(ROOT_ENV, DEFAULT_ROOT))


def _parse_synset(line: str, where: str) -> Synset:
    data, _, gloss = line.partition(" | ")
    f = data.split()
    try:
        offset, lexname = int(f[0]), int(f[1])
        n_words = int(f[3], 16)
        words = tuple(f[4 + 2 * i].lower() for i in range(n_words))
        i = 4 + 2 * n_words
        n_ptrs = int(f[i])
        ptrs = [f[i + 1 + 4 * k : i + 5 + 4 * k] for k in range(n_ptrs)]
        hypernyms = tuple(int(p[1]) for p in ptrs if p[0] in _HYPERNYMS and p[2] == "n")
    except (IndexError, ValueError):
        raise WordNetError(f"{where}: malformed synset line {line[:60]!r}") from None
    return Synset(offset, lexname, words, hypernyms, gloss.strip())


class WordNet:
    """The noun part of one WordNet database directory."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self._index = self._read_index(self.root / "index.noun")
        self._exceptions = self._read_exceptions(self.root / "noun.exc")
        self._data_path = self.root / "data.noun"
        try:
            self._data = self._data_path.open("rb")
        except OSError as exc:
            raise WordNetError(self._missing(self._data_path, exc)) from None
        # The cache is per instance (a method-level lru_cache would pin every instance).
        self.synset = lru_cache(maxsize=1 << 16)(self._read_synset)  # type: ignore[method-assign]

    @staticmethod
    def _missing(path: Path, exc: OSError) -> str:
        return (
            f"WordNet file {path} cannot be read ({exc.strerror or exc}): install the Debian "
            f"package wordnet-base (scripts/install-system-deps.sh) or set {ROOT_ENV}"
        )

    def _read_index(self, path: Path) -> dict[str, tuple[int, ...]]:
        try:
            lines = path.read_text(encoding="latin-1").splitlines()
        except OSError as exc:
            raise WordNetError(self._missing(path, exc)) from None
        index: dict[str, tuple[int, ...]] = {}
        for line in lines:
            if line.startswith("  "):
                continue  # licence header
            f = line.split()
            try:
                n_synsets, n_ptrs = int(f[2]), int(f[3])
                first = 4 + n_ptrs + 2
                index[f[0]] = tuple(int(o) for o in f[first : first + n_synsets])
            except (IndexError, ValueError):
                raise WordNetError(f"{path}: malformed index line {line[:60]!r}") from None
        if len(index) < 1000:
            raise WordNetError(f"{path}: only {len(index)} nouns, not a WordNet index")
        return index

    def _read_exceptions(self, path: Path) -> dict[str, tuple[str, ...]]:
        try:
            lines = path.read_text(encoding="latin-1").splitlines()
        except OSError as exc:
            raise WordNetError(self._missing(path, exc)) from None
        return {f[0]: tuple(f[1:]) for f in (line.split() for line in lines) if len(f) >= 2}

    def _read_synset(self, offset: int) -> Synset:
        self._data.seek(offset)
        line = self._data.readline().decode("latin-1")
        if not line.startswith(f"{offset:08d} "):
            raise WordNetError(f"{self._data_path}: no synset at offset {offset:08d}")
        return _parse_synset(line, str(self._data_path))

    def close(self) -> None:
        self._data.close()

    def lemmas(self, text: str) -> list[str]:
        """The index lemmas ``text`` may be: itself, then its singular forms."""
        key = re.sub(r"[\s\-]+", "_", text.strip().lower())
        out = [key] if key in self._index else []
        head, _, last = key.rpartition("_")  # "trash cans": only the head noun inflects
        prefix = f"{head}_" if head else ""
        for base in self._exceptions.get(last, ()):
            out.append(prefix + base)
        for suffix, ending in _DETACH:
            if last.endswith(suffix) and len(last) > len(suffix):
                out.append(prefix + last[: -len(suffix)] + ending)
        return list(dict.fromkeys(w for w in out if w in self._index))

    def senses(self, text: str) -> list[Synset]:
        """Noun senses of ``text``, most frequent first; [] when it is no noun."""
        offsets: list[int] = []
        for lemma in self.lemmas(text):
            offsets.extend(o for o in self._index[lemma] if o not in offsets)
        return [self.synset(o) for o in offsets]

    def ancestors(self, offset: int) -> dict[int, int]:
        """Every hypernym of a synset and itself, with the shortest distance to it."""
        dist = {offset: 0}
        frontier = [offset]
        while frontier:
            nxt = []
            for o in frontier:
                for h in self.synset(o).hypernyms:
                    if h not in dist:
                        dist[h] = dist[o] + 1
                        nxt.append(h)
            frontier = nxt
        return dist

    def depth(self, offset: int) -> int:
        """Nodes on the shortest path to the root (the root has depth 1)."""
        anc = self.ancestors(offset)
        roots = [o for o in anc if not self.synset(o).hypernyms]
        return 1 + min(anc[r] for r in roots)

    def wu_palmer(self, a: int, b: int) -> float:
        """2 depth(lcs) / (depth via a + depth via b): 1 for the same sense, about 0.1-0.3
        for unrelated nouns, never 0 (all nouns share ``entity``)."""
        anc_a, anc_b = self.ancestors(a), self.ancestors(b)
        common = set(anc_a) & set(anc_b)
        if not common:
            return 0.0
        lcs = max(common, key=self.depth)
        d = self.depth(lcs)
        return 2.0 * d / (anc_a[lcs] + anc_b[lcs] + 2.0 * d)
