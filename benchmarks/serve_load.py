"""HTTP load on loopback (issue 4): `lookalike serve` over the 35k shared catalog index, hit by wrk (a C
load generator, so the client does not eat the server's CPU) with N connections for a fixed time:
search by upload (POST /api/search, a 60x80 catalog photo) and search by id (GET /api/products/ID/similar).
Requests/s, p50/p99 latency, errors, for one and two server processes (on 2 cores shared with wrk, one
process does best).

Needs `wrk` (Debian package). Run after benchmarks/core.py (it reuses its index):
    python benchmarks/serve_load.py [--seconds 15] [--connections 16]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.table import Table

from common import CACHE, save

LUA_UPLOAD = """
local f = io.open(os.getenv("LOOKALIKE_BENCH_IMAGE"), "rb")
local data = f:read("*all")
f:close()
local boundary = "lookalikebenchboundary"
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = "--" .. boundary .. "\\r\\nContent-Disposition: form-data; name=\\"image\\"; filename=\\"q.jpg\\"\\r\\n" ..
  "Content-Type: image/jpeg\\r\\n\\r\\n" .. data .. "\\r\\n--" .. boundary .. "--\\r\\n"
"""
LUA_IDS = """
local ids = {}
for line in io.lines(os.getenv("LOOKALIKE_BENCH_IDS")) do ids[#ids + 1] = line end
request = function()
  return wrk.format("GET", "/api/products/" .. ids[math.random(#ids)] .. "/similar?k=12")
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index: Path, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    exe = shutil.which("lookalike") or str(Path(sys.executable).parent / "lookalike")
    proc = subprocess.Popen([exe, "serve", str(index), "--port", str(port), "--workers", str(workers)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/api/health", timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    sys.exit("the server did not start")


def wrk(url: str, script: str, seconds: int, connections: int, env: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    cmd = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", fh.name, url]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}).stdout
    os.unlink(fh.name)

    def ms(label):
        m = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return None
        return float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"):
        m = re.search(pattern, out)
        if m:
            errors += sum(int(g) for g in m.groups())
    return {"requests_per_s": round(rps, 1), "p50_ms": ms("50"), "p99_ms": ms("99"), "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--index", type=Path, default=CACHE / "fpi-default-flat.idx")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("needs wrk: apt-get install wrk")
    if not args.index.exists():
        sys.exit(f"{args.index} missing: run benchmarks/core.py first")
    from lookalike import Index

    idx = Index.load(args.index)
    ids_file = CACHE / "bench-ids.txt"
    ids_file.write_text("\n".join(random.Random(0).sample(idx.ids, 2000)))
    env = {"LOOKALIKE_BENCH_IMAGE": idx.get(idx.ids[123]).path, "LOOKALIKE_BENCH_IDS": str(ids_file)}
    results = {"index": str(args.index.name), "products": len(idx), "model": idx.manifest["model"]["id"],
               "connections": args.connections, "seconds": args.seconds}
    for workers in (1, 2):
        proc, url = start_server(args.index, workers)
        try:
            results[f"workers_{workers}"] = {
                "upload": wrk(url + "/api/search?k=12", LUA_UPLOAD, args.seconds, args.connections, env),
                "by_id": wrk(url, LUA_IDS, args.seconds, args.connections, env)}
        finally:
            proc.terminate()
            proc.wait(10)
    save("serve_load", results)
    t = Table(title=f"HTTP load on loopback: {results['products']:,} products, {args.connections} connections, "
                    f"{args.seconds} s each ({results['model']})")
    for col in ("endpoint", "server", "requests/s", "p50 ms", "p99 ms", "errors", "target"):
        t.add_column(col, justify="right" if col not in ("endpoint", "server") else "left")
    for endpoint, target in (("upload", ">= 100/s, p99 <= 100 ms"), ("by_id", ">= 500/s")):
        for workers in (1, 2):
            r = results[f"workers_{workers}"][endpoint]
            t.add_row(endpoint, f"{workers} worker{'s' if workers > 1 else ''}",
                      f"{r['requests_per_s']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", str(r["errors"]), target)
    Console().print(t)


if __name__ == "__main__":
    main()
