"""The one line between "your input is wrong" and "videosweep has a bug", and the one error that stops a run.

Every error a user can fix by changing what they gave (a manifest, an option, a folder, a
query) is an :class:`InputError`: the command line prints its message as one line and exits 2,
having done nothing. Anything else that escapes a command is a bug: the command line writes
the traceback to a log file and exits 1 with one line saying where that log is. An error of
one job is that job's record (``status`` failed), and the run goes on, except :class:`DiskFull`.
"""

from __future__ import annotations

import errno
import shutil
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Below this much free space on the output disk, a failed write counts as a full disk.
MIN_FREE_BYTES = 64 * 2**20


class InputError(ValueError):
    """The input is wrong (manifest, option, output folder, query): the message says where and how to fix it."""


class ReproduceError(InputError):
    """A job that cannot be found or rebuilt as recorded; the message says why and what would work."""


class DiskFull(OSError):
    """The output disk is full: the run stops (jobs already recorded are kept)."""


def stops_run(record: Mapping[str, Any]) -> bool:
    """Whether a job's record (as written, or read back) says the run cannot go on: its disk is full."""
    return record.get("error_type") == DiskFull.__name__


def is_disk_full(exc: BaseException, out_root: Path) -> bool:
    """Whether ``exc`` (or what caused it) says the disk of ``out_root`` is full; an OSError without a
    clear errno counts when the disk has almost no room left."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, DiskFull) or getattr(cause, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            return True
        cause = cause.__cause__ or cause.__context__
    if not isinstance(exc, OSError):
        return False
    try:
        return shutil.disk_usage(out_root).free < MIN_FREE_BYTES
    except OSError:
        return False


def describe(exc: BaseException) -> str:
    """A job's error as its record keeps it: the message and the innermost frames, enough to find the line."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    return f"{exc}"[:4000] + (f" [at {where}]" if where else "")
