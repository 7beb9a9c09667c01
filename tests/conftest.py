"""Session-wide test setup: generated kernels go to a temporary cache folder."""
from __future__ import annotations

import os
import tempfile


def pytest_configure(config):
    # One folder for the whole session (kernels are reused across tests), and
    # never the user's ~/.cache.  An explicit SYMDL_CACHE_DIR is respected.
    os.environ.setdefault("SYMDL_CACHE_DIR", tempfile.mkdtemp(prefix="symdl-tests-"))
