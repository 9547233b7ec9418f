"""Tiles over wide or large images, and how their results go back together.

Measured: YOLOX-nano on one 416 letterbox of a 1242x375 KITTI frame shrinks a pedestrian
to a few pixels; overlapping square tiles plus the full frame recover most road users.
Tiles are squares of ``size`` pixels (default: the image's short side) stepping with
``overlap``, the last one aligned to the border. Each tile owns a "core" (its span up to
the midpoints of the overlaps) so segmentation can be stitched without seams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    x0: int
    y0: int
    x1: int
    y1: int
    core: tuple[int, int, int, int]  # the region this tile decides when stitching


def _spans(length: int, size: int, overlap: float) -> list[tuple[int, int]]:
    if size >= length:
        return [(0, length)]
    step = max(1, int(size * (1.0 - overlap)))
    starts = [*range(0, length - size, step), length - size]
    return [(s, s + size) for s in sorted(set(starts))]


def _cores(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for i, (a, b) in enumerate(spans):
        lo = 0 if i == 0 else (spans[i - 1][1] + a) // 2
        hi = spans[-1][1] if i == len(spans) - 1 else (b + spans[i + 1][0]) // 2
        out.append((lo, hi))
    return out


def make_tiles(
    width: int,
    height: int,
    tile_w: int | None = None,
    tile_h: int | None = None,
    overlap: float = 0.25,
) -> list[Tile]:
    """Tiles of ``tile_w`` x ``tile_h`` (default: squares of the short side) covering the
    image with at least ``overlap`` between neighbours, the last aligned to the border."""
    if not 0.0 <= overlap < 0.9:
        raise ValueError(f"tiling.overlap={overlap} must lie in [0, 0.9)")
    side = min(width, height)
    tile_w = side if tile_w is None else int(tile_w)
    tile_h = tile_w if tile_h is None else int(tile_h)
    tile_h = min(tile_h, height)
    if min(tile_w, tile_h) < 16:
        raise ValueError(f"tiling size {tile_w}x{tile_h} is too small")
    xs, ys = _spans(width, tile_w, overlap), _spans(height, tile_h, overlap)
    cx, cy = _cores(xs), _cores(ys)
    return [
        Tile(x0, y0, x1, y1, (c0, r0, c1, r1))
        for (y0, y1), (r0, r1) in zip(ys, cy, strict=True)
        for (x0, x1), (c0, c1) in zip(xs, cx, strict=True)
    ]


def band_tiles(
    width: int, height: int, size: int, overlap: float, band: tuple[int, int] | None = None
) -> list[Tile]:
    """Square tiles of ``size`` over the rows ``band`` (top, bottom) only, the band grown
    to one tile's height (centred, inside the image) when narrower; over the whole image
    without a band."""
    top, bottom = 0, height
    if band is not None:
        top, bottom = max(0, int(band[0])), min(height, int(band[1]))
        if bottom - top < size:
            top = int(min(max((top + bottom - size) / 2, 0), height - min(size, height)))
            bottom = min(height, top + size)
    return [
        Tile(t.x0, t.y0 + top, t.x1, t.y1 + top,
             (t.core[0], t.core[1] + top, t.core[2], t.core[3] + top))
        for t in make_tiles(width, bottom - top, size, size, overlap)
    ]  # fmt: skip


def touches_inner_edge(
    boxes: np.ndarray, tile: Tile, width: int, height: int, margin: float = 2.0
) -> np.ndarray:
    """Boxes (in image pixels) cut by a tile edge that is not an image border: such a box
    is a partial object, seen whole in a neighbouring tile or in the full frame."""
    cut = np.zeros(len(boxes), dtype=bool)
    if tile.x0 > 0:
        cut |= boxes[:, 0] <= tile.x0 + margin
    if tile.x1 < width:
        cut |= boxes[:, 2] >= tile.x1 - margin
    if tile.y0 > 0:
        cut |= boxes[:, 1] <= tile.y0 + margin
    if tile.y1 < height:
        cut |= boxes[:, 3] >= tile.y1 - margin
    return cut
