"""``python -m repsim``: the ``repsim`` command, for an environment whose scripts are not on PATH."""

import sys

from repsim.cli import main

if __name__ == "__main__":
    sys.exit(main())
