"""Text reading (PP-OCRv4 via rapidocr-onnxruntime 1.4.4) on real frames with real text.

The labels are ours: the words on the truck and the number plate of the lead car in the
KITTI raw sequence 2011_09_26 in ../shared/data (frames 0000000000-0000000039), read by
eye from the frames on 2026-12-07. Only words fully in view are labelled. Legible text:
the truck's lettering (letters 25-60 px high). Small text: the lead car's plate (letters
about 12-15 px high; the round stickers between the letter groups are not text).
For each labelled word, the best character accuracy (1 - edit distance / length) of the
lines read on the whole frame; a word not read at all scores 0."""

from __future__ import annotations

import sys
import time

import cv2
import numpy as np

from multimodal_perception.paths import data_dir
from multimodal_perception.perception.text_reading import TextReader, character_accuracy

try:  # run as part of the bench package or as a script from bench/
    from .common import record, write_results
except ImportError:
    from common import record, write_results

FRAMES = data_dir() / "kitti_raw_2011_09_26" / "image_02"
LEGIBLE = {
    9: ["MAHLER"],
    12: ["MAHLER", "STUTENSEE"],
    15: ["MAHLER", "STUTENSEE"],
    18: ["MAHLER", "STUTENSEE"],
    21: ["MAHLER", "STUTENSEE"],
    24: ["STUTENSEE"],
    27: ["STUTENSEE"],
    30: ["PORTE", "STUTENSEE"],
    33: ["PORTE", "STUTENSEE"],
    36: ["PORTE", "STUTENSEE"],
    39: ["PORTE", "STUTENSEE"],
}
SMALL = {i: ["KAJS6312"] for i in (27, 30, 33, 36, 39)}
# The truck's side in every labelled frame, as an inspection region would name it.
TRUCK_REGION = (780.0, 0.0, 1242.0, 200.0)


def _squash(text: str) -> str:
    return "".join(c for c in text.upper() if c.isalnum())


def _best(read: list[str], word: str) -> float:
    """The best character accuracy of a word among the lines read, a word read inside a
    longer line ("MAHLER:", two words run together) by its best substring."""
    best = 0.0
    for r in read:
        best = max(best, character_accuracy(r, word))
        for k in range(max(1, len(r) - len(word) + 1)):
            best = max(best, character_accuracy(r[k : k + len(word)], word))
    return best


def main() -> int:
    if not FRAMES.is_dir():
        print(f"real frames absent: {FRAMES}")
        return 1
    reader = TextReader()
    legible, small, region, seconds = [], [], [], []
    for i in sorted({*LEGIBLE, *SMALL}):
        image = cv2.imread(str(FRAMES / f"{i:010d}.png"))
        t0 = time.perf_counter()
        (lines,) = reader.read(image)
        seconds.append(time.perf_counter() - t0)
        read = [_squash(t.text) for t in lines]
        (in_region,) = reader.read(image, [TRUCK_REGION])
        for truth, out in ((LEGIBLE.get(i, []), legible), (SMALL.get(i, []), small)):
            for word in truth:
                out.append(_best(read, word))
                print(f"  frame {i:2d} {word:10} {out[-1]:.2f}  read {read}")
        region += [_best([_squash(t.text) for t in in_region], w) for w in LEGIBLE.get(i, [])]
    mean_legible, mean_small = float(np.mean(legible)), float(np.mean(small))
    mean_region = float(np.mean(region))
    print(f"legible text, the truck's region read: character accuracy {mean_region:.3f}")
    record("OCR character accuracy, legible text, region read (KITTI raw)", mean_region,
           "ratio", None, ">= 0.9", bool(mean_region >= 0.9))  # fmt: skip
    print(f"legible text (>= 20 px): character accuracy {mean_legible:.3f} over {len(legible)}")
    print(f"small text (plates, 12-15 px): character accuracy {mean_small:.3f} over {len(small)}")
    print(f"whole-frame read: median {np.median(seconds) * 1e3:.0f} ms (1242x375, 2 cores)")
    record("OCR character accuracy, legible text >= 20 px (KITTI raw)", mean_legible, "ratio",
           None, ">= 0.9", bool(mean_legible >= 0.9))  # fmt: skip
    record("OCR character accuracy, plates 12-15 px (KITTI raw)", mean_small, "ratio")
    record("OCR whole-frame read, KITTI raw", float(np.median(seconds)) * 1e3, "ms")
    print(f"wrote {write_results()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
