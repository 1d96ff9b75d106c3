"""Training end to end on small fixtures: labelled and unlabelled, export, ONNX parity, heads, resume."""

import json

import numpy as np
import pytest

from conftest import DEMO, DEMO_CSV

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")

from lookalike import Embedder, Index  # noqa: E402
from lookalike.train import safe, train  # noqa: E402
from lookalike.train.loop import TrainConfig  # noqa: E402

TINY = dict(epochs=1, batch_size=32, widths=(8, 16, 16, 32), dim=32, lr=1e-2, threads=2)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "model"
    report = train(DEMO, DEMO_CSV, out=out, config=TrainConfig(**TINY), log=lambda m: None)
    return out, report


def test_labelled_training_exports_a_model_index_accepts(labelled, tmp_path):
    out, report = labelled
    assert {"model.onnx", "model.json", "weights.safetensors", "training.json"} <= {p.name for p in out.iterdir()}
    assert report.variant in ("int8", "float32") and set(report.variants) == {"float32", "int8"}
    model = Embedder.load(str(out))
    assert list(model.heads) == ["class"] and sorted(model.heads["class"]) == sorted(p.name for p in DEMO.iterdir() if p.is_dir())
    index = Index.build(DEMO / "hat", out=tmp_path / "i.idx", model=str(out))
    hat = sorted((DEMO / "hat").glob("*.jpg"))[0]
    assert index.search(hat, k=1)[0].id == hat.stem
    log = json.loads((out / "training.json").read_text())
    assert log["history"] and log["products"] == 200 and log["variant"] == report.variant


def test_classification_gives_every_head_with_probabilities(labelled):
    model = Embedder.load(str(labelled[0]))
    predictions = model.predict(sorted(DEMO.glob("*/*.jpg"))[:3], top=10)
    for p in predictions:
        assert set(p) == set(model.heads)
        assert sum(p["class"].probs) == pytest.approx(1.0, abs=1e-3)


def test_onnx_agrees_with_pytorch(tmp_path):
    from lookalike.train.export import export_onnx
    from lookalike.train.loop import build_net
    import onnxruntime as ort

    config = TrainConfig(**TINY)
    net = build_net(config, {"a": ["x", "y", "z"], "articleType+baseColour": ["p", "q"]}, teacher_dim=None).eval()
    heads = export_onnx(net, tmp_path / "m.onnx", config)
    assert heads == ["a"]  # the training-only pair head is not exported
    x = torch.randn(4, 3, config.height, config.width)
    with torch.no_grad():
        emb, logits, pooled = net(x)
    onnx_emb, onnx_pooled, onnx_a = ort.InferenceSession(str(tmp_path / "m.onnx")).run(
        ["embedding", "pooled", "a"], {"image": x.numpy()})
    assert np.abs(onnx_emb - emb.numpy()).max() < 1e-4 and np.abs(onnx_a - logits["a"].numpy()).max() < 1e-3
    assert np.abs(onnx_pooled - pooled.numpy()).max() < 1e-4


def test_unlabelled_training_is_self_supervised(tmp_path):
    out = tmp_path / "ssl"
    report = train(DEMO / "shoes", None, out=out, config=TrainConfig(**TINY), quantize="float32", log=lambda m: None)
    model = Embedder.load(str(out))
    assert model.heads == {} and report.variant == "float32"
    vecs = model.encode(sorted((DEMO / "shoes").glob("*.jpg"))[:4])
    assert vecs.shape == (4, 32) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-4)


def test_training_resumes_from_its_checkpoint(labelled, tmp_path):
    from lookalike.train.data import load
    from lookalike.train.loop import fit

    data = load(DEMO, DEMO_CSV, labels=["class"])
    messages = []
    fit(data, tmp_path, TrainConfig(**TINY), log=messages.append)
    assert len(safe.load(tmp_path / "checkpoint.safetensors")[1]["history"]) == 1
    messages.clear()
    fit(data, tmp_path, TrainConfig(**TINY), log=messages.append)
    assert any("resuming after epoch 1" in m for m in messages)


def test_fine_tuning_starts_from_a_trained_model(labelled, tmp_path):
    out, _ = labelled
    messages = []
    train(DEMO / "hat", None, out=tmp_path / "ft", init=str(out), config=TrainConfig(**TINY), quantize="float32",
          log=messages.append)
    assert any("initialised" in m for m in messages)


