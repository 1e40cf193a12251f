"""What the ``videosweep`` command does for its own process: exit codes, the log file, Ctrl-C.

- Exit codes: 0 all good; 1 some jobs failed, or videosweep hit a bug (then one line names the
  log file holding the traceback); 2 the input was wrong (tasks.errors.InputError: one line,
  nothing done); 130 interrupted by Ctrl-C (143 by SIGTERM).
- The log file (``$VIDEOSWEEP_HOME/logs/``) takes what libraries log (Prefect's flow and task
  logs, tracebacks of a crash): the terminal shows the progress bar, warnings and the summary.
  Dask's scheduler, nannies and workers (worker processes too, through :func:`dask_setup`) log
  there as well; their ERROR lines, something wrong, also reach the terminal.
- Ctrl-C: a terminal sends SIGINT to the whole process group, so the Prefect API server and Dask
  workers would die each in its own way (tracebacks, and a flow retrying a dead server for a
  minute). The command blocks SIGINT before it starts any of them (a child inherits a blocked
  signal) and takes it on a thread of its own: the job being exported finishes and is recorded
  (a few seconds at most), the job being rendered is left for the next run, every process the
  command started is ended, one line is printed, and the process exits.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import traceback
from datetime import datetime
from pathlib import Path

#: Seconds an interrupted run waits for the job being exported before it exits anyway.
EXPORT_GRACE_S = 20.0
#: Log files kept in $VIDEOSWEEP_HOME/logs (the newest).
KEPT_LOGS = 100
_log_path: Path | None = None
_owned = False  # the console script runs this process (setup_logging)
_stopping = threading.Lock()
#: What an interrupted command adds to its one line ("finished jobs are kept; ..." once a run is under way).
resume_hint: str | None = None


def log_path() -> Path:
    """This process's log file (created on first write)."""
    from videosweep.tasks.models import videosweep_home

    global _log_path
    if _log_path is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        _log_path = videosweep_home() / "logs" / f"videosweep-{stamp}-{os.getpid()}.log"
    return _log_path


def owned_log_path() -> Path | None:
    """This process's log file where the console script runs it (:func:`setup_logging`), else None."""
    return log_path() if _owned else None


def setup_logging() -> None:
    """videosweep's own warnings on the terminal, one plain line each; everything logged also in the log file.

    Called by the console script, which owns its process (a test calling the commands does not).
    """
    global _owned
    _owned = True
    # a handler that cannot write (Prefect's, to an API whose database is full) prints no traceback on the terminal
    logging.raiseExceptions = False
    _prune_logs(log_path().parent)
    log_file = _file_handler()
    ours = logging.getLogger("videosweep")
    ours.setLevel(logging.INFO)
    ours.propagate = False
    ours.handlers[:] = [_terminal(logging.WARNING, "warning: %(message)s"), log_file]


def _prune_logs(folder: Path, keep: int = KEPT_LOGS) -> None:
    """Delete all but the ``keep`` newest log files (one is written per command that logs anything)."""
    try:
        logs = sorted(folder.glob("videosweep-*.log"), key=lambda path: path.stat().st_mtime, reverse=True)
        for old in logs[keep:]:
            old.unlink(missing_ok=True)
    except OSError:  # a log folder we cannot tidy is no reason not to run
        pass


class _TerminalFormatter(logging.Formatter):
    """One printable line (tasks.text): a warning may quote a path or an error the user's input made."""

    def format(self, record: logging.LogRecord) -> str:
        from videosweep.tasks.text import printable

        return printable(super().format(record), 2000)


class _Terminal(logging.StreamHandler):
    """Lines for sys.stderr as it is when each is written: while the startup line or the progress bar shows, rich
    holds sys.stderr and prints a line above itself (written to the stream of before, it would land after the bar)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _ignored) -> None:
        pass


def _terminal(level: int, layout: str) -> logging.Handler:
    handler = _Terminal()
    handler.setLevel(level)
    handler.setFormatter(_TerminalFormatter(layout))
    return handler


def quiet_libraries() -> None:
    """Send what Prefect, Dask and other libraries log to the log file instead of the terminal (call after importing
    prefect); Dask's ERROR lines also to the terminal."""
    if not _owned:
        return
    _route_library_logs(_file_handler())


#: Dask's loggers: INFO and WARNING lines (a dashboard it cannot start, a worker it kills at shutdown) are for the
#: log file; ERROR and above (workers that died, a task that could not run) also for the terminal.
DASK_LOGGERS = ("distributed", "dask", "dask_cuda")
#: Dask ERROR lines that are no news on the terminal (the log file keeps them): a worker's heartbeat that found the
#: scheduler's connection closed, as when the scheduler closes first at a run's end; the worker carries on (Dask
#: logs and goes on), and one whose scheduler is really gone is ended with the run.
DASK_NOT_NEWS = ("Failed to communicate with scheduler during heartbeat",)
#: The log file a run's local Dask workers write to (set in their environment by :func:`dask_logging`).
LOG_FILE_VARIABLE = "VIDEOSWEEP_LOG_FILE"


