"""Guards of an output root: one run at a time, no process left behind by a killed run, room on the disk.

- A run holds an exclusive ``flock`` on ``OUT/.videosweep/lock`` while it renders; a second run
  on the same root refuses at once, naming the first (its run id, process, host, start). The
  kernel drops the lock when the holder dies, even by SIGKILL, so a killed run never blocks the
  next. (On a network file system that does not honour flock, give each machine its own root.)
- While it runs, the run lists the processes it started (Prefect API server, Dask workers,
  encoders) in ``OUT/.videosweep/processes.json``. A run that finds such a list from a run that
  is gone ends those processes first: a worker left behind by SIGKILL would hold a GPU all night.
- Before rendering, the free space of the root's disk must hold the estimated output.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .files import write_atomic
from .jobs import Job
from .plan import video_shape

STATE_DIR = ".videosweep"
#: Bytes an H.264 video (crf 17) takes per pixel of each frame, generously: generated video of
#: random-weight models (noise) measured ~0.15 here; real footage is far smaller.
BYTES_PER_PIXEL_FRAME = 0.25
#: Kept free on top of the estimate: results parts, grids, the report.
DISK_MARGIN_BYTES = 256 * 2**20


class RootBusy(RuntimeError):
    """Another run holds the output root."""


class NoRoom(RuntimeError):
    """The output disk cannot hold what the run will write."""


@contextmanager
def claim(out_root: Path, run_id: str, manifest: str, track_every: float = 1.0) -> Iterator[None]:
    """Hold ``out_root`` for one run: refuse if another run holds it, end what a killed run left behind."""
    folder = out_root / STATE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / "lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = _holder_text(handle.read())
        handle.close()
        raise RootBusy(
            f"{out_root} is being rendered by another run ({holder}); wait for it to finish, "
            "or give this run another output root with --out"
        ) from None
    handle.seek(0)
    handle.truncate()
    me = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(), "manifest": manifest,
          "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    handle.write(json.dumps(me))
    handle.flush()
    end_leftovers(folder / "processes.json")
    stop = threading.Event()
    tracker = threading.Thread(target=_track, args=(folder / "processes.json", stop, track_every), daemon=True)
    tracker.start()
    try:
        yield
    finally:
        stop.set()
        tracker.join()
        (folder / "processes.json").unlink(missing_ok=True)
        handle.truncate(0)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def end_leftovers(listing: Path) -> list[int]:
    """End the processes a run that is gone listed in ``listing``; return their pids."""
    import psutil

    if not listing.is_file():
        return []
    try:
        recorded = json.loads(listing.read_text())
    except (OSError, ValueError):
        return []
    owner = recorded.get("owner", {})
    if _alive(owner.get("pid"), owner.get("create_time")):
        return []  # its run is still going (on this host): not ours to end
    leftovers = []
    for entry in recorded.get("processes", []):
        if _alive(entry["pid"], entry["create_time"]):
            leftovers.append(psutil.Process(entry["pid"]))
    for process in leftovers:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(leftovers, timeout=10)
    listing.unlink(missing_ok=True)
    return [process.pid for process in leftovers]


def _track(listing: Path, stop: threading.Event, every: float) -> None:
    """Keep ``listing`` up to date with this process and every process below it."""
    import psutil

    me = psutil.Process()
    while True:
        try:
            processes = [{"pid": p.pid, "create_time": p.create_time()} for p in me.children(recursive=True)]
        except psutil.Error:  # a child ended while being listed: take the next round's list
            processes = None
        if processes is not None:
            document = {"owner": {"pid": me.pid, "create_time": me.create_time()}, "processes": processes}
            write_atomic(listing, lambda scratch: scratch.write_text(json.dumps(document)))
        if stop.wait(every):
            return


def _alive(pid: int | None, create_time: float | None) -> bool:
    """Whether the process ``pid`` started at ``create_time`` still runs (not another that reused the pid)."""
    import psutil

    if pid is None:
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
    return (
        f"run {holder.get('run_id')} of manifest {holder.get('manifest')!r}, process {holder.get('pid')} "
        f"on {holder.get('host')}, started {holder.get('started_at')}"
    )


def estimated_output_bytes(jobs: list[Job]) -> int:
    """What rendering ``jobs`` will write: their videos, at ``BYTES_PER_PIXEL_FRAME``."""
    return int(sum(math.prod(video_shape(job)) for job in jobs) * BYTES_PER_PIXEL_FRAME)


def check_room(out_root: Path, jobs: list[Job]) -> None:
    """Refuse to start when the disk of ``out_root`` cannot hold the estimated output and a margin."""
    out_root.mkdir(parents=True, exist_ok=True)
    needed = estimated_output_bytes(jobs) + DISK_MARGIN_BYTES
    free = shutil.disk_usage(out_root).free
    if free < needed:
        raise NoRoom(
            f"the disk of {out_root} has {free / 2**30:.2f} GiB free; {len(jobs)} jobs need about "
            f"{needed / 2**30:.2f} GiB (videos estimated at {BYTES_PER_PIXEL_FRAME} bytes per pixel per frame, "
            f"plus {DISK_MARGIN_BYTES // 2**20} MiB): free some space or choose another --out"
        )
