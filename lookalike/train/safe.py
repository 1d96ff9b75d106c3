"""Weights and checkpoints as safetensors files (tensors) with a JSON header (everything else): no pickle.

A checkpoint holds the network, the optimizer (its per-parameter tensors, flattened to "opt/<param>/<name>",
and its settings as JSON), the learning-rate schedule, the random generator and the training history.
Files are written to a temporary name and renamed, so a kill mid-write leaves the previous file whole.
`save(..., compact=True)` stores each weight matrix as int8 with one float32 scale per output channel (a quarter
of float32's bytes); `load` gives them back as float32, within 0.4% of each channel's largest weight: enough to
start fine-tuning from, which is what the packaged default model's weights are for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


SCALE = ".int8_scale"     # suffix of the per-channel scales of a compact tensor


def save(path: Path, tensors: dict[str, torch.Tensor], meta: dict | None = None, *, compact: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    out = {}
    for key, value in tensors.items():
        value = value.detach()
        if compact and value.is_floating_point() and value.dim() >= 2 and value.numel() >= 1024:
            rows = value.float().reshape(len(value), -1)
            scale = (rows.abs().amax(dim=1) / 127).clamp_min(1e-12)
            out[key] = torch.round(rows / scale[:, None]).to(torch.int8).reshape(value.shape)
            out[key + SCALE] = scale
        else:
            out[key] = value.contiguous().clone()
    save_file(out, str(tmp), metadata={"lookalike": json.dumps(meta or {})})
    os.replace(tmp, path)


def load(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    tensors = load_file(str(path))
    for key in [k for k in tensors if k.endswith(SCALE)]:
        scale, base = tensors.pop(key).float(), key[:-len(SCALE)]
        q = tensors[base]
        tensors[base] = (q.float().reshape(len(q), -1) * scale[:, None]).reshape(q.shape)
    return tensors, header(path)


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