def _route_library_logs(log_file: logging.Handler) -> None:
    for name in ("", "uvicorn", "fastapi", "prefect._internal"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [h for h in logger.handlers if not isinstance(h, logging.StreamHandler)] + [log_file]
    terminal = _terminal(logging.ERROR, "%(name)s: %(message)s")
    terminal.addFilter(lambda record: not str(record.msg).startswith(DASK_NOT_NEWS))
    for name in DASK_LOGGERS:  # and on to the root's log file
        logger = logging.getLogger(name)
        logger.handlers[:] = [terminal]
        logger.propagate = True


def dask_logging() -> dict[str, object]:
    """Keyword arguments for a local Dask cluster whose processes log as this one does (none unless it owns its logs).

    Distributed gives each worker process a handler of its own that writes INFO to stderr; the
    workers find the log file's path in their environment instead (Dask's
    ``distributed.nanny.environ``, which LocalCUDACluster keeps too) for :func:`dask_setup`, a
    preload. ``silence_logs`` sets Dask's terminal handlers, in every process of the cluster, to
    a level: ERROR, as here (distributed's default, WARNING, lets warnings through; before the
    preload runs in a worker, its own handler is the one on the terminal).
    """
    if not _owned:
        return {}
    import dask

    dask.config.set({f"distributed.nanny.environ.{LOG_FILE_VARIABLE}": str(log_path())})
    return {"silence_logs": logging.ERROR}


def dask_setup(worker) -> None:
    """Dask's preload hook, in each worker process of a run's local cluster (flows.cluster): what it logs goes to
    the run's log file, marked with its pid; ERROR and above also to the terminal."""
    path = os.environ.get(LOG_FILE_VARIABLE)
    if path:
        layout = "%(asctime)s %(levelname)s %(name)s [worker %(process)d]: %(message)s"
        _route_library_logs(_open_log(Path(path), layout))


def _file_handler() -> logging.Handler:
    handler = next((h for h in logging.getLogger("videosweep").handlers if isinstance(h, logging.FileHandler)), None)
    return handler or _open_log(log_path(), "%(asctime)s %(levelname)s %(name)s: %(message)s")


def _open_log(path: Path, layout: str) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, delay=True, encoding="utf-8")  # appends: a run's worker processes share it
    handler.setFormatter(logging.Formatter(layout))
    return handler


def report_bug(exc: BaseException) -> str:
    """Write ``exc``'s traceback to the log file; the one line to print."""
    text = "".join(traceback.format_exception(exc))
    try:
        path = log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{datetime.now().isoformat(timespec='seconds')} internal error\n{text}\n")
        where = f"the traceback is in {path}"
    except OSError as problem:  # the log cannot be written either: the traceback goes to the terminal after all
        sys.stderr.write(text)
        where = f"the log could not be written ({problem.strerror})"
    summary = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    return f"videosweep: internal error ({summary}); {where}. Please report it."


def handle_interrupts() -> None:
    """Take Ctrl-C (SIGINT) and SIGTERM as a clean stop of this process (see the module's docstring).

    Call from the main thread before any thread or child process starts.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    def wait_for_ctrl_c() -> None:
        signal.sigwait({signal.SIGINT})
        stop(130)

    def on_signal(number: int, frame) -> None:  # in the main thread: stop on a thread of its own, never raise here
        code = 128 + number
        threading.Thread(target=stop, args=(code,), name="videosweep-stop", daemon=True).start()

    threading.Thread(target=wait_for_ctrl_c, name="videosweep-interrupt", daemon=True).start()
    # a thread some library started with every signal unblocked may still take a SIGINT: no KeyboardInterrupt then either
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


def _silence_stderr() -> None:
    try:
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 2)
        os.close(quiet)
    except OSError:
        pass


def stop(code: int) -> None:
    """Let the job in hand finish exporting (bounded), end every child process, print one line, exit ``code``."""
    if not _stopping.acquire(blocking=False):
        return  # a second Ctrl-C while stopping: the first one is already on its way out
    # straight to the file descriptor: a progress bar may hold sys.stderr, and it will not get to print again
    line = "interrupted" + (f": {resume_hint}" if resume_hint else "") + "\n"
    if os.isatty(2):
        line = "\x1b[?25h\n" + line  # the progress bar hid the cursor; nothing else will show it again
    os.write(2, line.encode())
    from videosweep.tasks import children

    children.freeze_children()  # the Prefect server, Dask workers: still, and silent, from now on
    _silence_stderr()  # and this process's own threads too: that line is the last the terminal gets
    export = sys.modules.get("videosweep.tasks.render.export")  # not imported yet: no job can be exporting
    if export is not None:
        export.FINISHING.acquire(timeout=EXPORT_GRACE_S)  # and held: no other job starts exporting
    children.end_children()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
