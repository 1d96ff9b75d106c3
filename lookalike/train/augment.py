"""Augmentations on whole batches (torch, on CPU): make studio catalog shots look like shoppers' photos.

Colour is kept (no hue jitter: colour is a label). With probability `photo_p` a sample gets the "photo"
treatment: the white studio background is replaced (by a photo patch, a flat colour, a gradient or a
smooth texture), then light (brightness, contrast, gamma, a slight white-balance cast), blur or low
resolution, and sensor noise. Every sample gets a random flip and a random affine (zoom out to 60% or in to
115%, small rotation and shift), so garments are seen smaller, larger and off-centre, as in uploads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _affine(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    scale = torch.empty(b).uniform_(0.6, 1.15, generator=g)
    angle = torch.empty(b).uniform_(-12, 12, generator=g) * math.pi / 180
    shift = torch.empty(b, 2).uniform_(-0.12, 0.12, generator=g)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x - 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 1  # white fill


def _backgrounds(b: int, h: int, w: int, bank: torch.Tensor | None, g: torch.Generator) -> torch.Tensor:
    kind = torch.randint(0, 4, (b,), generator=g)
    flat = torch.rand(b, 3, 1, 1, generator=g).expand(b, 3, h, w)
    ramp = torch.linspace(0, 1, h).view(1, 1, h, 1)
    c1, c2 = torch.rand(b, 3, 1, 1, generator=g), torch.rand(b, 3, 1, 1, generator=g)
    gradient = (c1 * ramp + c2 * (1 - ramp)).expand(b, 3, h, w)
    noise = F.interpolate(torch.rand(b, 3, 5, 4, generator=g), size=(h, w), mode="bicubic", align_corners=False)
    texture = (noise * 0.6 + torch.rand(b, 3, 1, 1, generator=g) * 0.4).clamp(0, 1)
    out = torch.where((kind == 0).view(b, 1, 1, 1), flat, gradient)
    out = torch.where((kind == 2).view(b, 1, 1, 1), texture, out)
    if bank is not None and len(bank):
        pick = bank[torch.randint(0, len(bank), (b,), generator=g)].float() / 255
        out = torch.where((kind == 3).view(b, 1, 1, 1), pick, out)
    return out


def augment(batch: torch.Tensor, g: torch.Generator, photo_p: float = 0.5,
            bank: torch.Tensor | None = None) -> torch.Tensor:
    """`batch`: (B, H, W, 3) uint8 catalog photos. Returns (B, 3, H, W) float in [0, 1]."""
    x = batch.permute(0, 3, 1, 2).float() / 255
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
    x = _affine(x, g)
    photo = (torch.rand(b, generator=g) < photo_p).view(b, 1, 1, 1)
    if photo.any():
        fg = ((1 - x.min(dim=1, keepdim=True).values) > 0.06).float()
        fg = F.avg_pool2d(fg, 3, 1, 1)  # soften the cut-out edge
        y = fg * x + (1 - fg) * _backgrounds(b, h, w, bank, g)
        gain = torch.empty(b, 1, 1, 1).uniform_(0.6, 1.3, generator=g)
        cast = torch.empty(b, 3, 1, 1).uniform_(0.94, 1.06, generator=g)
        gamma = torch.empty(b, 1, 1, 1).uniform_(0.75, 1.35, generator=g)
        mean = y.mean(dim=(1, 2, 3), keepdim=True)
        contrast = torch.empty(b, 1, 1, 1).uniform_(0.7, 1.2, generator=g)
        y = ((y - mean) * contrast + mean).clamp(0, 1) ** gamma * gain * cast
        lowres = torch.rand(b, generator=g) < 0.3
        small = F.interpolate(F.interpolate(y, scale_factor=0.5, mode="area"), size=(h, w), mode="bilinear",
                              align_corners=False)
        y = torch.where(lowres.view(b, 1, 1, 1), small, y)
        y = y + torch.randn(y.shape, generator=g) * torch.empty(b, 1, 1, 1).uniform_(0, 0.03, generator=g)
        x = torch.where(photo, y.clamp(0, 1), x)
    return x.clamp(0, 1)


def normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
