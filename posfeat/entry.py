"""What every entry point shares: bad input ends in one message, a bug in a traceback.

``python -m posfeat …``, the ``posfeat`` script and every ``python -m stages.*`` module run their work
through :func:`run_entry`:

* a :class:`posfeat.io.DataError` (bad input: a file, a line, a parameter; the message names it and says
  what was expected) becomes one line ``<prog>: error: <message>`` on stderr and exit status
  :data:`EXIT_BAD_INPUT`;
* ``--debug`` anywhere on the command line, or ``POSFEAT_DEBUG=1`` in the environment, shows its
  traceback instead;
* a write that ran out of space (a full disk or quota, a file-size limit; :func:`posfeat.io.is_no_space`)
  is one line too, with the same exit status: outputs are written atomically, so nothing half-written is left;
* any other exception is a bug and keeps its traceback (Python's exit status 1);
* Ctrl-C ends with status 130 and one line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from posfeat.io import DataError, is_no_space

DEBUG_FLAG = "--debug"
DEBUG_ENV = "POSFEAT_DEBUG"
EXIT_BAD_INPUT = 2
"""Exit status of bad input (argparse's usage errors use the same)."""


def debug_enabled(argv: Sequence[str] = ()) -> bool:
    """``--debug`` in ``argv`` or ``POSFEAT_DEBUG`` set to anything but empty/0/false/no."""
    env = os.environ.get(DEBUG_ENV, "").strip().lower()
    return DEBUG_FLAG in argv or env not in ("", "0", "false", "no", "off")


def _close_progress_bars() -> None:
    """Close the progress bars the failed work left open, so the message starts on a line of its own."""
    try:
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", ())):
            bar.close()
    except Exception:  # cosmetic only
        pass


def run_entry(func: Callable[[list[str]], Any], argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run ``func(argv without --debug)`` and return an exit status (``func``'s int result, else 0).

    ``argv`` defaults to ``sys.argv[1:]``; ``prog`` (default: the script name) starts the error line.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_enabled(argv)
    rest = [a for a in argv if a != DEBUG_FLAG]
    prog = prog or Path(sys.argv[0]).name
    try:
        try:
            rc = func(rest)
        except Exception as e:  # running out of space is bad input too: the same one line
            if debug or isinstance(e, DataError) or not is_no_space(e):
                raise
            first = " ".join(str(e).split())[:200] or type(e).__name__
            raise DataError(f"no space left to write (disk or quota full, or a file-size limit): {first}") from e
    except DataError as e:
        if debug:
            raise
        text = " ".join(str(e).split("\n")).strip() or type(e).__name__
        _close_progress_bars()
        print(f"{prog}: error: {text}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    if isinstance(rc, bool) or not isinstance(rc, int):
        return 0
    return rc
