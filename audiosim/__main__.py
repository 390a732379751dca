import sys

from audiosim.cli import run

sys.exit(run())
