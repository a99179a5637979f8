"""Where the file cache lives when nobody says."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``PPAUTH_CACHE_DIR`` or the platform's user cache directory."""
    env = os.environ if environ is None else environ
    if env.get("PPAUTH_CACHE_DIR"):
        return Path(env["PPAUTH_CACHE_DIR"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("requests-ppauth", appauthor=False))
