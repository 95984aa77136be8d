"""Where the package caches what it builds (converted models, generated datasets)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_CACHE", "cache_root"]

ENV_CACHE = "AUTO_CIRCUIT_DCD_CACHE"


def cache_root() -> Path:
    """``$AUTO_CIRCUIT_DCD_CACHE`` or ``~/.cache/auto-circuit-dcd``."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "auto-circuit-dcd"
