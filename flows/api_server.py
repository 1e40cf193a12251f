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

Run as ``python -m videosweep.flows.api_server PORT``, this module is that server.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

#: The launched process's exit code where Prefect's settings name a server: none is needed here.
NOT_NEEDED = 64
#: uvicorn's exit code when it could not start (its port taken between our choosing it and its binding it).
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


def start_prefect_api() -> Callable[[], None]:
    """Launch this process's Prefect API server, unless ``PREFECT_API_URL`` names one; return the call that waits
    until it answers, then points ``PREFECT_API_URL`` at it: this process's Prefect settings, and the
    environment of every process started after.

    The wait raises RuntimeError if the server exits before it answers (its own error is on the
    terminal) or does not answer within ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``.
    """
    if os.environ.get("PREFECT_API_URL") or ("prefect.settings" in sys.modules and not local_prefect_server()):
        return lambda: None  # named in the environment, or in settings this process has read already
    if "prefect.server.api.server" in sys.modules:  # Prefect may have started its own here already: that one, then
        return _prefect_own_server
    server = _Server()

    def wait() -> None:
        url = server.wait_until_answering(_startup_timeout_s())
        if url is None:
            return  # a profile names the server; this process's settings read it already
        from prefect.context import refresh_global_settings_context

        os.environ["PREFECT_API_URL"] = url
        refresh_global_settings_context()  # Prefect read its settings at import: without this it would start its own

    return wait


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
    loopback port. Stopped when this process exits, and by the run's reaper if this process is killed (it inherits
    the run's mark: tasks.children)."""

    def __init__(self) -> None:
        self.answered = False
        self.launches = 0
        self.process = self._launch()
        atexit.register(self.stop)

    def _launch(self) -> subprocess.Popen:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.launches += 1
        command = [sys.executable, "-m", "videosweep.flows.api_server", str(self.port)]
        return subprocess.Popen(command, stdin=subprocess.DEVNULL)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def wait_until_answering(self, timeout_s: float) -> str | None:
        """The API's URL once its health check answers; None where Prefect's settings name a server."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code == NOT_NEEDED:
                return None
            if code == STARTUP_FAILURE and self.launches < LAUNCHES:
                self.process = self._launch()
            elif code is not None:
                raise RuntimeError(f"the local Prefect API server exited with code {code} before it answered")
            if _answers(self.api_url):
                self.answered = True
                return self.api_url
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the local Prefect API server did not answer within {timeout_s:.0f} s")

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


def serve(port: int) -> None:
    """Serve Prefect's API on ``port`` as Prefect's own ephemeral server does, or exit NOT_NEEDED where Prefect's
    settings name a server."""
    import videosweep.flows  # noqa: F401  (the run's quiet Prefect defaults, for a launch from elsewhere too)

    if local_prefect_server():
        import threading

        import uvicorn

        os.environ |= {"PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1", "PREFECT_UI_ENABLED": "0"}
        threading.Thread(target=_first_requests, args=(f"http://127.0.0.1:{port}/api",), daemon=True).start()
        uvicorn.run("prefect.server.api.server:create_app", factory=True, host="127.0.0.1", port=port,
                    log_level="error", lifespan="on")  # fmt: skip
    else:
        sys.exit(NOT_NEEDED)


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
