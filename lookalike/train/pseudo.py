"""Pseudo masks for the garment parser from photos that have garment tags but no masks.

Clothing Co-Parsing has 200 photos (1005-1204) tagged with the labels they show and no pixel masks. A parser
labels their pixels, and the tags correct it: a kind the photo does not show is struck out of every pixel's
probabilities before the argmax, so a dress read as a top over a skirt becomes a dress when the tags say
"dress" and neither top nor skirt. Pixels whose corrected probability stays under `min_prob` are left unlabelled
(IGNORE) and teach nothing. The masks hold parser classes (see kinds.CLASSES), at the parsed photo's size.

    python -m lookalike.train.pseudo CCP_DIR --tags image_tags.json --out build/ccp-pseudo
    python -m lookalike.train.parser CCP_DIR --labels labels.json --pseudo build/ccp-pseudo ...
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ImageError
from ..images import load_image
from ..look.kinds import CLASSES, KINDS, Kinds
from ..look.parser import SHIPPED, GarmentParser

IGNORE = 255


def allowed_classes(tags: list[str], kinds: Kinds) -> np.ndarray:
    """Boolean per parser class: background and person always, a garment kind only if a tag maps to it."""
    shown = {CLASSES[kinds.class_of_label(t)] for t in tags}
    return np.array([c not in KINDS or c in shown for c in CLASSES])


def pseudo_mask(probs: np.ndarray, allowed: np.ndarray, min_prob: float = 0.5) -> np.ndarray:
    """(C, h, w) parser probabilities -> (h, w) uint8 classes, disallowed kinds struck out and renormalised;
    IGNORE where the winner's probability is under `min_prob`."""
    p = probs * allowed[:, None, None]
    p = p / np.maximum(p.sum(0, keepdims=True), 1e-9)
    labels = p.argmax(0).astype(np.uint8)
    labels[p.max(0) < min_prob] = IGNORE
    return labels


def make_pseudo(ccp: Path, tags_file: Path, out: Path, parser: Path = SHIPPED, min_prob: float = 0.5,
                log=print) -> dict:
    """Write out/photos/NNNN.jpg and out/masks/NNNN.png for every tagged photo of `ccp` with no mask of its own.
    Photos that cannot be read are skipped and listed in the summary (`skipped`)."""
    tags = json.loads(tags_file.read_text())
    kinds = Kinds.load()
    model = GarmentParser(parser)
    annotated = {p.stem for p in (ccp / "masks").glob("*.png")}
    todo = sorted(n for n in tags if n not in annotated and (ccp / "photos" / f"{n}.jpg").exists())
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():                     # left by a run that died: start clean
        shutil.rmtree(tmp)
    (tmp / "photos").mkdir(parents=True)
    (tmp / "masks").mkdir()
    started, counts, ignored, skipped = time.perf_counter(), np.zeros(len(CLASSES), np.int64), 0, {}
    for name in todo:
        try:
            image = load_image(ccp / "photos" / f"{name}.jpg")
        except ImageError as e:
            skipped[name] = str(e)
            continue
        parsed = model.parse(image)
        mask = pseudo_mask(parsed.probs, allowed_classes(tags[name], kinds), min_prob)
        shutil.copyfile(ccp / "photos" / f"{name}.jpg", tmp / "photos" / f"{name}.jpg")
        Image.fromarray(mask).save(tmp / "masks" / f"{name}.png")
        counts += np.bincount(mask[mask != IGNORE].ravel(), minlength=len(CLASSES))
        ignored += int((mask == IGNORE).sum())
    summary = {"photos": len(todo) - len(skipped), "skipped": skipped, "parser": str(parser), "min_prob": min_prob,
               "pixels": {**{c: int(n) for c, n in zip(CLASSES, counts)}, "ignored": ignored},
               "minutes": round((time.perf_counter() - started) / 60, 1)}
    (tmp / "pseudo.json").write_text(json.dumps(summary, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log(f"{summary['photos']} tagged photos labelled into {out}, {len(skipped)} unreadable skipped "
        f"({summary['minutes']} min)")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ccp", type=Path, help="folder with photos/ (and masks/ of the annotated ones)")
    ap.add_argument("--tags", type=Path, required=True, help="image_tags.json: photo number -> labels shown")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--parser", type=Path, default=SHIPPED, help="parser folder (default: the shipped one)")
    ap.add_argument("--min-prob", type=float, default=0.5)
    args = ap.parse_args()
    print(json.dumps(make_pseudo(args.ccp, args.tags, args.out, args.parser, args.min_prob), indent=2))


if __name__ == "__main__":
    main()
