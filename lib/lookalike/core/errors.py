"""The one error tree: every error lookalike raises on purpose is a LookalikeError with the exit code its kind
means to a scheduler. Anything else reaching the command line is a bug, and is shown with its traceback."""

from __future__ import annotations

# Exit codes, so a scheduler can tell a wrong call from a failed run from "try later".
EXIT_BUG = 1          # an unexpected exception: a traceback follows
EXIT_USAGE = 2        # the call or its inputs are wrong: fix them and run again
EXIT_FAILED = 3       # the job ran and refused its result (too many bad images, recall below the floor)
EXIT_STALE = 4        # `lookalike status`: the index is older than --max-age, or its last run did not finish
EXIT_UNAVAILABLE = 69  # the store (or another service) did not answer: check the endpoint (sysexits EX_UNAVAILABLE)
EXIT_BUSY = 75        # another run holds the lease: nothing was done, try later (sysexits EX_TEMPFAIL)
EXIT_INTERRUPTED = 143  # stopped by SIGTERM (128 + 15, as a shell reports it): released its lease, rerun resumes

# What each code tells the person or scheduler reading it: the command's help and the docs list these.
EXIT_CODES = {
    0: "done",
    EXIT_BUG: "a bug: an unexpected error, shown with its traceback (please report it)",
    EXIT_USAGE: "the call or its inputs are wrong (a flag, a path, a missing index): fix them and run again",
    EXIT_FAILED: "the job ran and refused its result (too many bad images, recall below --min-recall); nothing "
                 "was published: the message says what to fix, then rerun as it says",
    EXIT_STALE: "lookalike status: the index's LATEST is older than --max-age, or its last run failed or was "
                "interrupted: the message says which",
    EXIT_UNAVAILABLE: "the store or another service kept failing with transient errors: check it, then rerun (a rerun "
                      "resumes)",
    EXIT_BUSY: "another run holds the index's lease: nothing was done, try later",
    EXIT_INTERRUPTED: "stopped by SIGTERM (a scheduler's timeout, a pod eviction): the Spark work was cancelled and "
                      "the lease released; rerun at once, the rerun resumes",
}
# Codes a scheduler should not retry: the same call would fail the same way until someone fixes its cause.
DETERMINISTIC_EXIT_CODES = (EXIT_USAGE, EXIT_FAILED)


class LookalikeError(Exception):
    """Base of the errors lookalike raises on purpose; the message says what to do."""

    exit_code = EXIT_USAGE


class ConfigError(LookalikeError, ValueError):
    """A job config or command-line value is wrong; the message says which field and what would be right."""


class InputError(LookalikeError, ValueError):
    """The data given does not fit (a table's columns, a vector's dimension, a model's weights)."""


class ArtefactError(LookalikeError, RuntimeError):
    """An artefact in the store is missing, incomplete, damaged, or of another kind than expected."""


class JobFailed(LookalikeError, RuntimeError):
    """The job ran but its result does not meet the bar it was given; nothing was published."""

    exit_code = EXIT_FAILED


class Unavailable(LookalikeError, ConnectionError):
    """A service kept failing with transient errors (connection refused, timeouts, 5xx) until retries ran out."""

    exit_code = EXIT_UNAVAILABLE


class Interrupted(LookalikeError, RuntimeError):
    """The process was told to stop (SIGTERM) and stopped cleanly: its work may be resumed."""

    exit_code = EXIT_INTERRUPTED


class Busy(LookalikeError, RuntimeError):
    """Someone else holds what this run needs; nothing was done."""

    exit_code = EXIT_BUSY
