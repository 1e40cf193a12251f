"""This process's own Prefect API server, for a run where no Prefect setting names one (``PREFECT_API_URL``).

Prefect would start one itself for the first flow (``SubprocessASGIServer``: uvicorn serving
``prefect.server.api.server:create_app`` in ephemeral mode, in a subprocess) and wait 7-14 s for
it. Launched here instead, once the manifest and the output root have been checked, it boots on
another core while this process imports Prefect, torch and diffusers and loads the first pipeline.

The launch imports nothing here. Whether a server is needed at all depends on Prefect's settings
(an environment variable, or the active profile): the launched process reads them, importing the
Prefect it needs for the server anyway, and ends at once, saying so, where they name a server.
Measured on 2 cores (issue 16 §6): importing ``prefect.server`` in this process, as
``SubprocessASGIServer`` does, held the GIL against torch's import, so that the imports and the
server took 12 s and 13.8 s side by side; launched from another process, 6.5 s and 7 s.

The launched process writes to the run's log file (or, for a caller that keeps no log, a scratch
file), never to the terminal: a server that cannot start, or whose database fills up during the
run, is one line there, with the exception the log ends with, not pages of tracebacks.

Run as ``python -m videosweep.flows.api_server PORT``, this module is that server.
"""

from __future__ import annotations

import atexit
import errno
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from videosweep.tasks.errors import MIN_FREE_BYTES, InputError
from videosweep.tasks.text import printable

#: The launched process's exit code where Prefect's settings name a server: none is needed here.
NOT_NEEDED = 64
#: The launched process's exit code where the disk of Prefect's SQLite database has less than MIN_FREE_BYTES free.
NO_ROOM = 65
#: uvicorn's exit code when it could not start: its port taken between our choosing it and its binding it (tried
#: again on another), or the app's startup failed (its database could not be migrated, ...).
STARTUP_FAILURE = 3
#: Launches on a new port after a startup failure, before the failure is reported.
LAUNCHES = 3
#: Seconds a server that answered gets to stop when this process ends, before it is killed.
STOP_GRACE_S = 5.0
#: A flow's first requests (its client's API version check, then a read of runs), which a server that has just
#: started answers slowly (0.4 s for the first, measured); the server asks them of itself while the run imports torch.
FIRST_REQUESTS = [("GET", "/admin/version", None), ("POST", "/flow_runs/filter", b"{}")]


def local_prefect_server() -> bool:
    """Whether this process's flows need a Prefect API server of their own (no PREFECT_API_URL names one)."""
    from prefect.settings import PREFECT_API_URL

    return not PREFECT_API_URL.value()


def start_prefect_api(log: Path | None = None) -> Callable[[], None]:
    """Launch this process's Prefect API server, unless ``PREFECT_API_URL`` names one; return the call that waits
    until it answers, then points ``PREFECT_API_URL`` at it: this process's Prefect settings, and the
    environment of every process started after. The server appends to ``log``, by default this process's
    log file where it keeps one (flows.process), else to a scratch file.

    A server named in the environment is asked now, one named in a Prefect profile by the wait: if
    nothing answers there, InputError, as for a server launched here on a disk without room for its
    database. The wait raises RuntimeError, with the exception the server's output ends with, if it
    exits before it answers, or does not answer within ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``.
    """
    if os.environ.get("PREFECT_API_URL"):
        check_answers(os.environ["PREFECT_API_URL"], "the environment")
        return lambda: None
    if "prefect.settings" in sys.modules and not local_prefect_server():
        return _check_profile_server  # named in settings this process has read already
    if "prefect.server.api.server" in sys.modules:  # Prefect may have started its own here already: that one, then
        return _prefect_own_server
    from videosweep.flows import process

    server = _Server(log or process.owned_log_path())

    def wait() -> None:
        url = server.wait_until_answering(_startup_timeout_s())
        if url is None:
            _check_profile_server()  # a profile names the server; this process's settings read it already
            return
        from prefect.context import refresh_global_settings_context

        os.environ["PREFECT_API_URL"] = url
        refresh_global_settings_context()  # Prefect read its settings at import: without this it would start its own

    return wait


