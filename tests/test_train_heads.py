"""`lookalike train --heads-only`: heads fitted on a frozen model (its pooled features or its embedding), for the
default model, for a model exported before the pooled output existed, and for an imported backbone that had none."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import DEMO, DEMO_CSV
from tests_models_helper import tiny_onnx_model

pytest.importorskip("torch", reason="fitting heads needs the train extra (torch)")

from lookalike import Embedder, Index  # noqa: E402
from lookalike.cli import app  # noqa: E402
from lookalike.errors import LookalikeError, ModelError  # noqa: E402
from lookalike.models.pipeline import prepare  # noqa: E402
from lookalike.train.data import is_validation  # noqa: E402
from lookalike.train.heads import HEADS_FILE, HeadsConfig, fit_heads  # noqa: E402

CLASSES = sorted(p.name for p in DEMO.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def on_default(tmp_path_factory):
    out = tmp_path_factory.mktemp("heads") / "demo-heads"
    report = fit_heads(DEMO, DEMO_CSV, init="default", out=out, log=report_log.append)
    return out, report


report_log: list[str] = []


def test_heads_on_the_default_model_learn_the_catalogs_own_column(on_default, tmp_path):
    out, report = on_default
    assert any("articleType" in m and "--label" in m for m in report_log)   # the user is told which heads go, and how to keep them
    model = Embedder.load(str(out))
    assert list(model.heads) == ["class"] and sorted(model.heads["class"]) == CLASSES
    # 10 classes: chance is 0.1 on the demo photos held out by id (19 of them), and the heads learn their training photos
    assert report.validation > 10 and report.top1["class"]["after"] >= 0.3
    trained = [p for p in sorted(DEMO.glob("*/*.jpg")) if not is_validation(p.stem, 0.1)][::6]
    right = [p["class"].labels[0] == photo.parent.name for p, photo in zip(model.predict(trained), trained)]
    assert sum(right) >= 0.9 * len(right)
    assert report.top1["class"]["before"] is None          # the default model has no "class" head of its own
    assert model.manifest.heads_input == "pooled"           # a lookalike model's heads read its pooled features
    index = Index.build(DEMO, DEMO_CSV, out=tmp_path / "demo.idx", model=str(out))
    hat = sorted((DEMO / "hat").glob("*.jpg"))[0]
    prediction = index.classify(hat, columns=["class"])["class"]
    assert prediction.labels[0] == "hat"
    assert model.id != Embedder.load("default").id         # an index of the default model refuses this one
    log = json.loads((out / "training.json").read_text())
    assert log["stage"] == "heads" and log["base"] == Embedder.load("default").id and log["products"] == 200


def test_a_backbone_without_heads_gets_heads_and_the_base_is_untouched(tmp_path):
    base = tiny_onnx_model(tmp_path)
    assert not base.heads
    out = tmp_path / "with-heads"
    fit_heads(DEMO, DEMO_CSV, init=str(base.folder), out=out, log=lambda m: None)
    model = Embedder.load(str(out))
    for p in model.predict(sorted(DEMO.glob("*/*.jpg"))[:3], top=10):
        assert set(p) == {"class"} and sum(p["class"].probs) == pytest.approx(1.0, abs=1e-3)
    assert model.manifest.heads_input == ""                 # an imported backbone's heads read its unit embedding
    assert not (base.folder / HEADS_FILE).exists() and not Embedder.load(str(base.folder)).heads
    assert np.allclose(model.encode(sorted(DEMO.glob("hat/*.jpg"))[:2]), base.encode(sorted(DEMO.glob("hat/*.jpg"))[:2]))


def _without_pooled_output(folder, tmp_path):
    """A copy of a lookalike model as exported before the pooled output existed."""
    import shutil

    import onnx

    from lookalike.files import sha256_file

    copy = tmp_path / "old-export"
    shutil.copytree(folder, copy)
    graph = onnx.load(str(copy / "model.onnx"))
    for output in [o for o in graph.graph.output if o.name == "pooled"]:
        graph.graph.output.remove(output)
    onnx.save(graph, str(copy / "model.onnx"))
    (copy / HEADS_FILE).unlink(missing_ok=True)             # and with the network's own heads
    manifest = json.loads((copy / "model.json").read_text())
    manifest.update(sha256=sha256_file(copy / "model.onnx"), heads_onnx=None, heads_sha256="", heads_input="",
                    heads_blend={})
    (copy / "model.json").write_text(json.dumps(manifest))
    return Embedder.load(str(copy))


def test_a_model_exported_without_pooled_features_is_exported_again_from_its_weights(tmp_path):
    old = _without_pooled_output(Embedder.load("default").folder, tmp_path)
    assert "pooled" not in [o.name for o in old.session.get_outputs()]
    messages = []
    out = tmp_path / "new"
    fit_heads(DEMO, DEMO_CSV, init=str(old.folder), out=out, log=messages.append)
    assert any("exporting its network again" in m for m in messages)
    model = Embedder.load(str(out))
    assert model.manifest.heads_input == "pooled" and "pooled" in [o.name for o in model.session.get_outputs()]
    photos = sorted(DEMO.glob("*/*.jpg"))[::25]
    x = np.stack([prepare(old, p)[0] for p in photos])
    before, after = old.run_once(x, heads=False)[0], model.run_once(x, heads=False)[0]
    assert np.all(np.sum(before * after, axis=1) > 0.98)    # the same network's embedding, up to quantization
    log = json.loads((out / "training.json").read_text())
    assert log["network_exported_again"] and log["base"] == old.id and log["config"]["features"] == "pooled"


def test_heads_on_an_output_the_model_does_not_have_are_refused_before_any_work(tmp_path):
    with pytest.raises(LookalikeError, match="no output 'logits'.*embedding"):
        fit_heads(DEMO, DEMO_CSV, init="default", out=tmp_path / "m", config=HeadsConfig(features="logits"))
    assert not (tmp_path / "m").exists()


def test_changed_heads_file_is_refused(on_default, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(on_default[0], copy)
    with open(copy / HEADS_FILE, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match="checksum"):
        Embedder.load(str(copy))


def test_cli_heads_only_needs_init_and_never_replaces_a_foreign_folder(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(DEMO), "--metadata", str(DEMO_CSV), "--heads-only", "--out", str(tmp_path / "m")])
    assert result.exit_code != 0 and "--init" in result.output and "Traceback" not in result.output
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["train", str(DEMO), "--metadata", str(DEMO_CSV), "--heads-only", "--init", "default",
                                 "--out", str(foreign)])
    assert result.exit_code != 0 and "not a model folder" in result.output
    assert (foreign / "keep.txt").read_text() == "mine" and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_heads_only_writes_a_model_search_and_classify_accept(tmp_path):
    runner = CliRunner()
    out = tmp_path / "demo-heads"
    result = runner.invoke(app, ["train", str(DEMO), "--metadata", str(DEMO_CSV), "--init", "default", "--heads-only",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "validation top-1" in result.output and "class" in result.output and "left out" in result.output
    # new heads change the search vector: default's words alignment is not carried over, and a catalog with no
    # names or known label columns has nothing to align new words from; it says so, and words get a clear error
    assert "cannot search by words" in result.output and not (out / "text.onnx").exists()
    assert not Embedder.load(str(out)).has_text
    hat = sorted((DEMO / "hat").glob("*.jpg"))[0]
    result = runner.invoke(app, ["classify", str(hat), "--model", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["predictions"][0]["class"][0]["label"] == "hat"
