"""A tqdm progress bar on stderr, shown only on a terminal unless asked."""
from __future__ import annotations

import sys


class _Silent:
    def update(self, n=1):
        pass

    def set_postfix_str(self, s):
        pass

    def close(self):
        pass


def progress_bar(total: int, enabled=None, desc: str = ""):
    """``enabled``: True, False, or None for "when stderr is a terminal"."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return _Silent()
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, file=sys.stderr, unit="step", leave=False, dynamic_ncols=True)
