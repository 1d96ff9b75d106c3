"""Training the garment parser of shop the look: a small encoder-decoder that labels every pixel of a
photo of a person as background, top, bottom, one-piece, footwear, bag or the rest of the person.

Trained on Clothing Co-Parsing pixel masks (photos NNNN.jpg + masks NNNN.png, value = index into its label
list), even-numbered photos only (the odd half is kept for measuring). Exported to ONNX with a manifest.

    python -m lookalike.train.parser CCP_DIR --labels labels.json --out lookalike/look/parser/
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..files import sha256_file
from ..look.kinds import CLASSES, Kinds

WIDTH, HEIGHT = 128, 192
MEAN, STD = 0.5, 0.25
CLASS_WEIGHTS = [0.4, 1.0, 1.0, 1.3, 1.6, 1.6, 0.6]


def conv(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ParserNet(nn.Module):
    def __init__(self, classes: int = len(CLASSES), widths=(16, 32, 64, 128)):
        super().__init__()
        w1, w2, w3, w4 = widths
        self.e1 = nn.Sequential(conv(3, w1, 2), conv(w1, w1))          # 1/2
        self.e2 = nn.Sequential(conv(w1, w2, 2), conv(w2, w2))         # 1/4
        self.e3 = nn.Sequential(conv(w2, w3, 2), conv(w3, w3))         # 1/8
        self.e4 = nn.Sequential(conv(w3, w4, 2), conv(w4, w4), conv(w4, w4))  # 1/16
        self.d3 = conv(w4 + w3, w3)
        self.d2 = conv(w3 + w2, w2)
        self.d1 = conv(w2 + w1, w1)
        self.head = nn.Conv2d(w1, classes, 1)

    def forward(self, x):
        e1 = self.e1(x)
        e2 = self.e2(e1)
        e3 = self.e3(e2)
        e4 = self.e4(e3)
        d3 = self.d3(torch.cat([F.interpolate(e4, size=e3.shape[2:], mode="bilinear", align_corners=False), e3], 1))
        d2 = self.d2(torch.cat([F.interpolate(d3, size=e2.shape[2:], mode="bilinear", align_corners=False), e2], 1))
        d1 = self.d1(torch.cat([F.interpolate(d2, size=e1.shape[2:], mode="bilinear", align_corners=False), e1], 1))
        return F.interpolate(self.head(d1), size=x.shape[2:], mode="bilinear", align_corners=False)


class Softmaxed(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image):
        return torch.softmax(self.net(image), dim=1)


def load_pairs(ccp: Path, labels: list[str], kinds: Kinds, numbers: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Photos resized to the parser input (H, W, 3 uint8) and masks mapped to parser classes (H, W uint8)."""
    lut = np.array([kinds.class_of_label(name) for name in labels], dtype=np.uint8)
    images, masks = [], []
    for n in numbers:
        photo = Image.open(ccp / "photos" / f"{n:04d}.jpg").convert("RGB")
        mask = Image.open(ccp / "masks" / f"{n:04d}.png")
        images.append(np.asarray(photo.resize((WIDTH * 2, HEIGHT * 2), Image.BILINEAR)))
        masks.append(lut[np.asarray(mask.resize((WIDTH * 2, HEIGHT * 2), Image.NEAREST))])
    return np.stack(images), np.stack(masks)


def augment(images: torch.Tensor, masks: torch.Tensor, g: torch.Generator):
    """Random zoom and shift (including half-body crops), flips and light, at the parser's input size."""
    b = images.shape[0]
    x = images.permute(0, 3, 1, 2).float() / 255
    m = masks.unsqueeze(1).float()
    scale = torch.empty(b).uniform_(0.6, 1.1, generator=g)
    half = torch.rand(b, generator=g) < 0.2
    scale = torch.where(half, torch.full_like(scale, 0.55), scale)
    tx = torch.empty(b).uniform_(-0.15, 0.15, generator=g)
    ty = torch.where(half, torch.full_like(scale, -0.45), torch.empty(b).uniform_(-0.15, 0.15, generator=g))
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, [b, 3, HEIGHT, WIDTH], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    m = F.grid_sample(m, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    flip = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
    m = torch.where(flip.view(b, 1, 1, 1), m.flip(3), m)
    gain = torch.empty(b, 1, 1, 1).uniform_(0.7, 1.3, generator=g)
    cast = torch.empty(b, 3, 1, 1).uniform_(0.92, 1.08, generator=g)
    x = (x * gain * cast).clamp(0, 1)
    return (x - MEAN) / STD, m.squeeze(1).long()


def train_parser(ccp: Path, labels_file: Path, out: Path, *, epochs: int = 60, batch: int = 16, lr: float = 3e-3,
                 seed: int = 0, log=print) -> dict:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    labels = json.loads(labels_file.read_text())["labels"]
    kinds = Kinds.load()
    numbers = sorted(int(p.stem) for p in (ccp / "masks").glob("*.png"))
    train_n = [n for n in numbers if n % 2 == 0]
    images, masks = load_pairs(ccp, labels, kinds, train_n)
    images_t, masks_t = torch.from_numpy(images), torch.from_numpy(masks)
    net = ParserNet()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (len(train_n) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    weights = torch.tensor(CLASS_WEIGHTS)
    started = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(train_n), generator=g)
        losses = []
        for s in range(len(train_n) // batch):
            idx = order[s * batch:(s + 1) * batch]
            x, y = augment(images_t[idx], masks_t[idx], g)
            loss = F.cross_entropy(net(x), y, weight=weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        if epoch % 10 == 9 or epoch == epochs - 1:
            log(f"epoch {epoch + 1}/{epochs} loss {np.mean(losses):.4f} ({(time.perf_counter() - started) / 60:.1f} min)")
    out.mkdir(parents=True, exist_ok=True)
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Softmaxed(net), (torch.zeros(1, 3, HEIGHT, WIDTH),), str(out / "parser.onnx"),
                          input_names=["image"], output_names=["probs"],
                          dynamic_axes={"image": {0: "batch"}, "probs": {0: "batch"}}, opset_version=17, dynamo=False)
    manifest = {"format": "lookalike-parser", "version": 1, "onnx": "parser.onnx", "sha256": sha256_file(out / "parser.onnx"),
                "width": WIDTH, "height": HEIGHT, "mean": MEAN, "std": STD, "classes": list(CLASSES),
                "trained_on": f"Clothing Co-Parsing, {len(train_n)} even-numbered annotated photos", "epochs": epochs,
                "seed": seed, "minutes": round((time.perf_counter() - started) / 60, 1)}
    (out / "parser.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ccp", type=Path, help="folder with photos/ and masks/")
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(json.dumps(train_parser(args.ccp, args.labels, args.out, epochs=args.epochs, seed=args.seed), indent=2))


if __name__ == "__main__":
    main()
