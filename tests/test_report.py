"""OUT/report.html: self-contained and escaped, and in a real headless Chromium the table, sorting and grids work.

Chromium is Debian's package, driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``):
no port, no network, no extra Python dependency.
"""

import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from PIL import Image

from videosweep.tasks.report import write_report
from videosweep.tasks.results import write_record
from videosweep.tasks.video import write_mp4

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
GRID_SIZE = (48, 64)  # height, width of the drawn grids
XSS = "<script>window.injected = 1</script>"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
]


def clip(frames: int, height: int, width: int, shade: int) -> np.ndarray:
    """A bar sliding right over a flat background: frames that differ, cheap to encode."""
    video = np.full((frames, height, width, 3), shade, np.uint8)
    for index in range(frames):
        video[index, :, index * width // frames : index * width // frames + 4] = 255
    return video


@pytest.fixture(scope="module")
def out_root(tmp_path_factory) -> Path:
    """A 2x2 sweep (motion_bucket_id x seed), one job failed, one grid per seed, and its report."""
    root = tmp_path_factory.mktemp("report")
    index = 0
    for motion in (60, 180):
        for seed in (42, 43):
            index += 1
            job_id = f"{index:x}" * 16
            failed = (motion, seed) == (180, 42)
            record = {
                "job_id": job_id,
                "run_id": "run-1",
                "attempt": 1,
                "status": "failed" if failed else "ok",
                "manifest_name": "demo",
                "job_index": index,
                "model": "tiny-svd",
                "sweep_json": json.dumps({"motion_bucket_id": motion, "seed": seed}),
                "motion_bucket_id": motion,
                "seed": seed,
                "device": "cpu",
                "torch_version": "2.13.0",
                "total_s": [None, 3.5, 1.25, 40.0, 2.0][index],  # the sort test checks this order
                "queued_at": T0,
                "started_at": T0 + timedelta(seconds=index),
                "finished_at": T0 + timedelta(seconds=index + 1),
            }
            if failed:
                record.update(error_type="RuntimeError", error=XSS)
            else:
                video = f"videos/{job_id}.mp4"
                write_mp4(clip(4, 16, 16, 40 * index), 8, root / video)
                record.update(video_path=video, motion_score=motion / 1000 + seed / 1e5, flicker=0.001)
            write_record(root, record)
    (root / "grids").mkdir()
    for seed in (42, 43):
        name = f"motion_bucket_id-seed-{seed}"
        frames = clip(4, *GRID_SIZE, shade=seed)
        write_mp4(frames, 8, root / "grids" / f"{name}.mp4")
        images = [Image.fromarray(frame) for frame in frames]
        images[0].save(root / "grids" / f"{name}.webp", save_all=True, append_images=images[1:], duration=125, loop=0)
        sidecar = {
            "name": name,
            "title": f"motion_bucket_id <i>&</i> seed={seed}",
            "mp4": f"grids/{name}.mp4",
            "preview": f"grids/{name}.webp",
            "x": "motion_bucket_id",
            "y": None,
            "z": "seed",
            "z_value": seed,
            "fixed": {"model": "tiny-svd"},
            "rows": 1,
            "cols": 2,
            "frames": 4,
            "fps": 8,
            "width": GRID_SIZE[1],
            "height": GRID_SIZE[0],
            "cells": [
                {"row": 0, "col": col, "job_id": None, "x": motion, "y": None, "status": "ok"}
                for col, motion in enumerate((60, 180))
            ],
        }
        (root / "grids" / f"{name}.json").write_text(json.dumps(sidecar))
    write_report(root)
    return root


def test_report_is_written_whole_and_self_contained(out_root: Path):
    page = (out_root / "report.html").read_text()
    assert not [path for path in out_root.rglob(".*")], "scratch files left behind"
    assert "<script src" not in page and "stylesheet" not in page
    references = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(references) == 2 * 4 + 3 + 1  # per grid: mp4 source, preview, two links; 3 videos; the favicon
    for reference in references:
        if reference != "data:,":
            assert not urlparse(reference).scheme and (out_root / unquote(reference)).is_file(), reference


def test_report_escapes_values_and_tells_the_summary(out_root: Path):
    page = (out_root / "report.html").read_text()
    assert XSS not in page and "&lt;script&gt;window.injected = 1&lt;/script&gt;" in page
    assert "<i>" not in page and "motion_bucket_id &lt;i&gt;&amp;&lt;/i&gt; seed=42" in page
    assert "this grid: seed=42" in page and "fixed: model=tiny-svd" in page
    assert "4: 3 ok, 1 failed, 0 skipped" in page and "torch 2.13.0" in page


def test_a_root_without_results_or_grids_gets_a_page(tmp_path: Path):
    page = write_report(tmp_path).read_text()
    assert "No results yet." in page and "No grids in this output root." in page


# --- in a real browser --------------------------------------------------------------------------------


def chromium_binary() -> str:
    """Debian's chromium; installed with apt-get where we may (root), else the test is skipped saying why."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("needs Debian's chromium package (/usr/bin/chromium): `apt-get install chromium` as root")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    output = ""
    for command in (["install", "-y", "chromium"], ["update"], ["install", "-y", "chromium"]):
        done = subprocess.run(["apt-get", *command], capture_output=True, text=True, env=environment, timeout=900)
        output = done.stdout + done.stderr
        if command[0] == "install" and done.returncode == 0:
            break
    return shutil.which("chromium") or pytest.skip(f"chromium could not be installed: {output[-500:]}")


def above_4(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class Chromium:
    """Headless Chromium driven over the DevTools protocol: JSON messages ending in NUL, on fds 3 and 4."""

    def __init__(self, binary: str, profile: Path):
        # Chromium reads commands on fd 3 and writes replies on fd 4; the pipe ends are moved above both first,
        # so that the redirections cannot overwrite one end with the other (bash: dash refuses fds above 9).
        commands_read, self._commands = map(above_4, os.pipe())
        self._replies, replies_write = map(above_4, os.pipe())
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{commands_read} 4>&{replies_write}', "bash", binary, *CHROMIUM_FLAGS,
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            pass_fds=(commands_read, replies_write),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(replies_write)
        self._buffer, self._next_id, self.events = b"", 0, []
        page = next(target for target in self.send("Target.getTargets")["targetInfos"] if target["type"] == "page")
        self.session = self.send("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable", session=self.session)

    def send(self, method: str, session: str | None = None, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                assert "error" not in reply, reply
                return reply["result"]
            self.events.append(reply)

    def _receive(self, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._replies], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(self._replies, 1 << 16) if ready else b""
            if not chunk:
                raise RuntimeError("chromium did not answer (closed or timed out)")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def open(self, url: str) -> None:
        self.send("Page.navigate", session=self.session, url=url)
        while not any(event.get("method") == "Page.loadEventFired" for event in self.events):
            self.events.append(self._receive())

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", session=self.session, expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)) and time.monotonic() < deadline:
            time.sleep(0.05)
        return value

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads seen so far."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"])[:300])
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(json.dumps(params["args"])[:300])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
        return found

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except RuntimeError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)


@pytest.fixture(scope="module")
def browser(out_root: Path, tmp_path_factory):
    """The report open in headless Chromium, after its grids loaded (or 10 s passed)."""
    chromium = Chromium(chromium_binary(), tmp_path_factory.mktemp("chromium-profile"))
    try:
        chromium.open((out_root / "report.html").as_uri())
        chromium.wait_for(
            "Array.from(document.querySelectorAll('video')).every(v => v.readyState >= 2)"
            " && Array.from(document.images).every(i => i.complete)"
        )
        yield chromium
    finally:
        chromium.close()


def column(browser: Chromium, name: str) -> list[str]:
    return browser.evaluate(
        f"""(() => {{
          const headers = Array.from(document.querySelectorAll('#results-table thead th'), th => th.textContent);
          const index = headers.indexOf({json.dumps(name)});
          return Array.from(document.querySelectorAll('#results-table tbody tr'), row => row.cells[index].textContent);
        }})()"""
    )


def test_the_table_renders_and_each_row_links_its_video(browser: Chromium, out_root: Path):
    assert browser.evaluate("document.querySelectorAll('#results-table tbody tr').length") == 4
    assert column(browser, "status") == ["ok", "ok", "failed", "ok"]
    assert column(browser, "motion_bucket_id") == ["60", "60", "180", "180"]
    links = browser.evaluate("Array.from(document.querySelectorAll('#results-table a'), a => a.href)")
    assert len(links) == 3 and all(Path(unquote(urlparse(link).path)).is_file() for link in links)
    assert browser.evaluate("window.injected === undefined")


def test_clicking_a_header_sorts_the_rows(browser: Chromium):
    click = "Array.from(document.querySelectorAll('#results-table th')).find(th => th.textContent === '{}').click()"
    browser.evaluate(click.format("total_s"))
    assert column(browser, "total_s") == ["1.25", "2", "3.5", "40"]  # numeric, not text order; the failed one last
    browser.evaluate(click.format("total_s"))
    assert column(browser, "total_s") == ["40", "3.5", "2", "1.25"]
    browser.evaluate(click.format("status"))
    assert column(browser, "status") == ["failed", "ok", "ok", "ok"]
    assert browser.evaluate("document.querySelector('#results-table th[aria-sort]').textContent") == "status"


def test_every_grid_plays_and_its_preview_loads(browser: Chromium):
    grids = browser.evaluate(
        """Array.from(document.querySelectorAll('figure.grid'), figure => {
          const video = figure.querySelector('video'), preview = figure.querySelector('img.preview');
          return {ready: video.readyState, width: video.videoWidth, paused: video.paused,
                  playable: video.canPlayType('video/mp4; codecs="avc1.42E01E"'), preview: preview.naturalWidth};
        })"""
    )
    assert len(grids) == 2
    for grid in grids:
        assert grid["preview"] == GRID_SIZE[1]  # the animated webp decoded
        if grid["playable"]:  # Debian's chromium plays H.264; a build without it falls back to the preview
            assert grid["ready"] >= 2 and grid["width"] == GRID_SIZE[1] and not grid["paused"]


def test_the_page_logs_no_errors(browser: Chromium):
    assert browser.errors() == []
