"""Logging through the host (``host.log``): tagged with the extractor's
name, volume capped by the host. Natively, lines go to standard error."""

from __future__ import annotations

import sys

LEVELS = ("trace", "debug", "info", "warn", "error")


def log(level: str, message: str) -> None:
    """Writes one log line at ``level`` (trace, debug, info, warn, error)."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    try:
        from .component import host_log
    except ImportError:
        print(f"[{level}] {message}", file=sys.stderr)
        return
    host_log(level, message)
