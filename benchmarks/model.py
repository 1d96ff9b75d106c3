"""Model benchmark (issue 3): a trained model beside the classic embedder and the reference ImageNet
MobileNetV2, on what shoppers see.

- Catalog: validation products (held out from training by id, `lookalike.train.data.is_validation`)
  queried against the whole rest of the shared catalog: P@1 / P@10 of articleType, subCategory,
  baseColour, gender and "same articleType and colour"; for the vectors alone and for what `Index.search`
  returns by default, the vectors' 50 nearest re-ranked by label agreement (`lookalike.rerank`, queried as
  new photos: the model's prediction and the neighbours' catalog labels, never the query's own labels).
- Classification top-1 on the validation products: the model heads alone, and blended with the labels of the
  nearest other catalog products as `Index.classify` does.
- Photos unlike the catalog: leave-one-out class P@10 on clothing-demo (200 real photos, 10 classes) and on
  CCP garment crops of the held-out half of the annotated photos (garment on white, as shop-the-look cuts it).
- Embedding throughput with decoding (images/s on 2 cores), model size, training time.

Run: `python benchmarks/model.py --model build/model-v1` (default: the shipped default model).
Writes benchmarks/results/model.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

import ccp
from common import CACHE, FPI, ROOT, Reference, catalog_images, save
from lookalike import Embedder
from lookalike.catalog import Catalog
from lookalike.evaluate import evaluate, field_labels, neighbours, score
from lookalike.models.pipeline import embed_batch
from lookalike.rerank import CLASSIFY, Agreement, LabelCodes
from lookalike.train.data import is_validation

FIELDS = ["articleType", "subCategory", "baseColour", "gender", "articleType+baseColour"]
HEADS = ["articleType", "subCategory", "masterCategory", "baseColour", "gender"]
console = Console()


def catalog():
    cat = Catalog.read(catalog_images(), FPI / "styles.csv")
    ids = [p.id for p in cat.products]
    paths = [p.path for p in cat.products]
    columns = {c: [p.metadata.get(c) for p in cat.products] for c in cat.columns}
    return ids, paths, columns


def cached(name: str, ids: list[str], make) -> np.ndarray:
    path = CACHE / f"{name}.npy"
    names = CACHE / f"{name}.ids.txt"
    if path.exists() and names.exists() and names.read_text().split() == ids:
        return np.load(path)
    vectors = make()
    np.save(path, vectors)
    names.write_text("\n".join(ids))
    return vectors


def catalog_scores(vectors: np.ndarray, columns: dict, val_rows: np.ndarray, heads: dict | None = None,
                   vocab: dict | None = None, agreement: Agreement | None = None) -> dict:
    """P@k of the vectors' neighbours or, with `agreement`, of the neighbours re-ranked as `Index.search` does
    for a photo query (the model's predictions from `heads`, when given, and the neighbours' labels)."""
    if agreement is None:
        hits = neighbours(vectors, vectors[val_rows], val_rows, 10)
    else:
        pool = neighbours(vectors, vectors[val_rows], val_rows, agreement.pool)
        sims = np.einsum("qd,qkd->qk", vectors[val_rows], vectors[pool])
        codes = {c: LabelCodes(columns[c]) for c in agreement.columns}
        hits = np.empty((len(val_rows), 10), np.int64)
        for i, row in enumerate(val_rows):
            probs = {c: heads[c][row] for c in codes if c in heads} if heads else None
            hits[i] = pool[i][agreement.order_rows(pool[i], sims[i], codes, vocab, probs)[:10]]
    return {f: score(field_labels(columns, f), val_rows, hits, 10, f).to_dict() for f in FIELDS}


def classification(model, out, columns: dict, val_rows: np.ndarray, agreement: Agreement) -> tuple[dict, dict, dict]:
    """Top-1 of the model's heads, and of what `Index.classify` returns: each head's prediction blended with the
    labels of the product's `agreement.voters` nearest other catalog products (`Agreement.belief`, as there)."""
    pool = neighbours(out.vectors, out.vectors[val_rows], val_rows, agreement.voters)
    sims = np.einsum("qd,qkd->qk", out.vectors[val_rows], out.vectors[pool])
    heads, blended, top2 = {}, {}, {}
    for head in HEADS:
        if head not in out.heads:
            continue
        codes = LabelCodes(columns[head])
        truth = codes.rows[val_rows]
        known = truth >= 0
        vocab = np.array(model.heads[head])
        names = np.array(codes.values + [None], dtype=object)[truth]
        heads[head] = round(float((vocab[out.heads[head][val_rows].argmax(1)] == names)[known].mean()), 4)
        two = np.argsort(-out.heads[head][val_rows], axis=1)[:, :2]
        top2[head] = round(float(((vocab[two[:, 0]] == names) | (vocab[two[:, 1]] == names))[known].mean()), 4)
        best = np.empty(len(val_rows), np.int64)
        for i, row in enumerate(val_rows):
            best[i] = agreement.belief(sims[i], codes, pool[i], model.heads[head], out.heads[head][row]).argmax()
        blended[head] = round(float((best == truth)[known].mean()), 4)
    return heads, blended, top2


