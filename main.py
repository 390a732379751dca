"""Run audiosim from a checkout: ``python main.py`` opens the window, ``python main.py COMMAND`` is the CLI."""

import sys

from audiosim.cli import run

if __name__ == "__main__":
    sys.exit(run())
