"""Files written aside and renamed: a reader (or a killed run) never sees half a file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(scratch)`` to a dot-name beside ``path`` (same suffix, so tools pick the same format), then rename.

    If ``write`` raises, the scratch file goes and ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(scratch)
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
    return path
