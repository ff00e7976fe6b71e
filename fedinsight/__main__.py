"""``python -m fedinsight``: the same command as ``fedinsight``."""

import sys

from fedinsight.cli import main

sys.exit(main())
