"""Importing ultralytics safely here: offline, no auto-installs, and every CPU core.

ultralytics reads its environment at import time, so `ultralytics()` must be the way every
module in this project gets it.
"""

from __future__ import annotations

import os
import tempfile
from types import ModuleType


def ultralytics() -> ModuleType:
    """The ultralytics package, configured for offline use on this machine.

    - YOLO_OFFLINE / YOLO_AUTOINSTALL: no weight, font or pip downloads.
    - YOLO_CONFIG_DIR: a writable settings folder.
    - CPU training: ultralytics uses cpu_count - 1 threads (1 on a 2-core machine); use all.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(tempfile.gettempdir(), "pli-ultralytics"))
    import ultralytics as ul
    import ultralytics.utils.torch_utils as torch_utils

    torch_utils.NUM_THREADS = os.cpu_count() or 1
    return ul
