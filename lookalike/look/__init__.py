"""Shop the look: find each garment in a photo of a person, and similar catalog products per garment.

    from lookalike import Index
    look = Index.load("catalog.idx").look("outfit.jpg", k=6)
    for g in look.garments: print(g.kind, g.box, [r.id for r in g.results])
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from ..images import ImageSource, load_image
from ..search import Result
from .kinds import KINDS, Kinds
from .parser import GarmentParser, Parsed, Region
from .person import PersonDetector

GENDER_BONUS = 0.03     # soft gender filter: a re-ranking nudge, not an exclusion
PERSON_SURE = 0.6       # the person's gender is used when its share of the garments' gender probability is this
VIEW_PAD = 0.25         # the parser's view: the body keypoints' box padded by this share of its longer side
VIEW_MIN_ZOOM = 1.5     # ... used only when the parser then sees the person at least this much larger
PLURAL = {"top": "tops", "bottom": "bottoms", "one-piece": "one-pieces", "footwear": "shoes", "bag": "bags"}
_parser: GarmentParser | None = None
_person: PersonDetector | None = None


@dataclass
class Garment:
    kind: str                                    # top, bottom, one-piece, footwear, bag, or product (no person)
    box: tuple[int, int, int, int]               # x0, y0, x1, y1 in the photo's pixels, as displayed
    score: float
    attributes: dict = field(default_factory=dict)   # head -> {"label", "p"}
    results: list[Result] = field(default_factory=list)
    crop: Image.Image | None = None
    note: str | None = None                      # why there are no results, e.g. "no bags in this catalog"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "box": list(self.box), "score": self.score, "attributes": self.attributes,
                "results": [r.to_dict() for r in self.results], "note": self.note}


@dataclass
class Look:
    image: str
    size: tuple[int, int]
    full_shot: bool
    garments: list[Garment]
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"image": self.image, "size": list(self.size), "full_shot": self.full_shot,
                "garments": [g.to_dict() for g in self.garments]}


def garment_parser() -> GarmentParser:
    global _parser
    if _parser is None:
        _parser = GarmentParser()
    return _parser


def person_detector() -> PersonDetector:
    global _person
    if _person is None:
        _person = PersonDetector()
    return _person


def garment_crop(image: Image.Image, parsed: Parsed | None, region: Region, margin: float = 0.06) -> Image.Image:
    """The garment cut out on white, like a catalog photo: its box (with a margin), pixels of other classes
    whitened through the parser mask (upsampled and softened). Without a parse (a detector's box), the box."""
    x0, y0, x1, y1 = region.box
    mx, my = int((x1 - x0) * margin), int((y1 - y0) * margin)
    box = (max(0, x0 - mx), max(0, y0 - my), min(image.width, x1 + mx), min(image.height, y1 + my))
    if parsed is None:
        return image.crop(box)
    mask = Image.fromarray((parsed.mask(region.kind) * 255).astype(np.uint8)).resize(image.size, Image.BILINEAR)
    mask = mask.filter(ImageFilter.MaxFilter(5)).filter(ImageFilter.GaussianBlur(2)).crop(box)
    white = Image.new("RGB", mask.size, (255, 255, 255))
    return Image.composite(image.crop(box), white, mask)


def person_view(size: tuple[int, int], body: tuple[int, int, int, int], parser_size: tuple[int, int]
                ) -> tuple[int, int, int, int] | None:
    """The part of the photo around the person (body keypoints padded for hair, sleeves, hems, shoes and a bag in
    hand), so the parser sees a small or off-centre person, or a wide half-body shot, at its full resolution.
    None when the parser would see the person hardly larger than in the whole photo (a portrait full shot)."""
    w, h = size
    pad = VIEW_PAD * max(body[2] - body[0], body[3] - body[1])
    view = (max(0, int(body[0] - pad)), max(0, int(body[1] - pad)), min(w, int(body[2] + pad)), min(h, int(body[3] + pad)))
    pw, ph = parser_size
    zoom = min(pw / max(1, view[2] - view[0]), ph / max(1, view[3] - view[1])) / min(pw / w, ph / h)
    return view if zoom >= VIEW_MIN_ZOOM else None


def find_garments(image: Image.Image, body: tuple[int, int, int, int], parser: GarmentParser | None = None
                  ) -> list[tuple[Region, Image.Image]]:
    """Each garment the parser finds in the person's part of the photo: its region (box in photo pixels) and its
    cut-out on white."""
    p = parser or garment_parser()
    view = person_view(image.size, body, (p.width, p.height))
    part = image.crop(view) if view else image
    parsed = p.parse(part)
    found = [(r, garment_crop(part, parsed, r)) for r in p.regions(parsed, p.min_score)]
    if view:
        found = [(replace(r, box=(r.box[0] + view[0], r.box[1] + view[1], r.box[2] + view[0], r.box[3] + view[1])), c)
                 for r, c in found]
    return found


def look(index, source: ImageSource, k: int = 6, *, name: str | None = None, kinds: Kinds | None = None,
         gender_filter: str = "soft", with_crops: bool = False, detector=None,
         parser: GarmentParser | None = None) -> Look:
    """Garments of the person in `source` with `k` similar catalog products each. A person is found by
    MediaPipe's pose model (full shot: face and feet visible); garments by `parser` (default: the shipped one)
    or, when given, by `detector`. A photo with no person (a product shot) is searched whole, as one product
    (kind "product")."""
    started = time.perf_counter()
    kinds = kinds or Kinds.load()
    image = load_image(source, name=name)
    label = name or (str(source) if isinstance(source, (str, Path)) else "<upload>")
    person = person_detector().detect(image)
    if person and detector is not None:
        regions = detector.regions(image)
        crops = [garment_crop(image, None, r) for r in regions]
    elif person:
        found = find_garments(image, person.box, parser)
        regions, crops = [r for r, _ in found], [c for _, c in found]
    else:
        regions = []
    model = index.model
    if not regions:
        vectors, probs = _embed(model, [image])
        results, attrs = index.search(vectors[0], k=k), _attributes(model, probs, 0)
        g = Garment("product", (0, 0, image.width, image.height), 1.0, attrs, results, image if with_crops else None)
        return Look(label, image.size, False, [g], time.perf_counter() - started)
    vectors, probs = _embed(model, crops)
    gender, gender_p = _person_gender(model, probs)
    garments = []
    narrowable = any(kinds.filter_for(k, index.columns, index.facets) is not None for k in KINDS)
    for i, (region, crop, vec) in enumerate(zip(regions, crops, vectors)):
        where = kinds.filter_for(region.kind, index.columns, index.facets)
        attrs = _attributes(model, probs, i, _values_of_kind(index, where, model.heads))
        if gender:      # every garment takes the person's gender; unsure of the person, none shows one
            attrs["gender"] = {"label": gender, "p": gender_p}
        else:
            attrs.pop("gender", None)
        if where is None and narrowable:    # the catalog tells kinds apart and has none of this one
            garments.append(Garment(region.kind, region.box, region.score, attrs, [], crop if with_crops else None,
                                    note=f"no {PLURAL.get(region.kind, region.kind)} in this catalog"))
            continue
        results = index.search(vec, k=k * 3 if gender and gender_filter == "soft" else k, where=where)
        if gender and "gender" in index.columns and gender_filter == "soft":
            results = sorted(results, key=lambda r: -(r.score + (GENDER_BONUS if r.metadata.get("gender") in
                                                                 (gender, "Unisex") else 0)))[:k]
        elif gender and "gender" in index.columns and gender_filter == "strict":
            results = index.search(vec, k=k, where={**(where or {}), "gender": [gender, "Unisex"]})
        garments.append(Garment(region.kind, region.box, region.score, attrs, results[:k], crop if with_crops else None))
    return Look(label, image.size, person.full_shot, garments, time.perf_counter() - started)


def _embed(model, crops) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Vectors and head probabilities of the crops from one pass of the model."""
    from ..models.pipeline import embed_batch

    out = embed_batch(model, list(enumerate(crops)), skip_errors=False, with_heads=bool(model.heads))
    return out.vectors, out.heads


def _attributes(model, probs: dict[str, np.ndarray], row: int, allowed: dict[str, set] | None = None) -> dict:
    """A garment's top label per head, shown only when the model is confident of it (`CONFIDENT`). `allowed`: per
    head, the values the catalog has for products of the garment's kind, so a bottom is never called "Tshirts" (the
    best allowed label, with its own probability: no renormalising into false confidence). `gender`: the person's,
    which every garment takes."""
    from ..models.base import CONFIDENT

    out = {}
    for head, p in probs.items():
        labels = model.heads[head]
        order = list(np.argsort(-p[row]))
        if allowed and allowed.get(head):
            order = [j for j in order if labels[j] in allowed[head]]
        if order and p[row][order[0]] >= CONFIDENT:
            out[head] = {"label": labels[order[0]], "p": round(float(p[row][order[0]]), 4)}
    return out


def _values_of_kind(index, where: dict | None, heads: dict) -> dict[str, set] | None:
    """Per head that is a column of the index, the values its products of this kind have."""
    if not where:
        return None
    rows = index._allowed(where)           # cached per filter by the index: no query per garment per request
    out = {}
    for head in heads:
        if head in index.columns and head != "gender":
            column = index._label_codes(head)
            out[head] = {column.values[c] for c in np.unique(column.rows[rows]) if c >= 0}
    return out


def _person_gender(model, probs: dict[str, np.ndarray]) -> tuple[str | None, float]:
    """The person's gender and its share: the garments' gender probabilities summed, when one value then takes
    at least `PERSON_SURE` of them (the model is sure); "Unisex" is no answer about a person."""
    if "gender" not in probs or not len(probs["gender"]):
        return None, 0.0
    labels = model.heads["gender"]
    total = probs["gender"].sum(axis=0)
    keep = [j for j, l in enumerate(labels) if l != "Unisex"]
    if not keep or total.sum() <= 0:
        return None, 0.0
    best = max(keep, key=lambda j: total[j])
    share = float(total[best] / total.sum())
    return (labels[best], round(share, 4)) if share >= PERSON_SURE else (None, 0.0)
