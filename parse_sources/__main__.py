"""`python -m parse_sources COMMAND ...`: each job family registers its own subcommands."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules that define `register(subparsers)`; each adds its commands and sets `handler` on them.
FAMILIES = ("parse_sources.stream.cli", "parse_sources.batch.cli")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parse_sources", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    subparsers = parser.add_subparsers(required=True, metavar="COMMAND")
    for family in FAMILIES:
        importlib.import_module(family).register(subparsers)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
