import sys

from audiosim.cli import main

sys.exit(main())
