"""What every stage module shares: reading ``params.yaml``, typed parameter access, the entry point."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from posfeat.entry import run_entry
from posfeat.io import read_yaml_mapping

ROOT = Path(__file__).resolve().parents[1]
INDEX_PATH = Path("data/prepared/megadepth.json")
"""The MegaDepth pair index the ``prepare_megadepth`` stage writes and both training stages read."""
DESC_MODEL_PATH = Path("models/desc.pt")
"""The descriptor ``train_desc`` writes and ``train_kp`` trains its detector on."""


def load_params(path: str | Path = ROOT / "params.yaml") -> dict:
    """The study's parameters as a dict; a bad file is a DataError (:func:`posfeat.io.read_yaml_mapping`)."""
    return read_yaml_mapping(path)


def stage_entry(main: Callable[[], Any], prog: str) -> None:
    """``python -m stages.<name>`` for a stage without arguments: bad input → one message, exit status 2.

    The work itself prints the start line (:func:`posfeat.utils.announce`) once it knows its data.
    """

    def run(argv: list[str]) -> int:
        if argv:
            raise SystemExit(f"{prog}: takes no arguments except --debug, got {argv}")
        main()
        return 0

    sys.exit(run_entry(run, prog=prog))


def method_entry(main: Callable[[str], Any], prog: str) -> None:
    """``python -m stages.<name> <method>`` for a stage run once per method: bad input → one message, exit 2."""

    def run(args: list[str]) -> int:
        if len(args) != 1:
            raise SystemExit(f"{prog}: takes one argument, the method (a name in extract.methods), got {args}")
        main(args[0])
        return 0

    sys.exit(run_entry(run, prog=prog))