def test_extra_domain_is_trained_on_and_never_held_out(tmp_path):
    from lookalike.train.data import load

    extra_csv = tmp_path / "extra.csv"
    extra_csv.write_text("id,class\n" + "".join(f"{p.stem},hat\n" for p in sorted((DEMO / "hat").glob("*.jpg"))))
    data = load(DEMO / "shoes", None, labels=[], extra=(DEMO / "hat", extra_csv))
    assert int(data.extra.sum()) == 20 and not (data.val & data.extra).any() and len(data) == 40


def test_added_blocks_start_as_the_identity_and_depth_follows_init(labelled, tmp_path):
    from lookalike.train import _init_weights
    from lookalike.train.loop import build_net

    out, _ = labelled
    weights = _init_weights(out)
    vocab = {"class": sorted(p.name for p in DEMO.iterdir() if p.is_dir())}
    shallow = build_net(TrainConfig(**TINY), vocab, None)
    deeper = build_net(TrainConfig(**TINY, blocks=(1, 2, 2, 3)), vocab, None)
    for net in (shallow, deeper):
        net.load_state_dict({k: v for k, v in weights.items() if k in net.state_dict()}, strict=False)
        net.eval()
    assert sum(p.numel() for p in deeper.parameters()) > sum(p.numel() for p in shallow.parameters())
    x = torch.randn(3, 3, 80, 64)
    with torch.no_grad():
        assert torch.allclose(shallow(x)[0], deeper(x)[0], atol=1e-5)

    deep = tmp_path / "deep"
    train(DEMO / "hat", None, out=deep, init=str(out), config=TrainConfig(**TINY, blocks=(1, 1, 2, 2)),
          quantize="float32", log=lambda m: None)
    again = tmp_path / "again"
    train(DEMO / "hat", None, out=again, init=str(deep), config=TrainConfig(**TINY), quantize="float32",
          log=lambda m: None)
    assert json.loads((again / "training.json").read_text())["config"]["blocks"] == [1, 1, 2, 2]


def test_a_widened_network_first_computes_the_same_function_and_widths_follow_init(labelled, tmp_path):
    from lookalike.errors import LookalikeError
    from lookalike.train import _init_weights
    from lookalike.train.loop import build_net

    out, _ = labelled
    weights = _init_weights(out)
    vocab = {"class": sorted(p.name for p in DEMO.iterdir() if p.is_dir())}
    wider = {**TINY, "widths": (8, 16, 24, 48)}
    narrow, wide = build_net(TrainConfig(**TINY), vocab, None), build_net(TrainConfig(**wider), vocab, None)
    assert narrow.load_grown(weights) == (len(weights), 0)
    copied, grown = wide.load_grown(weights)
    assert grown > 0 and copied + grown == len(weights)
    assert sum(p.numel() for p in wide.parameters()) > sum(p.numel() for p in narrow.parameters())
    other_labels = build_net(TrainConfig(**wider), {"class": vocab["class"] + ["zzz"]}, None)
    assert sum(other_labels.load_grown(weights)) == len(weights) - 1      # a head of other labels starts afresh
    narrow.eval(), wide.eval()
    x = torch.randn(3, 3, 80, 64)
    with torch.no_grad():
        (a, a_heads, _), (b, b_heads, _) = narrow(x), wide(x)
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(a_heads["class"], b_heads["class"], atol=1e-4)

    widened = tmp_path / "wide"
    train(DEMO / "hat", None, out=widened, init=str(out), config=TrainConfig(**wider), quantize="float32",
          log=lambda m: None)
    again = tmp_path / "again"
    train(DEMO / "hat", None, out=again, init=str(widened), config=TrainConfig(**{**TINY, "widths": None}),
          quantize="float32", log=lambda m: None)
    assert json.loads((again / "training.json").read_text())["config"]["widths"] == [8, 16, 24, 48]
    with pytest.raises(LookalikeError, match="narrower"):
        train(DEMO / "hat", None, out=tmp_path / "narrow", init=str(widened), config=TrainConfig(**TINY),
              log=lambda m: None)
    assert not (tmp_path / "narrow").exists()


