"""Run ``stylize`` commands in the test process, answered like a finished subprocess.

A subprocess pays ~2 CPU-s importing torch before it parses a word; a mistake in the
command line, or a small apply, costs far less than that. ``main`` is the same code the
program runs (``service.cli.main`` for ``stylize``, ``stylenet.cli.main`` without the
store), its exit status and its output the same; what only a real process shows (start-up
imports, the README's commands as typed) keeps a subprocess.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

#: The caller's STYLIZE_* variables a clean run keeps (as the subprocesses did).
_KEEP = ("STYLIZE_CACHE_DIR",)


@contextlib.contextmanager
def _environment(cwd: Path | None, env: dict[str, str] | None, clean: bool) -> Iterator[None]:
    saved, here = dict(os.environ), Path.cwd()
    try:
        if clean:
            for name in [n for n in os.environ if n.startswith("STYLIZE_") and n not in _KEEP]:
                del os.environ[name]
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(saved)


def run_main(
    main: Callable[[Sequence[str]], int],
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    clean: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Call ``main(args)`` with ``cwd`` and ``env`` (``clean``: no STYLIZE_* of the caller's).

    An exception other than ``SystemExit`` propagates: it is the traceback the program
    would have printed, so the test fails on it.
    """
    out, err = io.StringIO(), io.StringIO()
    with (
        _environment(cwd, env, clean),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors and --help
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess(["stylize", *args], code, out.getvalue(), err.getvalue())


def stylize(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``stylize ARGS`` (the service's entry point: styles by id from the store) in-process."""
    from service.cli import main

    return run_main(main, *args, cwd=cwd, env=env)