def photo_sets():
    demo = sorted((ROOT / "examples" / "catalog").glob("*/*.jpg"))
    crops = ccp.garment_crops("test", masked=True)
    return ([(p, p.parent.name) for p in demo], [(c.image, c.label) for c in crops])


def photo_scores(embed, sets) -> dict:
    out = {}
    for name, items in zip(("demo_photos", "ccp_crops"), sets):
        vecs = embed([x for x, _ in items])
        out[name] = evaluate(vecs, {"class": [y for _, y in items]}, ["class"], k=10)[0].to_dict()
        out[name]["classes"] = len({y for _, y in items})
    return out


def raw_imagenet(variant: str, size: tuple[int, int]) -> Embedder:
    """The plain ImageNet EfficientNet-Lite `variant` (no fashion training): average-pooled 1280-d features of its
    last map, at `size` (the fine-tuned model's input, padded on white), exported to ONNX in the benchmark cache."""
    import warnings

    import torch

    from lookalike.files import sha256_file
    from lookalike.models.manifest import MANIFEST, EmbeddingSpec, InputSpec, ModelManifest
    from lookalike.train.effnet import MEAN, STD, load_imagenet

    folder = CACHE / f"raw-{variant}-{size[0]}x{size[1]}"
    if not (folder / MANIFEST).exists():
        folder.mkdir(parents=True, exist_ok=True)
        net, _, _ = load_imagenet(variant)

        class Pooled(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, x):
                return self.net.features(x).mean(dim=(2, 3))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(Pooled().eval(), (torch.zeros(2, 3, size[1], size[0]),), str(folder / "model.onnx"),
                              input_names=["image"], output_names=["features"], opset_version=17, dynamo=False,
                              dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}})
        manifest = ModelManifest(name=f"imagenet-{variant}-{size[0]}x{size[1]}", sha256=sha256_file(folder / "model.onnx"),
                                 dim=1280, input=InputSpec(name="image", width=size[0], height=size[1], mean=MEAN, std=STD),
                                 embedding=EmbeddingSpec(output="features"))
        (folder / MANIFEST).write_text(manifest.to_json())
    return Embedder.load(str(folder))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--raw", help="also measure this ImageNet backbone's plain features at the model's input "
                                      "size, e.g. lite0 (needs the train extra)")
    parser.add_argument("--also", action="append", default=[], help="another model to measure in the same run "
                                                                    "(e.g. the previous default's folder)")
    args = parser.parse_args()
    model = Embedder.load(args.model)
    ids, paths, columns = catalog()
    val_rows = np.array([i for i, pid in enumerate(ids) if is_validation(pid, 0.1)])
    console.print(f"{len(ids):,} products, {len(val_rows):,} validation queries; model {model.id}")
    sets = photo_sets()
    results: dict = {"model": model.id, "validation_queries": int(len(val_rows)), "catalog": {}, "photos": {},
                     "catalog_search": {}}
    agreement = Agreement()

    def encoder(m):
        return lambda items: embed_batch(m, list(enumerate(items))).vectors

    start = time.perf_counter()
    out = embed_batch(model, list(enumerate(paths)), with_heads=bool(model.heads))
    seconds = time.perf_counter() - start
    results["embed_images_per_s"] = round(len(paths) / seconds, 1)
    results["catalog"][model.id] = catalog_scores(out.vectors, columns, val_rows)
    results["catalog_search"][model.id] = catalog_scores(out.vectors, columns, val_rows, out.heads, model.heads,
                                                         agreement)
    results["photos"][model.id] = photo_scores(encoder(model), sets)
    if model.heads:
        results["classification_top1"], results["classification_top1_catalog"], results["classification_top2"] = \
            classification(model, out, columns, val_rows, CLASSIFY)
    onnx = getattr(model, "folder", None)
    if onnx:
        files = [model.manifest.onnx] + ([model.manifest.heads_onnx] if model.manifest.heads_onnx else [])
        results["model_megabytes"] = round(sum((Path(onnx) / f).stat().st_size for f in files) / 1e6, 2)
        training = Path(onnx) / "training.json"
        if training.exists():
            t = json.loads(training.read_text())
            results["training_minutes"] = round(t["seconds"] / 60, 1)
            results["training_command"] = t.get("command")

    others = [Embedder.load(m) for m in args.also]
    if args.raw:
        others.append(raw_imagenet(args.raw, model.input_size))
    for other in others:
        out_o = embed_batch(other, list(enumerate(paths)), with_heads=bool(other.heads))
        results["catalog"][other.id] = catalog_scores(out_o.vectors, columns, val_rows)
        results["catalog_search"][other.id] = catalog_scores(out_o.vectors, columns, val_rows,
                                                             out_o.heads if other.heads else None,
                                                             other.heads if other.heads else None, agreement)
        results["photos"][other.id] = photo_scores(encoder(other), sets)

    classic = Embedder.load("classic")
    classic_vecs = cached("classic-fpi", ids, lambda: embed_batch(classic, list(enumerate(paths))).vectors)
    results["catalog"]["classic-v1"] = catalog_scores(classic_vecs, columns, val_rows)
    results["catalog_search"]["classic-v1"] = catalog_scores(classic_vecs, columns, val_rows, agreement=agreement)
    results["photos"]["classic-v1"] = photo_scores(encoder(classic), sets)
    if not args.no_reference:
        ref = Reference()
        ref_vecs = cached("reference-fpi", ids, lambda: ref.embed_paths(paths))
        results["catalog"][ref.name] = catalog_scores(ref_vecs, columns, val_rows)
        results["catalog_search"][ref.name] = catalog_scores(ref_vecs, columns, val_rows, agreement=agreement)

        def ref_embed(items):
            from lookalike.images import load_image
            return np.stack([ref.embed_image(load_image(x)) for x in items])

        results["photos"][ref.name] = photo_scores(ref_embed, sets)
    path = save("model", results)
    report(results)
    console.print(f"written to {path}")


