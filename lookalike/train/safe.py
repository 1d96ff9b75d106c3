"""Weights and checkpoints as safetensors files (tensors) with a JSON header (everything else): no pickle.

A checkpoint holds the network, the optimizer (its per-parameter tensors, flattened to "opt/<param>/<name>",
and its settings as JSON), the learning-rate schedule, the random generator and the training history.
Files are written to a temporary name and renamed, so a kill mid-write leaves the previous file whole.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def save(path: Path, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(tmp),
              metadata={"lookalike": json.dumps(meta or {})})
    os.replace(tmp, path)


def load(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    return load_file(str(path)), header(path)


def header(path: Path) -> dict:
    """The JSON values of a file written by save(), without reading its tensors."""
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("lookalike", "{}"))


def save_checkpoint(path: Path, net, opt, sched, generator: torch.Generator, **values) -> None:
    tensors = {f"model/{k}": v for k, v in net.state_dict().items()}
    state = opt.state_dict()
    for param, slots in state["state"].items():
        for name, value in slots.items():
            tensors[f"opt/{param}/{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    tensors["generator"] = generator.get_state()
    save(path, tensors, {"param_groups": state["param_groups"], "sched": sched.state_dict(), **values})


def load_checkpoint(path: Path, net, opt, sched, generator: torch.Generator) -> dict:
    """Restore a checkpoint written by save_checkpoint into the given objects; returns its other values."""
    tensors, meta = load(path)
    net.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
    slots: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt/"):
            _, param, name = key.split("/", 2)
            slots.setdefault(int(param), {})[name] = value
    opt.load_state_dict({"state": slots, "param_groups": meta.pop("param_groups")})
    sched.load_state_dict(meta.pop("sched"))
    generator.set_state(tensors["generator"])
    return meta
