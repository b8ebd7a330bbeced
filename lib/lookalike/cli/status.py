"""`lookalike status`: is an index fresh, and how did its last run end? For monitoring (exit 4 when not) and for
wrappers that need a run's own exit code where the cluster only says "failed" (YARN cluster mode)."""

from __future__ import annotations

import argparse
import json
import re
import time

from lookalike.cli.args import add_index_arg, add_json_arg, add_store_args, key_values
from lookalike.core.errors import EXIT_BUSY, EXIT_STALE, LookalikeError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Stale(LookalikeError):
    """The index is older than asked, or its last run did not end well."""

    exit_code = EXIT_STALE


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration such as 26h, 90m, 2d or 3600 (seconds)")
    return float(match[1]) * UNITS[match[2] or "s"]


def status_parser(p: argparse.ArgumentParser) -> None:
    add_store_args(p)
    add_index_arg(p)
    p.add_argument("--max-age", type=parse_duration, default=None, metavar="DURATION",
                   help="exit 4 when the index was last current longer ago than this (26h for a nightly run); "
                        "it is current from its last publish, or from a night that found nothing to change. "
                        "Without it only a last run that failed or was interrupted exits 4")
    p.add_argument("--run-outcome-since", type=float, default=None, metavar="EPOCH_SECONDS",
                   help="exit with the code the index's last run recorded, if that run started at or after this "
                        "time (deploy/submit.sh uses it in YARN cluster mode, where spark-submit says 1 for any "
                        "failure); exit 1 when no such run wrote a report")
    add_json_arg(p, "the status")


def run_status(args: argparse.Namespace) -> str:
    from lookalike.core.store import Store
    from lookalike.index.status import epoch, index_status

    store = Store(args.store, key_values(args.store_option, "--store-option"))
    status = index_status(store, args.index)
    if args.run_outcome_since is not None:
        run, lease, since = status.last_run, status.lease, int(args.run_outcome_since)
        if run is None or not run.get("started_at") or epoch(run["started_at"]) < since:
            if lease and lease["state"] == "running" and lease["expires_at"] > time.time() \
                    and lease["acquired_at"] < since:  # held since before: the run was refused, doing nothing
                raise RunOutcome(EXIT_BUSY, f"another run holds the lease of index {args.index!r}: run "
                                            f"{lease['run_id']} on {lease['host']}")
            raise RunOutcome(1, f"no run of index {args.index!r} reported since {since}: the driver stopped before "
                                "it could write its report; see the driver's log")
        code = int(run.get("exit_code") or 0)
        if code:
            raise RunOutcome(code, f"run {run['run_id']} was {run['status']} (exit {code})")
        return f"run {run['run_id']} was {run['status']}"
    report = status.as_dict(args.max_age, time.time())
    text = json.dumps(report, indent=2) if args.json else describe(report)
    if report["fresh"]:
        return text
    print(text)  # what monitoring reads on stdout; the reasons follow as the error line
    raise Stale("; ".join(report["problems"]))


class RunOutcome(LookalikeError):
    """The code a run recorded, passed on as this command's own."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.exit_code = code


def describe(report: dict) -> str:
    lines = [f"index {report['index']}: LATEST {report['latest'] or '-'}"]
    if report["age_s"] is not None:
        lines.append(f"  current as of {report['age_s'] / 3600:.1f}h ago")
    run = report["last_run"]
    if run:
        lines.append(f"  last run {run['run_id']}: {run['status']}, finished {run.get('finished_at') or '-'}")
    lease = report["lease"]
    if lease and lease.get("state") == "running" and lease.get("expires_at", 0) > time.time():
        lines.append(f"  running now: run {lease['run_id']} on {lease['host']}")
    return "\n".join(lines)