def check_answers(url: str, named_in: str) -> None:
    """InputError, saying what to do, if nothing answers at the API ``url`` (any HTTP answer will do: a server
    that wants a key still answers, as does one whose certificate only Prefect's settings may accept);
    ``named_in`` says where the URL came from."""
    try:
        urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=10).close()
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as problem:  # a URL urllib refuses too
        reason = getattr(problem, "reason", problem)
        if isinstance(reason, ssl.SSLError):  # PREFECT_API_TLS_INSECURE_SKIP_VERIFY, or a CA of Prefect's settings
            return
        raise InputError(  # one line, whatever the variable holds
            f"the Prefect server at PREFECT_API_URL={printable(url, 300)} (from {named_in}) does not answer "
            f"({printable(reason, 300)}); "
            "start it, or unset PREFECT_API_URL: a run then starts a server of its own"
        ) from None


def api_failure(exc: BaseException, log: Path | None = None) -> str | None:
    """One line saying that the Prefect API failed, where ``exc`` (or what caused it) is an HTTP error of its client,
    or a connection to it that failed (a server whose database is full, or that has died); None for anything else.
    A full disk that ``log`` (the run's log, where its server writes) ends up telling of is named with what to do."""
    import httpx

    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, httpx.HTTPError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    if isinstance(cause, httpx.HTTPStatusError):
        answer, request = cause.response, cause.request
        said = f"{answer.status_code} {answer.reason_phrase} to {request.method} {request.url.path}"
    else:
        said = str(cause).splitlines()[0][:300] if str(cause) else type(cause).__name__
    if log is not None and _DISK_FULL.search(_tail(log)):
        said += "; its database's disk is full: free some space under PREFECT_HOME, or set it to a folder on another disk"
    return f"the Prefect API failed ({said})"


def _tail(path: Path, size: int = 1 << 16) -> str:
    """The end of a text file ('' if it cannot be read)."""
    try:
        with open(path, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - size))
            return file.read().decode(errors="replace")
    except OSError:
        return ""


def _check_profile_server() -> None:
    """InputError if nothing answers at the server that Prefect's active profile names."""
    from prefect.settings import PREFECT_API_URL, PREFECT_PROFILES_PATH

    check_answers(PREFECT_API_URL.value(), f"the active profile in {PREFECT_PROFILES_PATH.value()}")


def _prefect_own_server() -> None:
    """Start (or find running) the ephemeral server Prefect's own client uses in this process, and point
    ``PREFECT_API_URL`` at it, for the processes started after (Dask workers)."""
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # one per process: the instance Prefect's client starts for a flow
    server.start(timeout=int(_startup_timeout_s()))
    os.environ["PREFECT_API_URL"] = server.api_url


def _startup_timeout_s() -> float:
    """Prefect's own limit on a local server's start (flows/__init__ sets 180 s by default)."""
    return float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"))


class _Server:
    """The launched process: Prefect's API in ephemeral mode (the services an ephemeral server runs, no UI) on a free
    loopback port, its output appended to ``log``. Stopped when this process exits, and by the run's reaper if this
    process is killed (it inherits the run's mark: tasks.children)."""

    def __init__(self, log: Path | None = None) -> None:
        self.answered = False
        self.launches = 0
        self.log = log
        self.output = self._open_output()
        self.output_start = self.output.tell()  # where this run's server starts writing to a shared log
        self.process = self._launch()
        atexit.register(self.stop)

    def _open_output(self) -> IO[bytes]:
        if self.log is None:
            return tempfile.TemporaryFile()  # read back only once the server has ended
        self.log.parent.mkdir(parents=True, exist_ok=True)
        return open(self.log, "a+b")  # noqa: SIM115 - the server appends to it until this process ends

    def _launch(self) -> subprocess.Popen:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.launches += 1
        command = [sys.executable, "-m", "videosweep.flows.api_server", str(self.port)]
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self.output, stderr=subprocess.STDOUT)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def wait_until_answering(self, timeout_s: float) -> str | None:
        """The API's URL once its health check answers; None where Prefect's settings name a server."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() == NOT_NEEDED:
                return None
            self.raise_if_failed()
            if _answers(self.api_url):
                self.answered = True
                return self.api_url
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the local Prefect API server did not answer within {timeout_s:.0f} s{self._said()}")

    def raise_if_failed(self) -> None:
        """If the server has ended without answering: launch it again where its port was taken meanwhile, else say why
        (InputError where its database has no room). Nothing where it has not ended, or where a server is named."""
        code = self.process.poll()
        if code is None or code == NOT_NEEDED:
            return
        if code == STARTUP_FAILURE and self.launches < LAUNCHES and _port_taken(self.port):
            self.process = self._launch()
        elif code == NO_ROOM:
            raise InputError(self.last_words() or "no room for Prefect's database: free some space under PREFECT_HOME")
        elif _DISK_FULL.search(words := self.last_words()):  # the disk filled up while the database was created
            raise InputError(f"Prefect's database ran out of room as the server started ({words}): free some space "
                             "under PREFECT_HOME, or set PREFECT_HOME to a folder on another disk")  # fmt: skip
        else:
            raise RuntimeError(f"the local Prefect API server exited with code {code} before it answered{self._said()}")

    def last_words(self) -> str:
        """The exception this server's output ends with (else its last line), as one line; '' if it wrote nothing."""
        self.output.flush()
        self.output.seek(self.output_start)
        lines = [line.strip() for line in self.output.read().decode(errors="replace").splitlines() if line.strip()]
        self.output.seek(0, os.SEEK_END)
        errors = [line for line in lines if _EXCEPTION_LINE.match(line)]
        return (errors or lines or [""])[-1][:500]

    def _said(self) -> str:
        """What the server's output ends with, and where that output is, for an error message."""
        said = "; ".join(part for part in (self.last_words(), f"its output: {self.log}" if self.log else "") if part)
        return f" ({said})" if said else ""

    def stop(self) -> None:
        """End the server: gently once it has answered (its database is in use), else at once (a refused run)."""
        if self.process.poll() is not None:
            return
        if not self.answered:
            self.process.kill()
        else:
            self.process.terminate()
            try:
                self.process.wait(STOP_GRACE_S)
                return
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()


