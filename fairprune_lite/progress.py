"""Progress and quiet mode: one reading of ``FAIRPRUNE_QUIET`` and of "is stderr a terminal".

A bar is drawn only when asked for, on a terminal, and not silenced by ``FAIRPRUNE_QUIET``
(``1``/``true``/``yes``/``on``); piped or logged output gets no bar (a bar redrawn into a file
is a flood of ``fit: 0%|`` lines).
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["quiet_from_env", "stderr_is_terminal", "progress_enabled", "progress_bar"]


def quiet_from_env() -> bool:
    """Whether ``FAIRPRUNE_QUIET`` asks for quiet mode (``1``/``true``/``yes``/``on``)."""
    return os.environ.get("FAIRPRUNE_QUIET", "").strip().lower() in ("1", "true", "yes", "on")


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (False for a replaced or closed stream)."""
    try:
        return bool(sys.stderr is not None and sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


def progress_enabled(requested: bool) -> bool:
    """Whether to draw a progress bar: requested, stderr is a terminal, and ``FAIRPRUNE_QUIET``
    is not set."""
    return bool(requested) and not quiet_from_env() and stderr_is_terminal()


def progress_bar(total: int, enabled: bool, desc: str) -> Any:
    """A ``tqdm`` bar of ``total`` steps named ``desc`` when :func:`progress_enabled`, else None."""
    if not progress_enabled(enabled):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)
