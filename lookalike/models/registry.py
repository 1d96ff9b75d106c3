"""Finding models by name: `classic`, `default` (shipped in the package), models registered with
`lookalike model import`, or any model directory."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ModelError
from .base import Embedder
from .classic import ClassicEmbedder
from ..files import sha256_file
from .manifest import MANIFEST, EmbeddingSpec, InputSpec, ModelManifest

#: The shipped default model lives here once trained (see docs/models.md); until then `default` is `classic`.
PACKAGED = Path(__file__).parent / "default"
#: Other models shipped in the package, selectable by name (e.g. `--model fashion-v12`, the faster previous default).
SHIPPED = Path(__file__).parent / "shipped"


def shipped_models() -> list[str]:
    return sorted(p.name for p in SHIPPED.iterdir() if (p / MANIFEST).is_file()) if SHIPPED.is_dir() else []
_cache: dict[str, tuple[tuple | None, Embedder]] = {}   # spec -> (its manifest's mtime and size, model)


def model_home() -> Path:
    """Where `lookalike model import` keeps models: $LOOKALIKE_HOME/models, or ~/.local/share/lookalike/models."""
    base = os.environ.get("LOOKALIKE_HOME") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "lookalike")
    return Path(base) / "models"


def load_model(spec: "str | Path | Embedder" = "default") -> Embedder:
    if isinstance(spec, Embedder):
        return spec
    key = str(spec)
    stamp = _stamp(key)
    if key not in _cache or _cache[key][0] != stamp:   # a manifest edited on disk is read again
        embedder = _resolve(key)
        path = Path(key)
        embedder.source = str(path.absolute()) if key not in ("default", "classic", *shipped_models()) \
            and path.is_dir() else key
        _cache[key] = (stamp, embedder)
    return _cache[key][1]


def model_dir(spec: str) -> Path | None:
    """The model folder a name or path stands for: the packaged default, a folder, or a registered name."""
    if spec == "classic":
        return None
    if spec == "default":
        return PACKAGED
    if Path(spec).is_dir():
        return Path(spec)
    if spec in shipped_models():
        return SHIPPED / spec
    return model_home() / spec


def _stamp(spec: str) -> tuple | None:
    folder = model_dir(spec)
    try:
        st = (folder / MANIFEST).stat() if folder else None
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size) if st else None


def _resolve(spec: str) -> Embedder:
    from .onnx import OnnxEmbedder

    folder = model_dir(spec)
    if folder is not None and (folder / MANIFEST).is_file():
        return OnnxEmbedder(folder)
    if spec in ("classic", "default"):   # default is classic until a model is shipped
        return ClassicEmbedder()
    if Path(spec).is_dir():
        return OnnxEmbedder(Path(spec))   # reports the missing manifest
    if Path(spec).suffix == ".onnx":
        raise ModelError(f"{spec}: a bare ONNX file needs its input recipe; register it first with "
                         "`lookalike model import` (see docs/models.md)")
    known = ", ".join(["default", "classic", *shipped_models(), *list_models()])
    raise ModelError(f"unknown model {spec!r}: not a model directory nor a registered name ({known})")


def list_models() -> list[str]:
    home = model_home()
    return sorted(p.name for p in home.iterdir() if (p / MANIFEST).is_file()) if home.is_dir() else []


def import_model(onnx_file: str | Path, name: str, *, input: InputSpec | None = None,
                 embedding: EmbeddingSpec | None = None, home: Path | None = None,
                 force: bool = False) -> Embedder:
    """Register an ONNX image backbone under `name`: copy it, write its manifest, and check that it runs
    on a real image and gives one vector per image."""
    from .onnx import OnnxEmbedder

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name) or name in ("default", "classic"):
        raise ModelError(f"invalid model name {name!r}: letters, digits, '.', '_' or '-', and not a built-in name")
    source = Path(onnx_file)
    if not source.is_file():
        raise ModelError(f"{source}: no such ONNX file")
    home = home or model_home()
    target = home / name
    if target.exists() and not force:
        raise ModelError(f"a model named {name!r} is already registered at {target} (use --force to replace)")
    home.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=home))
    try:
        shutil.copyfile(source, tmp / "model.onnx")
        manifest = ModelManifest(name=name, sha256=sha256_file(tmp / "model.onnx"),
                                 input=input or InputSpec(), embedding=embedding or EmbeddingSpec())
        probe = OnnxEmbedder(tmp, manifest, verify=False)
        grey = Image.new("RGB", (manifest.input.width, manifest.input.height), (128, 100, 90))
        try:
            out = probe.forward(np.stack([probe.preprocess(grey)] * 2))
        except Exception as exc:
            raise ModelError(f"{source}: the model does not run with this input recipe ({exc})") from None
        if out.embeddings.shape[0] != 2:
            raise ModelError(f"{source}: output {probe.embedding_output!r} does not give one vector per image "
                             f"(shape {out.embeddings.shape}); pick another --output or a pooling")
        manifest = replace(manifest, dim=int(out.embeddings.shape[1]))
        (tmp / MANIFEST).write_text(manifest.to_json())
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _cache.pop(name, None)
    return OnnxEmbedder(target)
