"""Clothing Co-Parsing (../shared/data/clothing-co-parsing): garment crops and background patches.

Photos with even numbers are the training half (backgrounds, and garment crops if a model trains on them);
odd numbers are held out for measuring. Run as a script to write training material from the even half:
    python benchmarks/ccp.py backgrounds OUT_DIR     # scene patches with no person
    python benchmarks/ccp.py crops OUT_DIR           # garment crops on white + crops.csv (catalog labels)
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from common import SHARED, extracted

CCP = SHARED / "data" / "clothing-co-parsing"
MIN_PIXELS = 1500
#: CCP garment labels kept as classes for cross-domain measurement (single garments, enough examples).
GARMENTS = {"t-shirt", "shirt", "blouse", "top", "sweater", "cardigan", "jacket", "coat", "blazer", "dress", "jeans",
            "pants", "shorts", "skirt", "leggings", "heels", "shoes", "boots", "sneakers", "sandals", "bag", "purse",
            "hat", "vest", "sweatshirt", "jumper", "flats", "wedges", "pumps", "loafers", "hoodie", "romper"}


#: CCP garment label -> (articleType, subCategory, masterCategory) of the Kaggle catalog.
TO_CATALOG = {
    "t-shirt": ("Tshirts", "Topwear", "Apparel"), "shirt": ("Shirts", "Topwear", "Apparel"),
    "blouse": ("Tops", "Topwear", "Apparel"), "top": ("Tops", "Topwear", "Apparel"),
    "sweater": ("Sweaters", "Topwear", "Apparel"), "jumper": ("Sweaters", "Topwear", "Apparel"),
    "cardigan": ("Sweaters", "Topwear", "Apparel"), "sweatshirt": ("Sweatshirts", "Topwear", "Apparel"),
    "hoodie": ("Sweatshirts", "Topwear", "Apparel"), "jacket": ("Jackets", "Topwear", "Apparel"),
    "coat": ("Jackets", "Topwear", "Apparel"), "blazer": ("Blazers", "Topwear", "Apparel"),
    "dress": ("Dresses", "Dress", "Apparel"), "jeans": ("Jeans", "Bottomwear", "Apparel"),
    "pants": ("Trousers", "Bottomwear", "Apparel"), "leggings": ("Leggings", "Bottomwear", "Apparel"),
    "shorts": ("Shorts", "Bottomwear", "Apparel"), "skirt": ("Skirts", "Bottomwear", "Apparel"),
    "heels": ("Heels", "Shoes", "Footwear"), "pumps": ("Heels", "Shoes", "Footwear"),
    "wedges": ("Heels", "Shoes", "Footwear"), "flats": ("Flats", "Shoes", "Footwear"),
    "loafers": ("Casual Shoes", "Shoes", "Footwear"), "shoes": ("Casual Shoes", "Shoes", "Footwear"),
    "sneakers": ("Casual Shoes", "Shoes", "Footwear"), "boots": ("Casual Shoes", "Shoes", "Footwear"),
    "sandals": ("Sandals", "Sandal", "Footwear"), "bag": ("Handbags", "Bags", "Accessories"),
    "purse": ("Handbags", "Bags", "Accessories"), "hat": ("Caps", "Headwear", "Accessories"),
}


@dataclass
class Crop:
    photo: int
    label: str
    box: tuple[int, int, int, int]
    image: Image.Image          # the garment on white (mask applied), cropped to its box


def root() -> Path:
    return extracted(CCP / "ccp.tar.gz", "ccp")


def labels() -> list[str]:
    return json.loads((CCP / "labels.json").read_text())["labels"]


def annotated(split: str | None = None) -> list[int]:
    nums = sorted(int(p.stem) for p in (root() / "masks").glob("*.png"))
    if split == "train":
        return [n for n in nums if n % 2 == 0]
    if split == "test":
        return [n for n in nums if n % 2 == 1]
    return nums


def garment_crops(split: str = "test", masked: bool = True) -> list[Crop]:
    names = labels()
    out = []
    for n in annotated(split):
        photo = Image.open(root() / "photos" / f"{n:04d}.jpg").convert("RGB")
        mask = np.asarray(Image.open(root() / "masks" / f"{n:04d}.png"))
        for value in np.unique(mask):
            name = names[value]
            if name not in GARMENTS:
                continue
            ys, xs = np.nonzero(mask == value)
            if len(xs) < MIN_PIXELS:
                continue
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            if masked:
                arr = np.asarray(photo).copy()
                arr[mask != value] = 255
                crop = Image.fromarray(arr).crop(box)
            else:
                crop = photo.crop(box)
            out.append(Crop(n, name, box, crop))
    return out


def write_backgrounds(folder: Path, size: int = 96, per_photo: int = 6, seed: int = 0) -> int:
    """Square patches of training-half photos that hold no person (mask label 0 on >= 97% of pixels)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for n in annotated("train"):
        photo = Image.open(root() / "photos" / f"{n:04d}.jpg").convert("RGB")
        mask = np.asarray(Image.open(root() / "masks" / f"{n:04d}.png"))
        h, w = mask.shape
        for _ in range(per_photo * 5):
            side = int(rng.integers(60, min(h, w) // 2))
            x0, y0 = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
            if (mask[y0:y0 + side, x0:x0 + side] == 0).mean() >= 0.97:
                photo.crop((x0, y0, x0 + side, y0 + side)).resize((size, size)).save(folder / f"{n:04d}-{count}.jpg")
                count += 1
                if count % per_photo == 0:
                    break
    return count


def write_crops(folder: Path, split: str = "train") -> int:
    """Garment crops (on white) of one half, as photos + crops.csv with catalog labels: a second training
    domain of real photos for `lookalike train --extra`."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["id,articleType,subCategory,masterCategory,ccpLabel"]
    for i, crop in enumerate(garment_crops(split, masked=True)):
        if crop.label not in TO_CATALOG:
            continue
        pid = f"ccp{crop.photo:04d}-{crop.label}-{i}"
        crop.image.save(folder / f"{pid}.jpg", quality=92)
        rows.append(",".join([pid, *TO_CATALOG[crop.label], crop.label]))
    (folder / "crops.csv").write_text("\n".join(rows) + "\n")
    return len(rows) - 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "backgrounds":
        print(write_backgrounds(Path(sys.argv[2])), "background patches written")
    elif len(sys.argv) == 3 and sys.argv[1] == "crops":
        print(write_crops(Path(sys.argv[2])), "garment crops written")
    else:
        sys.exit(__doc__)
