"""The partners' own exports the tests use: ``examples/own_exports.py``, the one generator (the tutorial's too).

``examples/`` is not part of the package, so it is put on the path here; tests keep importing
``support.exports``.
"""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from own_exports import (  # noqa: E402
    CN_MAPPING,
    MAPPINGS,
    TUTORIAL_FOLDERS,
    US_MAPPING,
    Export,
    write_cn_export,
    write_raw_federation,
    write_us_export,
)

__all__ = ["CN_MAPPING", "MAPPINGS", "TUTORIAL_FOLDERS", "US_MAPPING", "EXAMPLES", "Export", "write_cn_export",
           "write_raw_federation", "write_us_export"]