def test_heads_fitted_again_read_the_pooled_features_and_blend_with_the_networks_own(labelled, tmp_path):
    from lookalike.models.pipeline import prepare
    from lookalike.train.heads import HeadsConfig, fit_heads

    base = Embedder.load(str(labelled[0]))
    assert "pooled" in [o.name for o in base.session.get_outputs()]    # every export now gives the pooled features
    fit_heads(DEMO, DEMO_CSV, init=str(labelled[0]), out=tmp_path / "m", config=HeadsConfig(epochs=2), log=lambda m: None)
    model = Embedder.load(str(tmp_path / "m"))
    assert model.manifest.heads_input == "pooled" and model.manifest.heads_blend == {"class": 0.5}
    x = np.stack([prepare(model, p)[0] for p in sorted(DEMO.glob("*/*.jpg"))[::40]])
    pooled, logits = model.run_outputs(x, ["pooled", "class"])
    own = model.probabilities([logits], len(x), ["class"])["class"]
    new = model.heads_of(pooled)["class"]
    assert np.allclose(model.run_once(x)[1]["class"], (own + new) / 2, atol=1e-5)
    assert not np.allclose(own, new, atol=1e-2)             # two different heads, so the blend is a blend
    fit_heads(DEMO, DEMO_CSV, init=str(labelled[0]), out=tmp_path / "alone", config=HeadsConfig(epochs=2, blend=0),
              log=lambda m: None)
    alone = Embedder.load(str(tmp_path / "alone"))
    assert alone.manifest.heads_blend == {} and alone.id != model.id


def test_a_head_is_never_blended_with_a_network_head_of_other_labels(labelled, tmp_path):
    from lookalike.train.heads import HeadsConfig, fit_heads

    # the same ten classes under other names: as many columns as the network's "class" output, other labels
    renamed = tmp_path / "renamed.csv"
    lines = DEMO_CSV.read_text().splitlines()
    renamed.write_text("\n".join([lines[0]] + [l.replace(",", ",x-", 1) for l in lines[1:]]) + "\n")
    first = tmp_path / "first"
    fit_heads(DEMO, renamed, init=str(labelled[0]), out=first, config=HeadsConfig(epochs=2), log=lambda m: None)
    model = Embedder.load(str(first))
    assert model.manifest.heads_blend == {} and model.heads["class"][0].startswith("x-")
    assert model.manifest.network_heads["class"] == Embedder.load(str(labelled[0])).heads["class"]
    # fitting again on the renamed model: its heads now carry the new labels, the network's output still the old
    again = tmp_path / "again"
    fit_heads(DEMO, renamed, init=str(first), out=again, config=HeadsConfig(epochs=2), log=lambda m: None)
    assert Embedder.load(str(again)).manifest.heads_blend == {}


def test_compact_weights_are_smaller_and_start_from_nearly_the_same_network(labelled, tmp_path):
    from lookalike.train import _init_weights
    from lookalike.train.loop import build_net

    out, _ = labelled
    tensors, meta = safe.load(out / "weights.safetensors")
    safe.save(tmp_path / "compact.safetensors", tensors, meta, compact=True)
    again, meta_again = safe.load(tmp_path / "compact.safetensors")
    assert meta_again == meta and set(again) == set(tensors)
    assert all(again[k].dtype == torch.float32 or again[k].dtype == tensors[k].dtype for k in tensors)
    assert (tmp_path / "compact.safetensors").stat().st_size < 0.7 * (out / "weights.safetensors").stat().st_size
    for k, v in tensors.items():
        if v.is_floating_point():
            assert torch.allclose(again[k].float(), v.float(), atol=float(v.abs().max()) / 250 + 1e-6), k
    vocab = {"class": sorted(p.name for p in DEMO.iterdir() if p.is_dir())}
    exact, compact = build_net(TrainConfig(**TINY), vocab, None), build_net(TrainConfig(**TINY), vocab, None)
    exact.load_state_dict(_init_weights(out)), compact.load_state_dict(again)
    exact.eval(), compact.eval()
    x = torch.rand(4, 3, 80, 64)
    with torch.no_grad():
        assert float((exact(x)[0] * compact(x)[0]).sum(dim=1).min()) > 0.99
