"""``python -m posfeat …``: features and evaluations outside the DVC study.

One module per subcommand, each with ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args)``; the
modules import the library lazily inside ``run``, so ``--help`` stays fast. The DVC stages call the same
library functions.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from posfeat.entry import DEBUG_ENV, run_entry

SUBCOMMANDS = (
    "demo",
    "manifest",
    "photos",
    "extract",
    "eval_hpatches",
    "eval_eth",
    "eval_aachen",
    "eval_real",
    "convert",
    "export",
)
"""The subcommand modules of this package, in ``--help`` order."""


def build_parser() -> argparse.ArgumentParser:
    """The ``posfeat`` parser: one subparser per :data:`SUBCOMMANDS` module, its ``run`` as ``args.run``."""
    p = argparse.ArgumentParser(
        prog="posfeat", description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of a bad-input error (also: {DEBUG_ENV}=1); accepted anywhere",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        s = sub.add_parser(module.NAME, help=module.HELP, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(s)
        s.set_defaults(module=module.__name__)
    return p


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    rc = importlib.import_module(args.module).run(args)
    return int(rc or 0)


def main(argv: list[str] | None = None) -> int:
    """The ``posfeat`` command (and ``python -m posfeat``): bad input ends in one message, exit status 2."""
    return run_entry(_run, argv, prog="posfeat")


if __name__ == "__main__":
    sys.exit(main())
