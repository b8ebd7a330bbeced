"""A query worker's resources under heavy but valid requests: the decodes that verification needs stay within the
pixel budget, and work whose request ran out of time stops instead of running on. A real `lookalike serve`
process over a real index of real images; its memory and CPU time are read from /proc."""

import http.server
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest

from lookalike.core.spark import IN_PROCESS
from lookalike.dev.imagefactory import PHOTOS, keypoint_rich_png, write_photo_crops
from lookalike.dev.net import free_port
from lookalike.dev.procfs import cpu_seconds, status_bytes
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.index import build as index_build
from lookalike.index.build import BuildIndexConfig

TIMEOUT_S = 5.0
BIG = 6300  # a 6300×6300 PNG of a few dozen KB decodes to 119 MB of RGB


class Slow(http.server.BaseHTTPRequestHandler):
    """Every GET trickles a JPEG's bytes over 3 s; each request's start time is recorded."""

    started: list[float] = []
    jpeg = b""

    def do_GET(self):  # noqa: N802
        type(self).started.append(time.monotonic())
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.jpeg)))
        self.end_headers()
        chunk = max(1, len(self.jpeg) // 30)
        try:
            for lo in range(0, len(self.jpeg), chunk):
                self.wfile.write(self.jpeg[lo:lo + chunk])
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass  # the reader gave up

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    root = tmp_path_factory.mktemp("bounds")
    (root / "images").mkdir()
    write_photo_crops(root / "images", PHOTOS[:4], per_photo=2)
    store = str(root / "store")
    m = embed.run(EmbedConfig(images=str(root / "images"), store=store, master=IN_PROCESS))
    index_build.run(BuildIndexConfig(store=store, name="marks", embeddings=m["fingerprint_id"], master=IN_PROCESS,
                                     publish=True, queries=2))
    Slow.jpeg = (root / "images" / sorted(os.listdir(root / "images"))[0]).read_bytes()
    slow = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    slow_url = f"http://127.0.0.1:{slow.server_address[1]}"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lookalike.cli.main", "serve", "--store", store, "--index", "marks",
                             "--port", str(port), "--cache-dir", str(root / "cache"), "--request-timeout",
                             str(TIMEOUT_S), "--max-pixels-in-flight", "50000000", "--allow-uri", f"{slow_url}/"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            assert proc.poll() is None, "the worker exited"
            time.sleep(0.3)
    yield url, proc.pid, slow_url
    proc.terminate()
    proc.wait(30)
    slow.shutdown()


@pytest.mark.slow
def test_verification_decodes_within_the_budget_and_timed_out_work_stops(worker):
    url, pid, _ = worker
    files = [("images", (f"big-{i}.png", keypoint_rich_png(BIG, i), "image/png")) for i in range(16)]
    assert sum(len(f[1][1]) for f in files) < 2_000_000
    peak_before = status_bytes(pid, "VmHWM")
    started = time.monotonic()
    r = httpx.post(url + "/search/images", files=files, data={"k": "1"}, timeout=120)
    answered = time.monotonic()
    # Decoding 16 images twice each (for the model, then for local features) takes longer than the time limit.
    assert r.status_code == 504 and answered - started < TIMEOUT_S + 3, (r.status_code, answered - started)
    cpu_at_answer = cpu_seconds(pid)
    time.sleep(4)
    # The work stopped at its next check: at most the decode in hand finished after the answer.
    assert cpu_seconds(pid) - cpu_at_answer < 1.5
    # Each decode held the pixel budget (50 M pixels: one of these images at a time), verification's too: the
    # worker grew by a few hundred MB, where it grew by gigabytes when verification decoded outside the budget.
    grown = status_bytes(pid, "VmHWM") - peak_before
    assert grown < 1.2 * 2 ** 30, f"the worker grew by {grown / 2 ** 20:.0f} MiB"


@pytest.mark.slow
def test_reads_of_a_timed_out_request_stop(worker):
    url, pid, slow_url = worker
    Slow.started.clear()
    uris = [f"{slow_url}/img-{i}.jpg" for i in range(12)]  # 3 s each, one after another: 36 s of reading
    r = httpx.post(url + "/search/uris", json={"uris": uris, "k": 1}, timeout=120)
    answered = time.monotonic()
    assert r.status_code == 504, r.text
    time.sleep(4)
    # Two reads fit in the time limit (a HEAD and a GET each); none started after the answer, no retry either.
    late = [t for t in Slow.started if t > answered + 0.5]
    assert late == [] and len(Slow.started) <= 4, (len(Slow.started), late)
