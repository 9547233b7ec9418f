"""Where full-resolution segmentation pays: square windows around the detector's boxes.

``segmenter.mode: regions`` segments the whole frame once at low resolution (letterbox)
and then only the parts the consistency filter reads at full resolution: windows holding
the small boxes, each box padded for context. Big boxes are judged well enough from the
letterbox (a 200 px box is 80 px there) and get no window. Windows are squares of one
side (one re-shaped session serves them all), each holding as many padded boxes as fit,
smallest boxes first, up to ``max_windows``.
"""

from __future__ import annotations

import numpy as np

PAD = 0.25  # of the box's size on each side: the context that decides a boundary
MIN_PAD_PX = 8


def plan_windows(
    boxes: np.ndarray, width: int, height: int, side: int, max_windows: int
) -> list[tuple[int, int, int, int]]:
    """Square windows (x0, y0, x1, y1) of ``side`` pixels (at most the image's size) that
    hold the padded boxes which fit in one; the smallest boxes are placed first."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    boxes = boxes[np.isfinite(boxes).all(axis=1)]
    side_x, side_y = min(side, width), min(side, height)
    needs: list[list[float]] = []  # per window: the union of the padded boxes it holds
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in np.argsort(areas, kind="stable"):
        x1, y1, x2, y2 = boxes[i]
        px, py = max(PAD * (x2 - x1), MIN_PAD_PX), max(PAD * (y2 - y1), MIN_PAD_PX)
        r = [max(x1 - px, 0.0), max(y1 - py, 0.0), min(x2 + px, width), min(y2 + py, height)]
        if r[2] - r[0] > side_x or r[3] - r[1] > side_y or r[2] <= r[0] or r[3] <= r[1]:
            continue  # too big for a window (the letterbox suffices), or empty
        for need in needs:
            union = [min(need[0], r[0]), min(need[1], r[1]), max(need[2], r[2]), max(need[3], r[3])]
            if union[2] - union[0] <= side_x and union[3] - union[1] <= side_y:
                need[:] = union
                break
        else:
            if len(needs) < max_windows:
                needs.append(r)
    windows = []
    for x0, y0, x1, y1 in needs:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        wx = round(min(max(cx - side_x / 2, 0), width - side_x))
        wy = round(min(max(cy - side_y / 2, 0), height - side_y))
        windows.append((wx, wy, wx + side_x, wy + side_y))
    return windows
