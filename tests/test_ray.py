"""Batch embedding on Ray: a local 2-CPU Ray embeds a folder with a corrupt photo into the same shards, ids and
vectors as the plain path, lists the bad photo, and a rerun finds nothing left to do."""

import shutil

import numpy as np
import pytest

from conftest import DEMO

pytest.importorskip("ray", reason="needs the ray extra (pip install 'lookalike[ray]')")
pytest.importorskip("pyarrow", reason="Parquet vectors need the export extra (pyarrow)")

from lookalike.vectors import embed_catalog, read_vectors  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    import ray

    from lookalike.distributed import start

    start("auto")
    yield
    ray.shutdown()


def test_ray_embeds_what_the_plain_path_embeds(tmp_path, local_ray):
    photos = tmp_path / "photos"
    for cls in ("hat", "skirt"):
        shutil.copytree(DEMO / cls, photos / cls)
    (photos / "skirt" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not a whole jpeg")
    on_ray = embed_catalog(photos, None, out=tmp_path / "ray", model="classic", shard_size=15, ray="auto")
    plain = embed_catalog(photos, None, out=tmp_path / "plain", model="classic", shard_size=15)
    assert on_ray.embedded == plain.embedded == 40 and on_ray.shards_written == 3
    assert [pid for pid, _ in on_ray.skipped] == [pid for pid, _ in plain.skipped] == ["corrupt"]
    a, b = read_vectors(tmp_path / "ray"), read_vectors(tmp_path / "plain")
    assert a.ids == b.ids and a.metadata == b.metadata and np.array_equal(a.vectors, b.vectors)
    again = embed_catalog(photos, None, out=tmp_path / "ray", model="classic", shard_size=15, ray="auto")
    assert (again.shards_written, again.shards_kept, again.embedded) == (0, 3, 0)


def test_an_unreachable_cluster_is_one_line(tmp_path):
    from lookalike.errors import LookalikeError
    from lookalike.distributed import start

    import ray

    if ray.is_initialized():
        ray.shutdown()
    with pytest.raises(LookalikeError, match="cannot start or join Ray at '127.0.0.1:1'"):
        start("127.0.0.1:1")


def test_a_worker_killed_mid_job_is_replaced_and_every_photo_is_embedded_once(tmp_path, local_ray):
    import os
    import signal
    import threading
    import time

    photos = tmp_path / "photos"
    shutil.copytree(DEMO, photos)
    killed, finished = [], threading.Event()

    def kill_a_worker():
        while not finished.is_set() and not killed:
            for pid in os.listdir("/proc"):
                try:
                    title = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ")
                except (OSError, ValueError):
                    continue
                if b"MapBatches(_ShardEmbedder)).submit" in title:      # embedding a shard right now
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(title.decode(errors="replace"))
                    return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    try:
        on_ray = embed_catalog(photos, None, out=tmp_path / "ray", model="classic", shard_size=10, ray="auto")
    finally:
        finished.set()
        killer.join()
    assert killed, "no embedding worker was seen at work"
    plain = embed_catalog(photos, None, out=tmp_path / "plain", model="classic", shard_size=10)
    a, b = read_vectors(tmp_path / "ray"), read_vectors(tmp_path / "plain")
    assert on_ray.embedded == plain.embedded == len(b.ids) and len(set(a.ids)) == len(a.ids)
    assert a.ids == b.ids and np.array_equal(a.vectors, b.vectors)
