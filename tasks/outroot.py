"""Guards of an output root: one run at a time, nothing of a killed run left behind, room on the disk.

- A run holds an exclusive ``flock`` on ``OUT/.videosweep/lock`` while it renders; a second run
  on the same root refuses at once, naming the first (its run id, process, host, start). The
  kernel drops the lock when the holder dies, even by SIGKILL, so a killed run never blocks the
  next. (On a network file system that does not honour flock, give each machine its own root.)
  Within one process the claim is re-entrant: the command line takes it before Prefect starts,
  and the flow inside takes it again.
- The processes a run starts carry its mark (tasks.children) and end with it. The mark is also
  written to ``OUT/.videosweep/processes.json``; the next run on the root ends what still carries
  it, should the run's watcher have died with it. Nothing is ended on the word of the file alone.
- Taking the root tidies what a killed run left: scratch files of processes that are gone
  (tasks.files), and results parts that cannot be read, set aside under ``results/_unreadable/``.
- Once a run has room to start, a small reserve file (``.videosweep/reserve``) keeps room for the
  records and report of a run whose disk fills: it is given up when a write finds the disk full
  (:func:`release_reserve`).
- Before rendering, the free space of the root's disk must hold the estimated output.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from . import children
from .errors import InputError
from .estimates import BYTES_PER_PIXEL_FRAME, estimated_output_bytes
from .files import remove_stale_scratch, write_atomic
from .jobs import Job
from .layout import OWNED_DIRS, STATE_DIR, WRITTEN_FILES
from .results import set_aside_unreadable

PROCESSES_FILE = "processes.json"
RESERVE_FILE = "reserve"
#: Bytes kept free for a run whose disk fills: its last records, its report and summary.
RESERVE_BYTES = 16 * 2**20
#: Kept free on top of the estimate: results parts, grids, the report.
DISK_MARGIN_BYTES = 256 * 2**20


class RootBusy(InputError):
    """Another run holds the output root (``holder``: which, in words)."""

    holder = "another run"


class NoRoom(InputError):
    """The output disk cannot hold what the run will write."""


class OutRootError(InputError):
    """The output root cannot be used: a file, not writable, or where the manifest itself lives."""


#: Output roots held here: resolved path -> (the thread holding it, the open lock file).
_HELD: dict[Path, tuple[int, object]] = {}


def default_out_root(manifest_name: str) -> Path:
    """Where a run renders without ``--out``: ``outputs/<manifest name>`` under the working directory."""
    return Path("outputs") / manifest_name


@contextmanager
def claim(out_root: Path, run_id: str | None, manifest: str) -> Iterator[None]:
    """Hold ``out_root`` for one run: refuse if another run holds it, tidy what a killed run left behind.

    The thread that holds a root may take it again (the command line, then the flow inside it);
    another thread, or another process, is another run and is refused.
    """
    key = out_root.resolve()
    holder = _HELD.get(key)
    if holder is not None and holder[0] == threading.get_ident():
        if run_id:
            _write_holder(holder[1], run_id, manifest)
        yield
        return
    folder = usable_root(out_root) / STATE_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / "lock", "a+")
    except OSError as exc:
        raise OutRootError(f"--out {out_root}: cannot write there ({exc.strerror}); choose another --out") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(out_root, handle) from None
    _HELD[key] = (threading.get_ident(), handle)
    try:
        try:
            _write_holder(handle, run_id, manifest)
            children.start_reaper()  # this process's children end with it, however it ends
            end_leftovers(folder / PROCESSES_FILE)
            mine = {"owner": {"pid": os.getpid(), "create_time": _create_time(os.getpid())}, "mark": children.token()}
            write_atomic(folder / PROCESSES_FILE, lambda scratch: scratch.write_text(json.dumps(mine)))
            tidy(out_root)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise NoRoom(f"the disk of {out_root} is full: free some space or choose another --out") from None
        yield
    finally:
        del _HELD[key]
        (folder / PROCESSES_FILE).unlink(missing_ok=True)
        os.ftruncate(handle.fileno(), 0)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def check_free(out_root: Path) -> None:
    """RootBusy, as :func:`claim` words it, if another run holds ``out_root`` now; creates nothing.

    For a command that should refuse before it reads the manifest or starts anything; the run
    still takes the root with :func:`claim` (the root may be taken in between).
    """
    key = out_root.resolve()
    holder = _HELD.get(key)
    if holder is not None and holder[0] == threading.get_ident():
        return
    try:
        handle = open(key / STATE_DIR / "lock")
    except OSError:  # no lock file (never rendered into), or not readable: claim says what is wrong
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)  # refused while a run holds it exclusively
        except BlockingIOError:
            raise _busy(out_root, handle) from None
        fcntl.flock(handle, fcntl.LOCK_UN)


def _busy(out_root: Path, handle) -> RootBusy:
    """The refusal naming the run that holds ``out_root`` (its lock file ``handle``, which is closed)."""
    handle.seek(0)
    holder = _holder_text(handle.read())
    handle.close()
    busy = RootBusy(
        f"{out_root} is being rendered by another run ({holder}); wait for it to finish, "
        "or give this run another output root with --out"
    )
    busy.holder = holder
    return busy


def usable_root(out_root: Path) -> Path:
    """``out_root``, created if need be; OutRootError if it is a file or cannot be written."""
    if out_root.exists() and not out_root.is_dir():
        raise OutRootError(f"--out {out_root} is a file, not a folder; choose another --out")
    try:
        out_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutRootError(f"--out {out_root}: cannot create it ({exc.strerror}); choose another --out") from None
    if not os.access(out_root, os.W_OK | os.X_OK):
        raise OutRootError(f"--out {out_root}: cannot write there (permission denied); choose another --out")
    return out_root


def check_manifest_location(manifest: Path, out_root: Path) -> None:
    """Refuse a manifest that lives where the run writes (``OUT/manifest.lock.yaml``, ``OUT/videos/``...)."""
    path, root = manifest.resolve(), out_root.resolve()
    if path in [root / name for name in WRITTEN_FILES] or any(root / name in path.parents for name in OWNED_DIRS):
        raise OutRootError(
            f"the manifest {manifest} lies where the run writes its own files in {out_root}; "
            "move it out of there (or choose another --out)"
        )


def tidy(out_root: Path) -> None:
    """Remove scratch files of processes that are gone; set aside results parts that cannot be read."""
    import psutil

    remove_stale_scratch(out_root, psutil.pid_exists)
    set_aside_unreadable(out_root)


def end_leftovers(listing: Path) -> list[int]:
    """End the processes of a run that is gone, as its ``listing`` names its mark; return their pids.

    Only processes of this user whose environment carries that mark are ended (tasks.children):
    a pid written in a file proves nothing.
    """
    if not listing.is_file():
        return []
    try:
        recorded = json.loads(listing.read_text())
        owner, mark = recorded["owner"], recorded["mark"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if not isinstance(mark, str) or not mark or not isinstance(owner, dict):
        return []
    if _alive(owner.get("pid"), owner.get("create_time")):
        return []  # its run is still going (on this host): not ours to end
    return children.end_marked(mark)


def release_reserve(out_root: Path) -> bool:
    """Give up the root's reserve file (the disk is full): True if there was one to free."""
    reserve = out_root / STATE_DIR / RESERVE_FILE
    try:
        reserve.unlink()
    except OSError:
        return False
    return True


