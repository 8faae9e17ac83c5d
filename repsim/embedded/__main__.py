"""``python -m repsim.embedded [NAME ...] [--out DIR]``: regenerate the embedded stimulus sets."""

from __future__ import annotations

import logging
import sys

from repsim.argtypes import Parser
from repsim.embedded import DEFAULT_DIR, GENERATORS, generate


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m repsim.embedded", description=__doc__)
    parser.add_argument(
        "names", nargs="*", choices=[[], *GENERATORS], help="sets to build (default: all)"
    )
    parser.add_argument(
        "--out", default=str(DEFAULT_DIR), help="output folder (default: data/embedded)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    generate(args.names or None, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