def report(res: dict) -> None:
    t = Table(title="validation products vs the rest of the catalog: P@10 (P@1); photos: class P@10 (P@1)")
    t.add_column("model")
    for f in FIELDS:
        t.add_column(f, justify="right")
    t.add_column("demo photos", justify="right")
    t.add_column("CCP crops", justify="right")
    rows = [(name, scores, res["photos"].get(name, {})) for name, scores in res["catalog"].items()]
    rows += [(f"{name} + agreement (search)", scores, {}) for name, scores in res.get("catalog_search", {}).items()]
    for name, scores, ph in rows:
        t.add_row(name, *(f"{scores[f]['P@10']:.3f} ({scores[f]['P@1']:.2f})" for f in FIELDS),
                  *(f"{ph[s]['P@10']:.3f} ({ph[s]['P@1']:.2f})" if s in ph else "-" for s in ("demo_photos", "ccp_crops")))
    t.add_row("target", "0.88", "", "0.70", "0.93", "0.62", ">= raw ImageNet + 0.05", ">= raw ImageNet + 0.05")
    Console().print(t)
    if "classification_top1" in res:
        c = Table(title="classification top-1 on validation products")
        targets = {"articleType": 0.88, "subCategory": 0.95, "masterCategory": 0.98, "gender": 0.93, "baseColour": 0.70}
        c.add_column("head")
        c.add_column("model heads", justify="right")
        c.add_column("with catalog neighbours (Index.classify)", justify="right")
        c.add_column("model heads, top-2", justify="right")
        c.add_column("target", justify="right")
        blended = res.get("classification_top1_catalog", {})
        top2 = res.get("classification_top2", {})
        for head, acc in res["classification_top1"].items():
            cell = f"{blended[head]:.3f}" if head in blended else "-"
            c.add_row(head, f"{acc:.3f}", cell, f"{top2[head]:.3f}" if head in top2 else "-", f"{targets.get(head, '')}")
        Console().print(c)
    Console().print(f"embedding with decoding: {res['embed_images_per_s']:.0f} images/s; "
                    f"model {res.get('model_megabytes', '-')} MB; training {res.get('training_minutes', '-')} min")


if __name__ == "__main__":
    main()
