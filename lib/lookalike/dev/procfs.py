"""A process's memory and CPU time as Linux reports them (/proc), for the tests and benches that bound a worker's
work."""

from __future__ import annotations

import os


def status_bytes(pid: int, field: str) -> int:
    """A /proc/PID/status field in bytes (VmHWM: the peak resident set, VmRSS, VmPeak...)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds the process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
