"""A reader never sees two index versions at once: a writer removes and re-adds products in a loop (every write
moves rows) while a reader loads the index again and again and checks every row's vector and label."""

import multiprocessing
import os
import shutil
import time

import numpy as np

from conftest import DEMO
from lookalike import Index

SECONDS = float(os.environ.get("LOOKALIKE_RACE_SECONDS", "60"))


def _writer(path: str, photos: str, stop_at: float) -> None:
    index = Index.load(path)
    ids = sorted(index.ids)[:6]
    while time.time() < stop_at:
        index.remove(ids)
        index.add(photos, replace=False)


def test_a_reader_racing_a_writer_never_loads_a_mix(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for cls in ("hat", "shoes"):
        for p in sorted((DEMO / cls).glob("*.jpg"))[:8]:
            shutil.copy(p, photos / p.name)
    (tmp_path / "meta.csv").write_text("id,class\n" + "".join(
        f"{p.stem},{p.parent.name}\n" for cls in ("hat", "shoes") for p in sorted((DEMO / cls).glob("*.jpg"))[:8]))
    path = tmp_path / "race.idx"
    first = Index.build(photos, tmp_path / "meta.csv", out=path, model="classic")
    expected = {pid: first.vector(pid) for pid in first.ids}
    labels = {pid: first.get(pid).metadata["class"] for pid in first.ids}
    # the writer re-adds photos from the folder only (no metadata): re-added products carry no class
    stop_at = time.time() + SECONDS
    writer = multiprocessing.get_context("spawn").Process(target=_writer, args=(str(path), str(photos), stop_at))
    writer.start()
    loads, wrong, errors = 0, [], []
    try:
        while time.time() < stop_at:
            try:
                index = Index.load(path)
            except Exception as exc:          # any error is a failure: a load must see a whole version
                errors.append(repr(exc))
                continue
            loads += 1
            for row, pid in enumerate(index.ids):
                vec = index.faiss.reconstruct(row)
                if not np.allclose(vec, expected[pid], atol=2e-3):
                    wrong.append((loads, pid))
                cls = index.get(pid).metadata.get("class")
                if cls is not None and cls != labels[pid]:
                    wrong.append((loads, pid, cls))
    finally:
        writer.join(SECONDS + 60)
    assert writer.exitcode == 0
    assert loads > 50 and not wrong and not errors, (loads, wrong[:5], errors[:5])
