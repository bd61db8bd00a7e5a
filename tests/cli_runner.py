"""The command line in tests, two ways.

``run_cli`` calls :func:`llmrec_lite.cli.main` in this process, with stdout and stderr captured:
it is the function ``python -m llmrec_lite`` runs, exit status and JSON line included, without
the ~5-10 s a fresh Python spends importing torch and transformers before each command. Tests
about the process itself (the last line of a real stdout, signals, kills, several processes,
messages printed at import time) pass ``subprocess=True``.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess as sp
import sys


def _in_process(args: list[str]) -> tuple[int, str, str]:
    from llmrec_lite.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    # main installs its own SIGTERM and SIGINT handlers; pytest's come back after
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(args)
            except SystemExit as stop:  # argparse's usage errors and --help
                code = stop.code if isinstance(stop.code, int) else 1
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    return code, stdout.getvalue(), stderr.getvalue()


def run_cli(*args, check: bool = True, subprocess: bool = False) -> tuple[int, dict | None, str]:
    """Run one command; returns (exit status, its last stdout line parsed as JSON, stderr).

    Args:
        *args: the command and its arguments, as typed after ``python -m llmrec_lite``.
        check: assert that the command succeeded (exit status 0), showing stderr if not.
        subprocess: run it as a separate ``python -m llmrec_lite`` process.
    """
    args = [str(a) for a in args]
    if subprocess:
        proc = sp.run([sys.executable, "-m", "llmrec_lite", *args], capture_output=True, text=True, timeout=600)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    else:
        code, stdout, stderr = _in_process(args)
    if check:
        assert code == 0, stderr[-3000:]
    lines = stdout.strip().splitlines()
    return code, (json.loads(lines[-1]) if lines else None), stderr