#: What SQLite and the OS say when a disk is full.
_DISK_FULL = re.compile(r"database or disk is full|No space left on device")
#: A line naming an exception, as a traceback ends: ``sqlite3.OperationalError: database or disk is full``.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*:")


def _port_taken(port: int) -> bool:
    """Whether something holds ``port`` on the loopback (so the launch failed for want of it)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as problem:
            return problem.errno == errno.EADDRINUSE
    return False


def serve(port: int) -> None:
    """Serve Prefect's API on ``port`` as Prefect's own ephemeral server does, or exit NOT_NEEDED where Prefect's
    settings name a server, or NO_ROOM, saying so, where the disk of its SQLite database is (nearly) full."""
    import videosweep.flows  # noqa: F401  (the run's quiet Prefect defaults, for a launch from elsewhere too)

    if not local_prefect_server():
        sys.exit(NOT_NEEDED)
    from prefect.settings import get_current_settings

    problem = database_room_problem(get_current_settings().server.database.connection_url.get_secret_value())
    if problem:
        print(problem, file=sys.stderr, flush=True)
        sys.exit(NO_ROOM)
    import threading

    import uvicorn

    os.environ |= {"PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1", "PREFECT_UI_ENABLED": "0"}
    threading.Thread(target=_first_requests, args=(f"http://127.0.0.1:{port}/api",), daemon=True).start()
    uvicorn.run("prefect.server.api.server:create_app", factory=True, host="127.0.0.1", port=port,
                log_level="error", lifespan="on")  # fmt: skip


def database_room_problem(connection_url: str) -> str | None:
    """What is wrong, in one line, where ``connection_url`` is a SQLite file on a disk with less than MIN_FREE_BYTES
    free (its creation, or a run's events and logs, would fail halfway); None otherwise (another database too)."""
    if not connection_url.startswith("sqlite") or ":memory:" in connection_url or ":///" not in connection_url:
        return None
    database = Path(connection_url.split(":///", 1)[1].split("?", 1)[0]).expanduser()
    folder = next((path for path in (database.parent, *database.parents) if path.exists()), None)
    if folder is None:
        return None
    free = shutil.disk_usage(folder).free
    if free >= MIN_FREE_BYTES:
        return None
    return (
        f"the disk of Prefect's database {database} has {free / 2**20:.1f} MiB free, and a run needs "
        f"{MIN_FREE_BYTES / 2**20:.0f} MiB there: free some space, or set PREFECT_HOME to a folder on another disk"
    )


def _first_requests(api_url: str) -> None:
    """Ask the server's :data:`FIRST_REQUESTS` of it once it answers at all (on its own core, off the run's path)."""
    deadline = time.monotonic() + 600
    while not _answers(api_url) and time.monotonic() < deadline:
        time.sleep(0.1)
    for method, path, body in FIRST_REQUESTS:
        request = urllib.request.Request(f"{api_url}{path}", body, {"Content-Type": "application/json"}, method=method)
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return


def _answers(api_url: str) -> bool:
    """Whether the API at ``api_url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


if __name__ == "__main__":
    serve(int(sys.argv[1]))
