"""Tiny networks for the embedded default: an anchor-free detector and a segmenter.

Both take 320x192 BGR images scaled to [0, 1] (NCHW). The detector is FCOS-like: a
small strided backbone, a top-down feature pyramid at strides 8, 16 and 32, and a shared
head predicting per-cell box distances (l, t, r, b) and class logits. Its exported graph
emits the common YOLOv8 layout [N, 4 + C, A] (centre x, centre y, width, height in input
pixels, sigmoid class scores) so the generic ``yolov8`` decoder reads it. The segmenter
is a small U-Net emitting class logits at full input resolution.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

STRIDES = (8, 16, 32)


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class Residual(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.a, self.b = conv(ch, ch), conv(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x))


class Backbone(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 96, 128)) -> None:
        super().__init__()
        w = widths
        self.s2 = conv(3, w[0], 2)
        self.s4 = nn.Sequential(conv(w[0], w[1], 2), Residual(w[1]))
        self.s8 = nn.Sequential(conv(w[1], w[2], 2), Residual(w[2]))
        self.s16 = nn.Sequential(conv(w[2], w[3], 2), Residual(w[3]))
        self.s32 = nn.Sequential(conv(w[3], w[4], 2), Residual(w[4]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x2 = self.s2(x)
        x4 = self.s4(x2)
        x8 = self.s8(x4)
        x16 = self.s16(x8)
        return [x2, x4, x8, x16, self.s32(x16)]


DETECTOR_WIDTHS = (12, 24, 48, 64, 96)
SEGMENTER_WIDTHS = (12, 24, 32, 48, 64)


class TinyDetector(nn.Module):
    def __init__(self, num_classes: int, width: int = 48) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = Backbone(DETECTOR_WIDTHS)
        self.lateral = nn.ModuleList([nn.Conv2d(c, width, 1) for c in DETECTOR_WIDTHS[2:]])
        self.smooth = nn.ModuleList([conv(width, width) for _ in STRIDES])
        self.head = conv(width, width)
        self.reg = nn.Conv2d(width, 4, 3, 1, 1)
        self.cls = nn.Conv2d(width, num_classes, 3, 1, 1)
        self.scales = nn.Parameter(torch.ones(len(STRIDES)))
        nn.init.constant_(self.cls.bias, -4.6)  # prior 0.01: stable focal-loss start
        self.export = False

    def levels(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        feats = self.backbone(x)[2:]
        lat = [m(f) for m, f in zip(self.lateral, feats, strict=True)]
        for i in range(len(lat) - 2, -1, -1):
            lat[i] = lat[i] + F.interpolate(lat[i + 1], size=lat[i].shape[-2:], mode="nearest")
        out = []
        for i, (f, stride) in enumerate(zip(lat, STRIDES, strict=True)):
            h = self.head(self.smooth[i](f))
            dist = F.relu(self.reg(h) * self.scales[i]) * stride  # l, t, r, b in pixels
            out.append((dist, self.cls(h)))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[tuple[torch.Tensor, torch.Tensor]]:
        levels = self.levels(x)
        if not self.export:
            return levels
        rows = []
        for (dist, logits), stride in zip(levels, STRIDES, strict=True):
            h, w = dist.shape[-2:]
            ys = (torch.arange(h, dtype=dist.dtype) + 0.5) * stride
            xs = (torch.arange(w, dtype=dist.dtype) + 0.5) * stride
            cy, cx = torch.meshgrid(ys, xs, indexing="ij")
            left, top, right, bottom = dist.unbind(1)
            x1, y1, x2, y2 = cx - left, cy - top, cx + right, cy + bottom
            box = torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], 1)
            rows.append(torch.cat([box, torch.sigmoid(logits)], 1).flatten(2))
        return torch.cat(rows, 2)  # [N, 4 + C, A], the YOLOv8 export layout


class TinySegmenter(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        w = SEGMENTER_WIDTHS
        self.backbone = Backbone(w)
        self.up16 = conv(w[4] + w[3], 48)
        self.up8 = conv(48 + w[2], 32)
        self.up4 = conv(32 + w[1], 24)
        self.up2 = conv(24 + w[0], 16)
        self.out = nn.Conv2d(16, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2, x4, x8, x16, x32 = self.backbone(x)

        def up(a: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
            a = F.interpolate(a, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            return torch.cat([a, skip], 1)

        y = self.up16(up(x32, x16))
        y = self.up8(up(y, x8))
        y = self.up4(up(y, x4))
        y = self.up2(up(y, x2))
        logits = self.out(y)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