def keep_reserve(out_root: Path) -> None:
    """Keep :data:`RESERVE_BYTES` of the disk for the end of a run whose disk fills (best effort)."""
    path = out_root / STATE_DIR / RESERVE_FILE
    try:
        if path.is_file() and path.stat().st_size >= RESERVE_BYTES:
            return
        with open(path, "wb") as reserve:
            try:
                os.posix_fallocate(reserve.fileno(), 0, RESERVE_BYTES)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                reserve.write(bytes(RESERVE_BYTES))
    except OSError:  # no room even for that: the room check says so in its own words
        path.unlink(missing_ok=True)


def _write_holder(handle, run_id: str | None, manifest: str) -> None:
    me = {"run_id": run_id or "starting", "pid": os.getpid(), "host": socket.gethostname(), "manifest": manifest,
          "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    # unbuffered: a disk too full for these bytes leaves nothing pending for a later flush (truncate, close) to
    # raise again over the NoRoom that says what is wrong; O_APPEND ("a+") writes them at the emptied file's start
    os.ftruncate(handle.fileno(), 0)
    os.write(handle.fileno(), json.dumps(me).encode())


def _create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _alive(pid: int | None, create_time: float | None) -> bool:
    """Whether the process ``pid`` started at ``create_time`` still runs (not another that reused the pid)."""
    import psutil

    if not isinstance(pid, int) or not isinstance(create_time, (int, float)):
        return False
    try:
        return abs(psutil.Process(pid).create_time() - create_time) < 0.01
    except psutil.Error:
        return False


def _holder_text(text: str) -> str:
    try:
        holder = json.loads(text)
    except ValueError:
        return "unknown holder"
    if not isinstance(holder, dict):
        return "unknown holder"
    return (
        f"run {holder.get('run_id')} of manifest {holder.get('manifest')!r}, process {holder.get('pid')} "
        f"on {holder.get('host')}, started {holder.get('started_at')}"
    )


def check_room(out_root: Path, jobs: list[Job]) -> None:
    """Refuse to start when the disk of ``out_root`` cannot hold the estimated output and a margin."""
    out_root.mkdir(parents=True, exist_ok=True)
    needed = estimated_output_bytes(jobs) + DISK_MARGIN_BYTES
    free = shutil.disk_usage(out_root).free
    if free < needed:
        raise NoRoom(
            f"the disk of {out_root} has {_size(free)} free; {len(jobs)} jobs need about "
            f"{_size(needed)} (videos estimated at {BYTES_PER_PIXEL_FRAME} bytes per pixel per frame, "
            f"plus {DISK_MARGIN_BYTES // 2**20} MiB): free some space or choose another --out"
        )


def _size(count: int) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"
