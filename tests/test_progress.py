"""The terminal during a run: the progress bar at any width from 60 columns, the startup line before it, and Dask's
log lines kept in the log file (issue 16 §4)."""

import logging
import os
import re
import subprocess
import sys
from io import StringIO
from types import SimpleNamespace

import pytest
from rich.cells import cell_len
from rich.console import Console

from videosweep.tasks.progress import StartupLine, job_progress

from .conftest import REPO

# a job label as long and mixed as a sweep over user prompts makes it: emoji, Arabic, Hebrew, a terminal escape
PROMPT = "🚀 a rocket at sea 🌊, صاروخ فوق البحر, טיל מעל הים, \x1b[31mred\x1b[0m, [bold]not markup[/bold]"
LABEL = f"job 12 (defaults, prompt={PROMPT}, seed=7)"  # 123 cells with the id
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def terminal(width: int) -> tuple[Console, StringIO]:
    file = StringIO()
    return Console(file=file, width=width, force_terminal=True, color_system="standard"), file


def screen_lines(output: str) -> list[str]:
    """What a terminal shows line by line: escapes gone, each redraw (after a carriage return) its own line."""
    return [line for line in re.split(r"[\r\n]", ANSI.sub("", output)) if line.strip()]


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_the_bar_shows_count_bar_and_eta_then_as_much_of_the_job_as_fits(width):
    console, file = terminal(width)
    job = SimpleNamespace(job_id="3f2a9c0e1b7d4a51", label=lambda: LABEL)
    with job_progress(30, console=console) as progress:
        for _ in range(12):
            progress.finish({"status": "ok", "job_id": "3f2a9c0e1b7d4a51"})
        progress.start(job)
    last = screen_lines(file.getvalue())[-1]
    assert cell_len(last) <= width, f"the bar needs {cell_len(last)} cells at {width}"
    assert re.match(r"12/30 [━╸╺]{%d,} \d+:\d\d:\d\d eta (\d+:\d\d:\d\d|-:--:--) job 12 \(defaults, " % 10, last), last
    assert "\x1b[31mred" not in file.getvalue(), "the prompt's own escape sequence is not passed to the terminal"
    shown = last.rstrip()
    if width < 200:
        assert shown.endswith("…"), "a label longer than the width is cut with an ellipsis"
        assert cell_len(shown) >= width - 2, "the label takes the rest of the line"
    else:  # whole, as plain text
        assert shown.endswith("טיל מעל הים, red, [bold]not markup[/bold], seed=7) 3f2a9c0e1b7d4a51"), shown


def test_the_startup_line_says_each_stage_on_a_terminal_and_goes_away(caplog):
    console, file = terminal(80)
    line = StartupLine(console)
    caplog.set_level(logging.INFO, logger="videosweep.tasks.progress")
    with line:
        line.show("starting Prefect (local server)…")
        line.show("starting 2 Dask workers \x1b]0;title\x07…")
    shown = screen_lines(file.getvalue())
    assert any(text.endswith("starting Prefect (local server)…") for text in shown)
    assert any(text.endswith("starting 2 Dask workers …") for text in shown), "user text printed without escapes"
    assert "\x1b]0;" not in file.getvalue()
    after = file.getvalue().rpartition("…")[2]
    assert "\x1b[?25h" in after and after.endswith("\x1b[2K"), "the line is erased and the cursor shown again"
    assert [record.getMessage() for record in caplog.records][:1] == ["starting Prefect (local server)…"]


def test_the_startup_line_prints_nothing_to_a_pipe_or_outside_a_run_but_is_logged(caplog):
    piped = StringIO()
    caplog.set_level(logging.INFO, logger="videosweep.tasks.progress")
    with StartupLine(Console(file=piped, force_terminal=False)) as line:
        line.show("starting Prefect (local server)…")
    outside_console, outside = terminal(80)
    StartupLine(outside_console).show("starting Prefect (local server)…")  # no `with`: nothing would take it away
    assert piped.getvalue() == "" and outside.getvalue() == ""
    assert [record.getMessage() for record in caplog.records] == ["starting Prefect (local server)…"] * 2


def test_the_bar_takes_the_startup_line_s_place(monkeypatch):
    from videosweep.tasks import progress

    console, file = terminal(80)
    monkeypatch.setattr(progress.startup, "console", console)
    with progress.startup:
        progress.startup.show("starting 2 Dask workers…")
        with job_progress(1, console=console) as bar:
            bar.finish({"status": "ok", "job_id": "a"})
    output = file.getvalue()
    said, _, rest = output.partition("starting 2 Dask workers…")
    assert said and "\x1b[?25h" in rest.partition(" 0/1")[0], "the startup line is taken away before the bar appears"
    assert "starting" not in rest.partition(" 0/1")[2] and screen_lines(output)[-1].startswith("1/1 ━")


def test_a_warning_logged_while_the_startup_line_shows_is_printed_above_it():
    from videosweep.flows.process import _terminal

    console, file = terminal(80)
    logger = logging.getLogger("videosweep.tests.startup")
    logger.addHandler(_terminal(logging.WARNING, "warning: %(message)s"))  # as the command's own (flows.process)
    try:
        with StartupLine(console) as line:
            line.show("reading m.yaml…")
            logger.warning("a deprecated family")
    finally:
        logger.handlers.clear()
    assert "\x1b[2Kwarning: a deprecated family" in file.getvalue(), "on a line of its own, not after the spinner's"


LIBRARY_LINES = """
import logging, os, sys
from videosweep.flows import process

if sys.argv[1] == "run":  # the videosweep command's own process: the scheduler and the nannies log here
    process.setup_logging()
    process.quiet_libraries()
    import distributed  # after, as in a run (flows.cluster): it sets its loggers' levels, its own handler
    print(process.log_path())
else:  # a worker process of the run's local cluster: distributed first, then the preload with the run's log file
    import distributed
    os.environ[process.LOG_FILE_VARIABLE] = sys.argv[2]
    process.dask_setup(None)
for level in (logging.INFO, logging.WARNING, logging.ERROR):
    logging.getLogger("distributed.scheduler").log(level, "scheduler line at %s", logging.getLevelName(level))
try:  # as a worker whose heartbeat meets a scheduler closing first, at a run's end
    raise OSError("Stream is closed")
except OSError:
    logging.getLogger("distributed.worker").exception("Failed to communicate with scheduler during heartbeat.")
"""


def test_dask_lines_go_to_the_log_file_and_only_errors_to_the_terminal(tmp_path):
    env = {**os.environ, "VIDEOSWEEP_HOME": str(tmp_path)}
    command = [sys.executable, "-c", LIBRARY_LINES]
    main = subprocess.run([*command, "run"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    log_file = main.stdout.strip()
    worker = subprocess.run([*command, "worker", log_file], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    for process in (main, worker):
        assert process.returncode == 0, process.stderr
        assert process.stderr == "distributed.scheduler: scheduler line at ERROR\n"
    logged = open(log_file, encoding="utf-8").read()
    for level in ("INFO", "WARNING", "ERROR"):
        assert logged.count(f"scheduler line at {level}") == 2, logged
    assert logged.count("ERROR distributed.worker") == 2 and logged.count("OSError: Stream is closed") == 2  # not news
    assert re.search(r"INFO distributed.scheduler \[worker \d+\]: scheduler line at INFO", logged)
