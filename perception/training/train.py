"""Training loops for the tiny detector and segmenter (CPU, a few minutes each).

Frames are shrunk 2x to the 320x192 model input with the same OpenCV resize the runtime
uses. The detector learns FCOS-style: cells inside a box and near its centre are
positives for the pyramid level matching the box size (every box gets at least its centre
cell), with focal loss on classes and GIoU loss on boxes. The segmenter learns with
class-balanced cross-entropy. Seeds are fixed; results are close but not bit-identical
across machines (threaded float reductions).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from .nets import STRIDES, TinyDetector, TinySegmenter

INPUT_W, INPUT_H = 320, 192
SIZE_RANGES = {8: (0.0, 48.0), 16: (32.0, 112.0), 32: (80.0, 1e9)}


@dataclass
class TrainConfig:
    iterations: int = 3000
    batch: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    log_every: int = 200


def _prepare(
    frames: list[dict[str, np.ndarray]],
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], np.ndarray]:
    images, boxes, classes, labels = [], [], [], []
    for f in frames:
        h, w = f["image"].shape[:2]
        sx, sy = INPUT_W / w, INPUT_H / h
        images.append(cv2.resize(f["image"], (INPUT_W, INPUT_H), interpolation=cv2.INTER_AREA))
        labels.append(
            cv2.resize(f["semantic"], (INPUT_W, INPUT_H), interpolation=cv2.INTER_NEAREST)
        )
        boxes.append(f["boxes"] * np.array([sx, sy, sx, sy], np.float32))
        classes.append(f["classes"])
    return np.stack(images), boxes, classes, np.stack(labels)


def _augment_images(batch: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    x = torch.from_numpy(batch).float().permute(0, 3, 1, 2) / 255.0
    gain = torch.from_numpy(rng.uniform(0.7, 1.3, (len(batch), 1, 1, 1))).float()
    bias = torch.from_numpy(rng.uniform(-0.08, 0.08, (len(batch), 1, 1, 1))).float()
    tint = torch.from_numpy(rng.uniform(0.9, 1.1, (len(batch), 3, 1, 1))).float()
    x = (x * gain * tint + bias).clamp(0, 1)
    return x


def _cells(stride: int) -> torch.Tensor:
    ys = (torch.arange(INPUT_H // stride) + 0.5) * stride
    xs = (torch.arange(INPUT_W // stride) + 0.5) * stride
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([cx.reshape(-1), cy.reshape(-1)], 1)


def assign(
    boxes: torch.Tensor, classes: torch.Tensor, num_classes: int
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per level: (class target one-hot [K, C], box target [K, 4], positive mask [K])."""
    out = []
    centre_hit = torch.zeros(len(boxes), dtype=torch.bool)
    for stride in STRIDES:
        cells = _cells(stride)
        k = len(cells)
        cls_t = torch.zeros(k, num_classes)
        box_t = torch.zeros(k, 4)
        pos = torch.zeros(k, dtype=torch.bool)
        if len(boxes):
            x, y = cells[:, 0:1], cells[:, 1:2]
            ltrb = torch.stack(
                [x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], -1
            )
            inside = ltrb.min(-1).values > 0
            cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
            near = ((x - cx).abs() < 1.5 * stride) & ((y - cy).abs() < 1.5 * stride)
            extent = ltrb.max(-1).values
            lo, hi = SIZE_RANGES[stride]
            in_range = (extent >= lo) & (extent <= hi)
            ok = inside & near & in_range
            if stride == STRIDES[0]:
                # Tiny boxes with no cell centre inside: their centre's cell is positive.
                ci = (cx // stride).long().clamp(0, INPUT_W // stride - 1)
                cj = (cy // stride).long().clamp(0, INPUT_H // stride - 1)
                idx = cj * (INPUT_W // stride) + ci
                centre = torch.zeros_like(ok)
                centre[idx, torch.arange(len(boxes))] = True
                ok = ok | (centre & ~ok.any(0, keepdim=True))
            area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).expand(k, -1)
            area = torch.where(ok, area, torch.full_like(area, float("inf")))
            best_area, best = area.min(1)
            pos = torch.isfinite(best_area)
            cls_t[pos, classes[best[pos]]] = 1.0
            box_t[pos] = boxes[best[pos]]
            centre_hit |= ok.any(0)
        out.append((cls_t, box_t, pos))
    return out


def _giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    x1 = torch.max(pred[:, 0], target[:, 0])
    y1 = torch.max(pred[:, 1], target[:, 1])
    x2 = torch.min(pred[:, 2], target[:, 2])
    y2 = torch.min(pred[:, 3], target[:, 3])
    inter = (x2 - x1).clamp(0) * (y2 - y1).clamp(0)
    area_p = (pred[:, 2] - pred[:, 0]).clamp(0) * (pred[:, 3] - pred[:, 1]).clamp(0)
    area_t = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    union = area_p + area_t - inter + 1e-6
    iou = inter / union
    cx1 = torch.min(pred[:, 0], target[:, 0])
    cy1 = torch.min(pred[:, 1], target[:, 1])
    cx2 = torch.max(pred[:, 2], target[:, 2])
    cy2 = torch.max(pred[:, 3], target[:, 3])
    hull = (cx2 - cx1) * (cy2 - cy1) + 1e-6
    return (1 - iou + (hull - union) / hull).mean()


def detector_loss(
    levels: list[tuple[torch.Tensor, torch.Tensor]], targets: list[list[tuple]]
) -> torch.Tensor:
    cls_losses, box_losses, n_pos = [], [], 0
    for li, ((dist, logits), stride) in enumerate(zip(levels, STRIDES, strict=True)):
        n, c = logits.shape[:2]
        logits = logits.permute(0, 2, 3, 1).reshape(n, -1, c)
        dist = dist.permute(0, 2, 3, 1).reshape(n, -1, 4)
        cells = _cells(stride)
        cls_t = torch.stack([t[li][0] for t in targets])
        box_t = torch.stack([t[li][1] for t in targets])
        pos = torch.stack([t[li][2] for t in targets])
        cls_losses.append(_focal(logits, cls_t).sum())
        if pos.any():
            d = dist[pos]
            xy = cells.expand(n, -1, -1)[pos]
            pred = torch.stack(
                [xy[:, 0] - d[:, 0], xy[:, 1] - d[:, 1], xy[:, 0] + d[:, 2], xy[:, 1] + d[:, 3]], 1
            )
            box_losses.append(_giou_loss(pred, box_t[pos]) * pos.sum())
        n_pos += int(pos.sum())
    n_pos = max(n_pos, 1)
    return sum(cls_losses) / n_pos + 2.0 * sum(box_losses) / n_pos


def _focal(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    a_t = alpha * target + (1 - alpha) * (1 - target)
    return a_t * (1 - p_t) ** gamma * ce


def _schedule(cfg: TrainConfig) -> Callable[[int], float]:
    warm = min(200, cfg.iterations // 10)

    def lr_at(i: int) -> float:
        if i < warm:
            return cfg.lr * (i + 1) / warm
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * (i - warm) / (cfg.iterations - warm)))

    return lr_at


def train_detector(
    frames: list[dict[str, np.ndarray]],
    num_classes: int,
    cfg: TrainConfig,
    log: Callable[[str], None] = print,
) -> TinyDetector:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    images, boxes, classes, _ = _prepare(frames)
    model = TinyDetector(num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_at = _schedule(cfg)
    start = time.time()
    model.train()
    for it in range(cfg.iterations):
        idx = rng.integers(0, len(images), cfg.batch)
        flip = rng.uniform(size=cfg.batch) < 0.5
        batch = images[idx].copy()
        batch[flip] = batch[flip, :, ::-1]
        x = _augment_images(batch, rng)
        targets = []
        for j, i in enumerate(idx):
            b = torch.from_numpy(boxes[i].copy())
            if flip[j] and len(b):
                b[:, [0, 2]] = INPUT_W - b[:, [2, 0]]
            targets.append(assign(b, torch.from_numpy(classes[i]), num_classes))
        for group in opt.param_groups:
            group["lr"] = lr_at(it)
        loss = detector_loss(model(x), targets)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        if it % cfg.log_every == 0 or it == cfg.iterations - 1:
            log(f"detector it {it:5d} loss {loss.item():.3f} ({time.time() - start:.0f} s)")
    return model.eval()


def train_segmenter(
    frames: list[dict[str, np.ndarray]],
    num_classes: int,
    cfg: TrainConfig,
    log: Callable[[str], None] = print,
) -> TinySegmenter:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    images, _, _, labels = _prepare(frames)
    counts = np.bincount(labels[labels < num_classes].ravel(), minlength=num_classes)
    freq = counts / max(counts.sum(), 1)
    weights = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(freq, 1e-6)), 0.0)
    weights = torch.tensor(weights / weights[counts > 0].mean(), dtype=torch.float32)
    model = TinySegmenter(num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_at = _schedule(cfg)
    start = time.time()
    model.train()
    for it in range(cfg.iterations):
        idx = rng.integers(0, len(images), cfg.batch)
        flip = rng.uniform(size=cfg.batch) < 0.5
        batch, target = images[idx].copy(), labels[idx].copy()
        batch[flip] = batch[flip, :, ::-1]
        target[flip] = target[flip, :, ::-1]
        x = _augment_images(batch, rng)
        y = torch.from_numpy(target.astype(np.int64))
        for group in opt.param_groups:
            group["lr"] = lr_at(it)
        loss = F.cross_entropy(model(x), y, weight=weights, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % cfg.log_every == 0 or it == cfg.iterations - 1:
            log(f"segmenter it {it:5d} loss {loss.item():.3f} ({time.time() - start:.0f} s)")
    return model.eval()


def export_onnx(model: torch.nn.Module, path: str, output_name: str = "output") -> None:
    if isinstance(model, TinyDetector):
        model.export = True
    dummy = torch.zeros(1, 3, INPUT_H, INPUT_W)
    torch.onnx.export(
        model,
        dummy,
        path,
        input_names=["images"],
        output_names=[output_name],
        dynamic_axes={"images": {0: "batch"}, output_name: {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
