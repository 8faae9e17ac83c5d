"""``python -m repsim.embedded [NAME ...] [--out DIR]``: regenerate the embedded stimulus sets."""

from __future__ import annotations

import logging
import sys

from repsim.argtypes import Parser
from repsim.embedded import DEFAULT_DIR, GENERATORS, generate
from repsim.errors import PathError, RepsimError
from repsim.runfolder import check_output_path, describe_os_error


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
    try:
        check_output_path(args.out, "--out", "folder")  # before a set is built, not after
        try:
            generate(args.names or None, args.out)
        except OSError as exc:  # a full disk, a folder made read-only meanwhile
            where = exc.filename or args.out
            raise PathError(describe_os_error(exc, where, "write", "--out")) from exc
    except RepsimError as exc:  # the cause and the fix, not a traceback
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
