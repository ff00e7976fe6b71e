"""Where fedinsight keeps its own files on a machine (built-in datasets, the default database)."""

from __future__ import annotations

import os
from pathlib import Path


def fedinsight_home() -> Path:
    """Root of fedinsight's cache: ``$FEDINSIGHT_HOME`` or ``~/.cache/fedinsight``."""
    env = os.environ.get("FEDINSIGHT_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fedinsight"
