"""Running the `lookalike` command from tests: store options as flags, a run killed once it has committed part
of its work."""

from __future__ import annotations

import subprocess
import sys
import time


def store_option_args(options: dict, prefix: str = "") -> list[str]:
    """Nested fsspec options as the repeated --store-option KEY=VALUE arguments of the lookalike command."""
    import json
    args = []
    for key, value in options.items():
        if isinstance(value, dict):
            args += store_option_args(value, f"{prefix}{key}.")
        else:
            args += ["--store-option", f"{prefix}{key}={value if isinstance(value, str) else json.dumps(value)}"]
    return args


def run_cli_until_committed(args: list[str], store, tasks_prefix: str, count: int, timeout: float = 120.0
                            ) -> list[str]:
    """Run `lookalike ARGS` in a subprocess, SIGKILL it once `count` task markers are committed under
    tasks_prefix, and return the committed marker keys."""
    import signal
    proc = subprocess.Popen([sys.executable, "-m", "lookalike.cli.main", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if len(store.list(tasks_prefix)) >= count:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return store.list(tasks_prefix)
