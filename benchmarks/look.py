"""Shop-the-look benchmark (issue 5) on the Clothing Co-Parsing annotated photos.

- Localisation, as `Index.look` does it (MediaPipe finds the person, the parser reads the part of the photo
  around them): per garment group (top, bottom, one-piece, footwear, bag; a group's true box = extent of its
  labels' pixels), recall at IoU >= 0.5 and mean IoU; false garments per photo (a predicted group the photo
  does not have). On the photos the parser never trained on (its manifest's `holdout`: the odd half, or the
  photos numbered 1 mod 4; for an ensemble, those no member trained on), on all 600 for reference, and on the
  upper half of each held-out photo (a half-body shot: truth boxes cut to what is left in view; a garment
  counts there when at least half of its pixels are in view, so the waistband of trousers cut off at the hips is
  neither to be found nor a false garment when it is).
- Street-to-shop: true garment crops (on white) whose label maps to a catalog articleType, searched among the
  catalog products of their kind (`Index.search`, so with its agreement re-ranking): P@10 of articleType and
  subCategory, beside the reference ImageNet features of the same crops against the reference features of
  the catalog, in plain similarity order and with the same re-ranking.
- Time per photo on 2 cores for photos with 3+ garments (model load excluded).

Run after benchmarks/core.py (uses its 35k index): python benchmarks/look.py
A parser being trained (`python -m lookalike.train.parser ... --out build/parser-x`) is measured in its place with
`--parser build/parser-x`; `--localisation-only` skips street-to-shop (which does not depend on the parser).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

import ccp
from common import CACHE, Reference, save
from lookalike import Index
from lookalike.look import find_garments, person_detector
from lookalike.look import garment_parser as get_parser
from lookalike.look.kinds import KINDS, Kinds
from lookalike.look.parser import EDGE_SLIVER, MIN_AREA, MIN_SCORE, GarmentParser
from lookalike.rerank import Agreement, LabelCodes

console = Console()


IN_VIEW = 0.5     # share of a garment's pixels left in a half-body crop for it to count as shown there


def truth_garments(mask: np.ndarray, names: list[str], kinds: Kinds) -> dict[str, tuple[tuple, int]]:
    """Each garment group with at least ccp.MIN_PIXELS pixels: (box, pixels)."""
    out = {}
    for kind in KINDS:
        values = [i for i, n in enumerate(names) if n in kinds.parts[kind]]
        ys, xs = np.nonzero(np.isin(mask, values))
        if len(xs) >= ccp.MIN_PIXELS:
            out[kind] = ((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), len(xs))
    return out


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def localisation(numbers: list[int], p: GarmentParser, upper: float = 1.0) -> dict:
    """`upper` < 1 keeps only that top fraction of each photo (and of its mask): a half-body shot."""
    names, kinds = ccp.labels(), Kinds.load()
    hits = {k: [] for k in KINDS}
    false = 0
    for n in numbers:
        mask = np.asarray(Image.open(ccp.root() / "masks" / f"{n:04d}.png"))
        photo = Image.open(ccp.root() / "photos" / f"{n:04d}.jpg").convert("RGB")
        whole = truth_garments(mask, names, kinds)
        if upper < 1.0:
            keep = round(photo.height * upper)
            mask, photo = mask[:keep], photo.crop((0, 0, photo.width, keep))
        shown = truth_garments(mask, names, kinds)
        truth = {k: box for k, (box, pixels) in shown.items() if pixels >= IN_VIEW * whole[k][1]}
        person = person_detector().detect(photo)
        predicted = {r.kind: r.box for r, _ in find_garments(photo, person.box, p)} if person else {}
        for kind, box in truth.items():
            hits[kind].append(iou(box, predicted[kind]) if kind in predicted else 0.0)
        false += sum(1 for kind in predicted if kind not in shown)
    return {"photos": len(numbers), "false_per_photo": round(false / len(numbers), 3),
            **{k: {"n": len(v), "recall@0.5": round(float(np.mean([x >= 0.5 for x in v])), 3) if v else None,
                   "mean_iou": round(float(np.mean(v)), 3) if v else None} for k, v in hits.items()}}


def street_to_shop(index: Index, ref: Reference | None) -> dict:
    """Ground-truth garment crops searched in the catalog. The crops come from the odd-numbered photos because
    the default embedding model trained on the even half's crops (its second domain); the parser's own held-out
    photos (`GarmentParser.never_saw`) do not matter here, since the crops are cut by the true masks."""
    kinds = Kinds.load()
    crops = [c for c in ccp.garment_crops("test", masked=True) if c.label in ccp.TO_CATALOG]
    kind_of = {label: kind for kind, parts in kinds.parts.items() for label in parts}
    article = index.meta.column("articleType")
    sub = index.meta.column("subCategory")
    row = {pid: i for i, pid in enumerate(index.ids)}
    ours = {"articleType": [], "subCategory": []}
    theirs = {"articleType": [], "subCategory": []}
    agreeing = {"articleType": [], "subCategory": []}
    agreement = Agreement()
    codes = {c: LabelCodes(index.meta.column(c)) for c in agreement.columns if c in index.columns}
    ref_vectors = None
    if ref is not None:
        cached = CACHE / "reference-fpi.npy"
        names = (CACHE / "reference-fpi.ids.txt").read_text().split()
        ref_vectors = np.load(cached)[[names.index(pid) for pid in index.ids]] if names != index.ids else np.load(cached)
    vectors = index.model.encode([c.image for c in crops])
    for crop, vec in zip(crops, vectors):
        want_type, want_sub, _ = ccp.TO_CATALOG[crop.label]
        where = kinds.filter_for(kind_of.get(crop.label, ""), index.columns, index.facets)
        results = index.search(vec, k=10, where=where)
        ours["articleType"].append(np.mean([article[row[r.id]] == want_type for r in results]))
        ours["subCategory"].append(np.mean([sub[row[r.id]] == want_sub for r in results]))
        if ref_vectors is not None:
            allowed = index.meta.rows_where(where) if where else np.arange(len(index))
            q = ref.embed_image(crop.image)
            scores = ref_vectors[allowed] @ q
            nearest = np.argsort(-scores)[:agreement.pool]
            top = allowed[nearest[:10]]
            theirs["articleType"].append(np.mean([article[r] == want_type for r in top]))
            theirs["subCategory"].append(np.mean([sub[r] == want_sub for r in top]))
            # the same agreement re-ranking as Index.search gives a query vector (neighbours' labels only)
            pool = allowed[nearest]
            top = pool[agreement.order_rows(pool, scores[nearest], codes)[:10]]
            agreeing["articleType"].append(np.mean([article[r] == want_type for r in top]))
            agreeing["subCategory"].append(np.mean([sub[r] == want_sub for r in top]))
    out = {"crops": len(crops), "lookalike": {k: round(float(np.mean(v)), 3) for k, v in ours.items()}}
    if theirs["articleType"]:
        out["reference"] = {k: round(float(np.mean(v)), 3) for k, v in theirs.items()}
        out["reference_agreement"] = {k: round(float(np.mean(v)), 3) for k, v in agreeing.items()}
    return out


def timing(index: Index, numbers: list[int], parser: GarmentParser) -> dict:
    times, garments = [], []
    index.look(ccp.root() / "photos" / f"{numbers[0]:04d}.jpg", parser=parser)  # warm-up (model load excluded)
    for n in numbers:
        start = time.perf_counter()
        result = index.look(ccp.root() / "photos" / f"{n:04d}.jpg", k=6, parser=parser)
        times.append(time.perf_counter() - start)
        garments.append(len(result.garments))
    times, garments = np.array(times) * 1000, np.array(garments)
    three = times[garments >= 3]
    return {"photos": len(numbers), "p50_ms": round(float(np.percentile(times, 50)), 1),
            "p50_ms_3plus_garments": round(float(np.percentile(three, 50)), 1) if len(three) else None,
            "p95_ms": round(float(np.percentile(times, 95)), 1), "mean_garments": round(float(garments.mean()), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parser", type=Path, help="a parser folder (parser.json) instead of the shipped one")
    ap.add_argument("--localisation-only", action="store_true", help="skip street-to-shop and timing")
    args = ap.parse_args()
    parser = GarmentParser(args.parser) if args.parser else get_parser()
    everything = ccp.annotated()
    test = [n for n in everything if parser.never_saw(n)]
    if not test:
        raise SystemExit("this parser trained on every annotated photo: no held-out photos to measure it on")
    results = {"parser": [m["sha256"][:12] for m in parser.manifest.get("members") or [parser.manifest]],
               "parser_settings": {"flip": bool(parser.manifest.get("flip")), "min_score": parser.min_score,
                                   "default_min_score": MIN_SCORE, "min_area": MIN_AREA, "edge_sliver": EDGE_SLIVER},
               "heldout_photos": len(test), "localisation_heldout": localisation(test, parser),
               "localisation_all600": localisation(everything, parser),
               "localisation_upper_half": localisation(test, parser, upper=0.5)}
    if not args.localisation_only:
        index = Index.load(CACHE / "fpi-default-flat.idx")
        results.update(model=index.manifest["model"]["id"], street_to_shop=street_to_shop(index, Reference()),
                       timing=timing(index, test[:80], parser))
    if not args.parser and not args.localisation_only:
        save("look", results)     # the README's figures are the shipped parser's
    t = Table(title=f"shop the look: localisation on CCP ({len(test)} held-out photos / all 600 / upper half of the "
                    "held-out photos)")
    for c in ("group", "garments", "recall@IoU0.5", "mean IoU", "target"):
        t.add_column(c, justify="right" if c != "group" else "left")
    targets = {"top": ">= 0.85", "bottom": ">= 0.85", "footwear": ">= 0.75", "one-piece": ">= 0.80", "bag": ""}
    runs = [results[f"localisation_{r}"] for r in ("heldout", "all600", "upper_half")]
    for k in KINDS:
        t.add_row(k, " / ".join(str(r[k]["n"]) for r in runs), " / ".join(str(r[k]["recall@0.5"]) for r in runs),
                  " / ".join(str(r[k]["mean_iou"]) for r in runs), targets[k])
    t.add_row("false garments / photo", "", " / ".join(str(r["false_per_photo"]) for r in runs), "", "")
    Console().print(t)
    if args.localisation_only:
        return
    s = results["street_to_shop"]
    u = Table(title=f"street-to-shop: {s['crops']} true garment crops of held-out photos, P@10 among their kind")
    for c in ("features", "articleType", "subCategory", "target"):
        u.add_column(c)
    u.add_row(results["model"], str(s["lookalike"]["articleType"]), str(s["lookalike"]["subCategory"]), "subCategory >= 0.85")
    if "reference" in s:
        u.add_row("reference MobileNetV2 (ImageNet)", str(s["reference"]["articleType"]), str(s["reference"]["subCategory"]), "")
        u.add_row("reference, with agreement re-ranking", str(s["reference_agreement"]["articleType"]),
                  str(s["reference_agreement"]["subCategory"]), "")
    Console().print(u)
    tm = results["timing"]
    Console().print(f"time per photo: p50 {tm['p50_ms']} ms, {tm['p50_ms_3plus_garments']} ms with 3+ garments "
                    f"(target <= 250), p95 {tm['p95_ms']} ms; {tm['mean_garments']} garments per photo")


if __name__ == "__main__":
    main()
