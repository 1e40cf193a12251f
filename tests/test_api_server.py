"""The run's own Prefect API server (flows.api_server): launched without importing Prefect's server here, used by
this process's flows and the processes it starts, ended with it; not launched where Prefect's settings name one."""

import os
import socket
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from videosweep.flows import api_server
from videosweep.flows.api_server import NOT_NEEDED, STARTUP_FAILURE, _Server


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


def test_a_server_named_in_the_active_profile_is_not_launched_again(tmp_path):
    """Where Prefect's settings name a server (here a profile, not the environment), the launched process ends at once."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "profiles.toml").write_text('active = "lab"\n\n[profiles.lab]\nPREFECT_API_URL = "http://127.0.0.1:9/api"\n')
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
    assert done.stdout.split() == ["http://127.0.0.1:9/api", "None"]  # the profile's server; nothing exported
    assert time.monotonic() - started < 60


def fake_launches(monkeypatch, codes: list[int]) -> list[int]:
    """Launches of processes that exit with ``codes`` in turn (the last one repeated): what was launched."""
    launched: list[int] = []

    def launch(self):
        code = codes[min(len(launched), len(codes) - 1)]
        launched.append(code)
        self.launches = len(launched)
        self.port = 9  # nothing answers there
        return subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])

    monkeypatch.setattr(_Server, "_launch", launch)
    return launched


def test_a_server_that_exits_before_answering_is_reported_at_once(monkeypatch):
    launched = fake_launches(monkeypatch, [7])
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="exited with code 7 before it answered"):
        _Server().wait_until_answering(timeout_s=60)
    assert launched == [7] and time.monotonic() - started < 30


def test_a_port_taken_meanwhile_is_tried_again_on_another_then_reported(monkeypatch):
    launched = fake_launches(monkeypatch, [STARTUP_FAILURE])
    with pytest.raises(RuntimeError, match=f"exited with code {STARTUP_FAILURE}"):
        _Server().wait_until_answering(timeout_s=60)
    assert launched == [STARTUP_FAILURE] * api_server.LAUNCHES  # a few tries, not forever
    launched = fake_launches(monkeypatch, [STARTUP_FAILURE, NOT_NEEDED])
    assert _Server().wait_until_answering(timeout_s=60) is None  # the second launch found a server named
    assert launched == [STARTUP_FAILURE, NOT_NEEDED]


def test_a_server_named_already_launches_nothing(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.setattr(_Server, "__init__", lambda self: pytest.fail("launched a server"))
    api_server.start_prefect_api()()
