"""Search a query worker over HTTP with lookalike.Client, as a user of a running service would: builds a small index,
starts `lookalike serve` on it, and searches by uploaded image, by catalogue id and by vector.

    python examples/http_client.py [--url http://worker:8000 --token TOKEN]

With --url it searches that worker (or router) with one of the drawn marks instead of starting its own.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lookalike

from drawn_marks import write_marks


def start_worker(store: str, index: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = subprocess.Popen([sys.executable, "-m", "lookalike.cli.main", "serve", "--store", store, "--index",
                               index, "--port", str(port)], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    with lookalike.Client(url) as client:
        for _ in range(600):
            try:
                client.health()
                return worker, url
            except lookalike.LookalikeError:
                if worker.poll() is not None:
                    raise SystemExit("the worker did not start") from None
                time.sleep(0.1)
    raise SystemExit("the worker did not answer within a minute")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running worker or router (default: start one here)")
    parser.add_argument("--token", help="its bearer token, if it wants one")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lookalike-example-"))
    marks = write_marks(work / "marks")
    worker = None
    url = args.url
    if url is None:
        store = str(work / "store")
        lookalike.reindex(lookalike.ReindexConfig.of(str(work / "marks"), store, "marks", master="in-process"))
        worker, url = start_worker(store, "marks")
    try:
        with lookalike.Client(url, token=args.token) as client:
            info = client.info()
            print(f"{url} serves {info['name']}/{info['version']}: {info['ntotal']} images of {info['dim']} d")
            hits = client.search(marks[0], k=3)
            print(f"uploaded {marks[0].name}: " + ", ".join(f"{h.image_id} ({h.score:.3f})" for h in hits))
            by_id = client.search_ids(hits[0].image_id, k=2)
            print(f"like {hits[0].image_id}: " + ", ".join(h.image_id for h in by_id))
            try:
                client.search_ids("no-such-mark", k=2)
            except lookalike.SearchRefused as refused:
                print(f"an unknown id is refused with HTTP {refused.status}")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)


if __name__ == "__main__":
    main()
