"""How the training entry points report a failure the user can act on.

``python -m training.train``, ``training.preprocess``, ``training.evaluate`` and
``training.robustness`` catch :data:`EXPECTED_ERRORS` (a flag, config, dataset or split that
cannot work, a path that cannot be read or written, a cache of other settings, a checkpoint
that does not load) and print one line, ``PROG: error: MESSAGE``, with exit status 2; ``-v``
prints the traceback too. A loss or scores that stop being finite (``NonFinite``: training
diverged) are one line too, with exit status 1. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

from scanner.checkpoint import CheckpointError
from training.metrics import NonFinite

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, CheckpointError)
EXIT_USAGE = 2
EXIT_FAILED = 1  # the run itself failed (training diverged)


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """``--data`` and ``--layout``, as the entry points that read a dataset take them."""
    from training.datasets import LAYOUTS

    p.add_argument(
        "--data", required=True, type=Path, help="Dataset root or CSV manifest, as for training."
    )
    p.add_argument(
        "--layout",
        default="auto",
        choices=("auto", *LAYOUTS),
        help="How to read --data; auto detects it (default: auto).",
    )


def add_output_arguments(p: argparse.ArgumentParser, progress: bool = True) -> None:
    """--no-progress (when the command shows a progress bar) and -v/--verbose, which
    ``run_command`` and ``report_error`` read."""
    if progress:
        p.add_argument("--no-progress", action="store_true", help="No progress bar on stderr.")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="Show the traceback of an error too."
    )


def report_error(prog: str, error: BaseException, verbose: bool) -> int:
    """Print ``error`` as one line (and its traceback first if ``verbose``); the exit status."""
    if verbose:
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    message = " ".join(str(error).split()) or type(error).__name__
    print(f"{prog}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def report_failure(prog: str, error: NonFinite, verbose: bool) -> int:
    """A run that failed on its own (training diverged), not on the user's flags: one line
    as ``report_error``, exit status 1."""
    report_error(prog, error, verbose)
    return EXIT_FAILED


def check_writable(folder: Path, flag: str) -> None:
    """Create ``folder`` if needed and make sure a file can be written there (ValueError)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ValueError(f"cannot write to {flag} {folder}: {e.strerror or e}") from e


def run_command(
    prog: str, args: argparse.Namespace, body: Callable[[argparse.Namespace], int]
) -> int:
    """``body(args)`` with INFO logs on stderr; an expected error is reported as one line
    (``report_error``, ``args.verbose``) and gives status 2."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s", force=True
    )
    try:
        return body(args)
    except EXPECTED_ERRORS as e:
        return report_error(prog, e, args.verbose)
    except NonFinite as e:
        return report_failure(prog, e, args.verbose)
