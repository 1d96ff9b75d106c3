"""The default model's network: a compact residual CNN for 64x80 product photos on a 2-core CPU.

Stem (3x3, stride 2) then four stages of residual blocks (32, 64, 128, 256 channels; stages 2-4 halve the
resolution; `blocks` says how many per stage, one each by default), global average + max pooling, a linear
projection to a 256-d L2-normalised embedding. A stage's blocks after its first start as the identity (their
last batch norm's scale is zero), so a deeper network initialised from a shallower one's weights computes the
same function before fine-tuning; so does a wider one (`load_grown`: old channels keep their weights and ignore
the new ones, which start random and read everything). Heads are cosine classifiers on that embedding (each class a learned unit
"proxy"), so the classification losses shape the embedding space directly (normalised-softmax proxy loss). An
optional projection predicts a teacher's features (distillation at training time only; it is not exported).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (32, 64, 128, 256)     # channels per stage unless a model says otherwise


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = None
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.skip is None else self.skip(x)), inplace=True)


class CosineHead(nn.Module):
    def __init__(self, dim: int, classes: int, scale: float = 16.0):
        super().__init__()
        self.proxies = nn.Parameter(torch.randn(classes, dim) * 0.01)
        self.scale = scale

    def forward(self, emb):
        return self.scale * emb @ F.normalize(self.proxies, dim=1).t()


class FashionNet(nn.Module):
    def __init__(self, heads: dict[str, int], dim: int = 256, widths=WIDTHS,
                 teacher_dim: int | None = None, blocks=(1, 1, 1, 1)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        stages, cin = [], widths[0]
        for i, w in enumerate(widths):
            stages.append(Block(cin, w, 1 if i == 0 else 2))
            cin = w
        self.stages = nn.Sequential(*stages)
        # Blocks after each stage's first live apart, so the tensor names of one-block networks stay valid.
        self.more = nn.ModuleList(nn.Sequential(*(Block(w, w, 1) for _ in range(n - 1)))
                                  for w, n in zip(widths, blocks))
        for stage in self.more:
            for block in stage:
                nn.init.zeros_(block.bn2.weight)
        self.project = nn.Sequential(nn.Linear(2 * cin, dim), nn.BatchNorm1d(dim))
        self.heads = nn.ModuleDict({name: CosineHead(dim, n) for name, n in heads.items()})
        self.teacher = nn.Sequential(nn.Linear(2 * cin, 512), nn.ReLU(inplace=True), nn.Linear(512, teacher_dim)) \
            if teacher_dim else None
        self.head_names = list(heads)

    def load_grown(self, init: dict) -> tuple[int, int]:
        """Load the weights of a network of the same design with as many or fewer blocks and channels, so that this
        one computes the same function: each tensor's old part is copied, new output channels keep their random
        initialisation, and old outputs read new input channels with weight zero. Returns (tensors copied, grown)."""
        state, copied, grown = self.state_dict(), 0, 0
        pooled = {"project.0.weight", "teacher.0.weight"}   # inputs are [mean | max] of the last stage's channels
        for key, old in init.items():
            new = state.get(key)
            if new is None:
                continue
            if old.shape == new.shape:
                state[key] = old.clone()
                copied += 1
                continue
            # Only channel counts grow; a head of another vocabulary or teacher size starts afresh, as before.
            if (not key.startswith(("stem.", "stages.", "more.")) and key not in pooled) or old.dim() != new.dim() \
                    or any(a > b for a, b in zip(old.shape, new.shape)):
                continue
            o, grown_t = old.shape[0], new.clone()
            if old.dim() > 1:
                grown_t[:o] = 0         # old outputs read new inputs with weight zero; new outputs stay random
            if key in pooled and old.shape[1] != new.shape[1]:
                half, c = new.shape[1] // 2, old.shape[1] // 2
                grown_t[:o, :c], grown_t[:o, half:half + c] = old[:, :c], old[:, c:]
            else:
                grown_t[tuple(slice(0, n) for n in old.shape)] = old
            state[key] = grown_t
            grown += 1
        self.load_state_dict(state)
        return copied, grown

    def features(self, x):
        f = self.stem(x)
        for stage, more in zip(self.stages, self.more):
            f = more(stage(f))
        return torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)

    def forward(self, x):
        pooled = self.features(x)
        emb = F.normalize(self.project(pooled), dim=1)
        return emb, {name: head(emb) for name, head in self.heads.items()}, pooled
