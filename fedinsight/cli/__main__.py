"""``python -m fedinsight.cli``: the same command as ``fedinsight``."""

import sys

from fedinsight.cli import main

sys.exit(main())
