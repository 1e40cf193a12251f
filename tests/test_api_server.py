"""The run's own Prefect API server (flows.api_server): launched without importing Prefect's server here, used by
this process's flows and the processes it starts, ended with it; not launched where Prefect's settings name one.
A server named but not answering, or one that cannot start (its database's disk full), is one line, never pages
of tracebacks on the terminal; so is a Prefect API that fails during the run."""

import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import psutil
import pytest

from videosweep.flows import api_server
from videosweep.flows.api_server import NO_ROOM, NOT_NEEDED, STARTUP_FAILURE, _Server, api_failure, check_answers
from videosweep.tasks.errors import MIN_FREE_BYTES, InputError


def run_python(code: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=timeout)


def test_a_flow_runs_on_the_launched_server_which_ends_with_the_process(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"} | {"PREFECT_HOME": str(tmp_path / "home")}
    done = run_python(
        """
        import os, sys
        import videosweep.flows
        from videosweep.flows.api_server import start_prefect_api

        wait = start_prefect_api()  # nothing of Prefect imported yet: the launched process reads the settings
        assert "prefect" not in sys.modules, "the launch imported Prefect"
        wait()
        from prefect import flow
        from prefect.context import FlowRunContext

        @flow
        def hello():
            return FlowRunContext.get().client.api_url

        print(os.environ["PREFECT_API_URL"], hello(), "prefect.server.api.server" in sys.modules, os.getpid())
        """,
        env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    url, used, imported, pid = done.stdout.split()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/api")
    assert used.rstrip("/") == url  # the flow ran on it: Prefect started no server of its own
    assert imported == "False"  # nor was Prefect's server imported in the process that renders
    port = int(url.split(":")[2].split("/")[0])
    with socket.socket() as probe:  # the process has exited, and its server with it
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the server outlived the process that launched it"
    launched = ["videosweep.flows.api_server", str(port)]
    assert not [p for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [])[-2:] == launched]


@pytest.fixture
def answering():
    """The URL of an API whose health check answers ``answering.status`` (200 unless a test sets another)."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(answering.status)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    answering.status = 200
    answering.url = f"http://127.0.0.1:{server.server_address[1]}/api"
    yield answering
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the socket is closed


def test_a_server_named_in_the_active_profile_is_not_launched_again(tmp_path, answering):
    """Where Prefect's settings name a server (here a profile, not the environment), the launched process ends at once;
    the wait asks the named server, and says where it was named if nothing answers there."""
    home = tmp_path / "home"
    home.mkdir()
    profiles = home / "profiles.toml"
    profiles.write_text(f'active = "lab"\n\n[profiles.lab]\nPREFECT_API_URL = "{answering.url}"\n')
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"} | {"PREFECT_HOME": str(home)}
    started = time.monotonic()
    launched = subprocess.run([sys.executable, "-m", "videosweep.flows.api_server", "0"], env=env, capture_output=True, timeout=60)
    assert launched.returncode == NOT_NEEDED, launched.stderr[-2000:]
    done = run_python(
        """
        import os
        from videosweep.flows.api_server import start_prefect_api
        start_prefect_api()()
        from prefect.settings import PREFECT_API_URL
        print(PREFECT_API_URL.value(), os.environ.get("PREFECT_API_URL"))
        """,
        env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [answering.url, "None"]  # the profile's server; nothing exported
    assert time.monotonic() - started < 60
    dead = f"http://127.0.0.1:{closed_port()}/api"
    profiles.write_text(f'active = "lab"\n\n[profiles.lab]\nPREFECT_API_URL = "{dead}"\n')
    refused = run_python("from videosweep.flows.api_server import start_prefect_api; start_prefect_api()()", env)
    said = refused.stderr.strip().splitlines()[-1]
    assert refused.returncode == 1 and said.startswith("videosweep.tasks.errors.InputError: ")
    assert f"PREFECT_API_URL={dead} (from the active profile in {profiles}) does not answer" in said


def fake_launches(monkeypatch, runs: list[tuple[int, str]], taken: bool = False) -> list[int]:
    """Launches of processes that print ``runs[i][1]`` and exit with ``runs[i][0]`` in turn (the last one repeated),
    on a port something else holds (``taken``) or one nobody does: the exit codes launched."""
    launched: list[int] = []
    held: list[socket.socket] = []

    def launch(self):
        code, says = runs[min(len(launched), len(runs) - 1)]
        launched.append(code)
        self.launches = len(launched)
        if taken:
            held.append(socket.socket())
            held[-1].bind(("127.0.0.1", 0))
            held[-1].listen()
            self.port = held[-1].getsockname()[1]
        else:
            self.port = closed_port()
        code = f"import sys; print({says!r}, file=sys.stderr); raise SystemExit({code})"
        return subprocess.Popen([sys.executable, "-c", code], stdout=self.output, stderr=subprocess.STDOUT)

    monkeypatch.setattr(_Server, "_launch", launch)  # with the sockets it holds, until the test ends
    return launched


TRACEBACK = "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: the app could not start\nExiting."


def test_a_server_that_exits_before_answering_is_reported_at_once_with_what_it_said(monkeypatch, tmp_path):
    log = tmp_path / "run.log"
    log.write_text("earlier lines of the run's log\nKeyError: not the server's\n")
    launched = fake_launches(monkeypatch, [(7, TRACEBACK)])
    started = time.monotonic()
    with pytest.raises(RuntimeError) as failed:
        _Server(log).wait_until_answering(timeout_s=60)
    assert launched == [7] and time.monotonic() - started < 30
    assert str(failed.value) == (
        f"the local Prefect API server exited with code 7 before it answered (ValueError: the app could not start; "
        f"its output: {log})"
    )
    assert log.read_text().endswith("Exiting.\n")  # its output went to the log, after the run's own lines


def test_a_port_taken_meanwhile_is_tried_again_on_another_then_reported(monkeypatch):
    launched = fake_launches(monkeypatch, [(STARTUP_FAILURE, "[Errno 98] address already in use")], taken=True)
    with pytest.raises(RuntimeError, match=f"exited with code {STARTUP_FAILURE} .*address already in use"):
        _Server().wait_until_answering(timeout_s=60)
    assert launched == [STARTUP_FAILURE] * api_server.LAUNCHES  # a few tries, not forever
    launched = fake_launches(monkeypatch, [(STARTUP_FAILURE, ""), (NOT_NEEDED, "")], taken=True)
    assert _Server().wait_until_answering(timeout_s=60) is None  # the second launch found a server named
    assert launched == [STARTUP_FAILURE, NOT_NEEDED]


def test_a_startup_failure_on_a_free_port_is_not_tried_again(monkeypatch):
    launched = fake_launches(monkeypatch, [(STARTUP_FAILURE, TRACEBACK)])
    with pytest.raises(RuntimeError, match="ValueError: the app could not start"):
        _Server().wait_until_answering(timeout_s=60)
    assert launched == [STARTUP_FAILURE]


def test_no_room_for_the_database_is_input_error_saying_what_to_do(monkeypatch):
    line = "the disk of Prefect's database /x/prefect.db has 1.0 MiB free, and a run needs 64 MiB there: ..."
    fake_launches(monkeypatch, [(NO_ROOM, line)])
    with pytest.raises(InputError) as refused:
        _Server().wait_until_answering(timeout_s=60)
    assert str(refused.value) == line
    full = "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database or disk is full\nstartup failed."
    fake_launches(monkeypatch, [(STARTUP_FAILURE, full)])  # the disk filled up while the database was created
    with pytest.raises(InputError, match=r"ran out of room as the server started \(sqlalchemy.exc.OperationalError: .*"
                                         r"database or disk is full\): free some space under PREFECT_HOME"):  # fmt: skip
        _Server().wait_until_answering(timeout_s=60)


Usage = namedtuple("Usage", "total used free")


def test_the_database_room_is_checked_where_the_database_is(monkeypatch, tmp_path):
    asked = []

    def disk_usage(path):
        asked.append(path)
        return Usage(2**40, 0, MIN_FREE_BYTES - 1)

    monkeypatch.setattr(api_server.shutil, "disk_usage", disk_usage)
    said = api_server.database_room_problem(f"sqlite+aiosqlite:///{tmp_path}/new/deeper/prefect.db")
    assert asked == [tmp_path]  # the nearest folder that exists: Prefect creates the rest
    assert said.startswith(f"the disk of Prefect's database {tmp_path}/new/deeper/prefect.db has 64.0 MiB free")
    assert said.endswith("set PREFECT_HOME to a folder on another disk")
    assert api_server.database_room_problem("postgresql+asyncpg://user@db/prefect") is None
    assert api_server.database_room_problem("sqlite+aiosqlite:///:memory:") is None
    monkeypatch.setattr(api_server.shutil, "disk_usage", lambda path: Usage(2**40, 0, MIN_FREE_BYTES))
    assert api_server.database_room_problem(f"sqlite+aiosqlite:///{tmp_path}/prefect.db?timeout=5") is None


def test_a_named_server_is_asked_and_any_answer_will_do(answering):
    check_answers(answering.url, "the environment")
    answering.status = 401  # a server that wants a key is there all the same
    check_answers(answering.url, "the environment")
    dead = f"http://127.0.0.1:{closed_port()}/api"
    with pytest.raises(InputError, match=rf"^the Prefect server at PREFECT_API_URL={dead} \(from the environment\) "
                                         r"does not answer \(.*refused\); start it, or unset PREFECT_API_URL"):  # fmt: skip
        check_answers(dead, "the environment")
    with pytest.raises(InputError, match="PREFECT_API_URL=127.0.0.1:4200/api .* does not answer"):
        check_answers("127.0.0.1:4200/api", "the environment")  # no scheme
    with pytest.raises(InputError, match="does not answer .*control characters"):
        check_answers("http://127.0.0.1:9/a\x1b[31mpi\nEVIL", "the environment")  # pasted with a terminal escape


def test_a_certificate_only_prefect_may_accept_is_an_answer(monkeypatch):
    def urlopen(url, timeout):
        raise urllib.error.URLError(ssl.SSLCertVerificationError("self-signed certificate"))

    monkeypatch.setattr(api_server.urllib.request, "urlopen", urlopen)
    check_answers("https://prefect.lab.internal/api", "the environment")  # Prefect's own TLS settings decide


def test_a_failing_prefect_api_is_one_line(tmp_path):
    request = httpx.Request("POST", "http://127.0.0.1:4200/api/flow_runs/1234/set_state")
    refused = httpx.HTTPStatusError("Server error '500 ...' for url ...", request=request, response=httpx.Response(500))
    try:
        try:
            raise refused
        except httpx.HTTPError as exc:
            raise RuntimeError("the flow run's state") from exc
    except RuntimeError as wrapped:
        caught = wrapped
    assert api_failure(caught) == "the Prefect API failed (500 Internal Server Error to POST /api/flow_runs/1234/set_state)"
    log = tmp_path / "run.log"
    log.write_text("... sqlite3.OperationalError: database or disk is full\n")
    assert api_failure(caught, log).endswith("set_state; its database's disk is full: free some space under PREFECT_HOME, "
                                             "or set it to a folder on another disk)")  # fmt: skip
    assert api_failure(httpx.ConnectError("[Errno 111] Connection refused")) == (
        "the Prefect API failed ([Errno 111] Connection refused)"
    )
    assert api_failure(ValueError("a bug of ours")) is None


def test_a_server_named_already_launches_nothing(monkeypatch, answering):
    monkeypatch.setenv("PREFECT_API_URL", answering.url)
    monkeypatch.setattr(_Server, "__init__", lambda self, log=None: pytest.fail("launched a server"))
    api_server.start_prefect_api()()
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{closed_port()}/api")
    with pytest.raises(InputError, match="from the environment"):  # asked at once, before the run imports torch
        api_server.start_prefect_api()
