"""The processes a run starts, and only those: marked at birth, ended with the run.

A run starts processes it does not spawn itself: the Prefect API server (Prefect's own
subprocess), Dask workers (spawned by Dask's nanny), ffmpeg encoders. Each inherits the run's
environment, so :func:`adopt` puts a mark in it (``VIDEOSWEEP_OWNER=<token>``, a token new to
each process that adopts) before any of them starts: a process carrying this token, run by this
user, is provably this run's, whatever a file on disk says.

:func:`start_reaper` starts a small watcher in a session of its own, holding the read end of a
pipe whose write end only this process has. When this process ends, however it ends (SIGKILL
included), the pipe closes and the watcher ends every process still carrying the token, within
a second. A later run on the same output root does the same from the token listed in
``.videosweep/processes.json`` (:func:`end_marked`), in case the watcher was killed too.

Run as ``python -m videosweep.tasks.children TOKEN``, this module is that watcher; as a Dask preload, it
keeps the terminal's Ctrl-C from a run's local workers (:func:`dask_setup`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

MARK = "VIDEOSWEEP_OWNER"
#: Seconds between the watcher's looks at the run's processes while the run lives.
WATCH_EVERY_S = 2.0
_reaper: subprocess.Popen | None = None


def adopt() -> str:
    """Mark this process's environment (and so every process it starts from now on); return its token.

    Idempotent within a process; a token inherited from a parent is replaced, so a run started by
    another run's process (a Prefect worker's flow run) is reaped on its own, not with its parent.
    """
    token = os.environ.get(MARK, "")
    if not token.startswith(f"{os.getpid()}-"):
        token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        os.environ[MARK] = token
    return token


def token() -> str | None:
    """This process's token, if it has adopted one."""
    current = os.environ.get(MARK, "")
    return current if current.startswith(f"{os.getpid()}-") else None


def start_reaper() -> None:
    """Start the watcher that ends this process's marked children when this process ends (once per process)."""
    global _reaper
    mark = adopt()
    if _reaper is not None and _reaper.poll() is None:
        return
    environment = {key: value for key, value in os.environ.items() if key != MARK}  # it must not end itself
    _reaper = subprocess.Popen(
        [sys.executable, "-m", "videosweep.tasks.children", mark],
        stdin=subprocess.PIPE,  # its read end; the write end stays here, closed by the kernel when this process ends
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a terminal's Ctrl-C or a kill of this process group does not reach it
        env=environment,
        cwd="/",
    )


def marked(mark: str) -> list:
    """This user's processes (psutil) whose environment carries ``mark``; never this process."""
    import psutil

    found = []
    me, uid = os.getpid(), os.getuid()
    for process in psutil.process_iter(["uids"]):
        try:
            if process.pid == me or process.info["uids"] is None or process.info["uids"].real != uid:
                continue
            if process.environ().get(MARK) == mark:
                found.append(process)
        except (psutil.Error, OSError):  # gone, or not ours to read
            continue
    return found


def end_marked(mark: str, rounds: int = 3) -> list[int]:
    """SIGKILL every process carrying ``mark`` (a few rounds, for those started meanwhile); return their pids."""
    ended: list[int] = []
    for _ in range(rounds):
        found = marked(mark)
        if not found:
            break
        ended += _kill(found)
    return ended


def _kill(processes: list) -> list[int]:
    """Stop them all first, then SIGKILL them: none gets to react to another's death (a Dask worker
    losing its scheduler, multiprocessing's resource tracker losing its clients) with tracebacks."""
    import psutil

    for process in processes:
        try:
            process.suspend()
        except psutil.Error:
            pass
    killed = []
    for process in processes:
        try:
            process.kill()
            killed.append(process.pid)
        except psutil.Error:
            pass
    psutil.wait_procs(processes, timeout=5)
    return killed


def freeze_children() -> None:
    """SIGSTOP every process below this one but its own ffmpeg encoders: from now on none prints, dies or
    respawns (a Dask worker losing its scheduler, a nanny restarting it) while this one finishes the
    export in hand; :func:`end_children` ends them."""
    import psutil

    me = os.getpid()
    try:
        below = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for process in below:
        try:
            if _reaper is not None and process.pid == _reaper.pid:
                continue
            if process.ppid() == me and process.name().startswith("ffmpeg"):
                continue  # the export being finished needs it
            process.suspend()
        except psutil.Error:
            pass


def end_children() -> list[int]:
    """SIGKILL every process this one started that is still running (marked or below it); return their pids."""
    import psutil

    try:
        below = psutil.Process().children(recursive=True)
    except psutil.Error:
        below = []
    reaper = _reaper.pid if _reaper is not None else None
    ended = _kill([process for process in below if process.pid != reaper])
    mark = token()
    return ended + (end_marked(mark) if mark else [])


def dask_setup(worker) -> None:
    """Dask's preload hook, in each worker of a run's local cluster (flows.cluster): ignore the terminal's
    Ctrl-C, which reaches the whole process group; the run that started the worker ends it, quietly."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _watch(mark: str) -> None:
    """The watcher: wait for the pipe from the run's process to close, then end what carries its mark.

    While it waits it keeps a list of the run's descendants, a few seconds old (cheaper than reading
    every process's environment), so that they are stopped at once when the run dies, before a Dask
    worker has time to report its lost scheduler; then it looks for every process with the mark.
    """
    import select

    import psutil

    try:
        run = psutil.Process(os.getppid())
    except psutil.Error:
        run = None
    known: list = []
    while True:
        try:
            ready, _, _ = select.select([0], [], [], WATCH_EVERY_S)
            if ready and not os.read(0, 65536):
                break
        except OSError:
            break
        if not ready and run is not None:
            try:
                known = [process for process in run.children(recursive=True) if process.pid != os.getpid()]
            except psutil.Error:
                pass
    _kill(known)
    end_marked(mark)


if __name__ == "__main__":
    _watch(sys.argv[1])
