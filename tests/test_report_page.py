"""report.html in a real headless Chromium (Debian's, driven by playwright): axes, filters, a cell's record, a pair
side by side, shading, synced playback, lazy videos, the results table. Screenshots go to the test's tmp folder.

Skipped, saying why, where playwright or /usr/bin/chromium is missing (.ci/run installs chromium).
"""

import os
import shutil
from pathlib import Path

import pytest

from .test_report import FAILED, RERUN, job_id_of, sweep_root

sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install -e '.[test]'")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip("needs Debian's chromium (/usr/bin/chromium): apt-get install chromium", allow_module_level=True)
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--mute-audio", "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The report of tests/test_report.py's sweep root, open in Chromium, every console error collected."""
    root = sweep_root(tmp_path_factory.mktemp("page"))
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 900})
        tab.set_default_timeout(10_000)
        tab.errors = []
        tab.on("console", lambda message: tab.errors.append(message.text) if message.type == "error" else None)
        tab.on("pageerror", lambda error: tab.errors.append(str(error)))
        tab.goto((root / "report.html").as_uri())
        tab.wait_for_selector("body[data-ready]")
        yield tab
        browser.close()


def texts(page, selector: str) -> list[str]:
    return page.locator(selector).all_inner_texts()


def test_the_sweep_opens_on_the_first_grid_s_axes(page, shots: Path):
    assert page.input_value("#axis-x") == "0" and page.input_value("#axis-z") == "1"  # motion_bucket_id; seed as pages
    assert texts(page, "#sweep-table thead th")[1:] == ["60", "180"]
    assert "prompt also vary" in page.inner_text("#cell-note")  # two prompts share each cell
    assert page.inner_text("#shown-count") == "8 of 8 jobs shown, 4 on this page"
    page.screenshot(path=shots / "opened.png")


def test_choosing_axes_relays_the_grid(page, shots: Path):
    page.select_option("#axis-x", label="prompt")
    page.select_option("#axis-y", label="motion_bucket_id")
    hostile, plain = texts(page, "#sweep-table thead th")[1:]
    assert hostile.startswith("</script><script>window.injected = 2</script> <b>bold</b>") and plain == "a rocket at dawn"
    assert texts(page, "#sweep-table tbody th") == ["60", "180"]
    assert page.locator("#sweep-table .tile").count() == 4 and page.inner_text("#cell-note") == ""
    assert page.evaluate("window.injected") is None  # the prompt is a label, not markup
    page.locator("#page-next").click()
    assert page.input_value("#page-value") == "1"  # seed 43
    page.locator("#page-prev").click()
    page.screenshot(path=shots / "axes.png")


def test_filters_by_value_status_and_range(page):
    page.locator('fieldset[data-axis="status"] input[value="failed"]').uncheck()
    assert page.inner_text("#shown-count").startswith("7 of 8") and page.locator(".tile.failed").count() == 0
    page.locator('fieldset[data-axis="status"] input[value="failed"]').check()
    page.locator('fieldset[data-axis="motion_bucket_id"] label', has_text="180").locator("input").uncheck()
    assert page.inner_text("#shown-count").startswith("4 of 8") and texts(page, "#sweep-table tbody th") == ["60"]
    assert page.locator("#results-table tbody tr").count() == 4
    page.select_option("#range-measure", "total_s")
    page.fill("#range-min", "2.15")
    assert page.inner_text("#shown-count").startswith("2 of 8")  # jobs 2 and 3 of the four left (total 2.0 + index/10)
    page.fill("#range-min", "")
    page.locator('fieldset[data-axis="motion_bucket_id"] label', has_text="180").locator("input").check()
    assert page.inner_text("#shown-count").startswith("8 of 8")


def test_clicking_a_cell_shows_its_record_and_rerun_line(page, shots: Path):
    failed = job_id_of(*FAILED)
    page.select_option("#page-value", "0")  # seed 42 (the range filter above left only seed 43's page)
    page.locator(".tile.failed").click()
    detail = page.inner_text("#detail")
    assert failed in detail and "RuntimeError: <script>window.injected = 1</script>" in detail
    assert page.inner_text("#detail .rerun code").endswith(f" {failed}")
    assert page.inner_text("#detail .rerun code").startswith("videosweep rerun ")
    for part in ("load 0.5 s", "decode 0.25 s", "export 0.125 s"):
        assert part in detail
    assert page.evaluate("window.injected") is None
    page.screenshot(path=shots / "failed-cell.png")
    page.locator(f'#results-table tbody tr[data-job="{job_index(page, job_id_of(*RERUN))}"]').click()
    assert "Other attempts and reruns" in page.inner_text("#detail")
    page.locator("#detail button.compare-other").click()
    assert page.locator("#detail .views video").count() == 2  # the job and its rerun side by side
    page.screenshot(path=shots / "rerun-compared.png")


def job_index(page, job_id: str) -> int:
    return page.evaluate(f"JSON.parse(document.getElementById('sweep-data').textContent).jobs.findIndex(j => j.id === '{job_id}')")


def test_shift_click_compares_two_cells_and_marks_what_differs(page, shots: Path):
    page.keyboard.press("Escape")
    tiles = page.locator("#sweep-table .tile:not(.failed)")
    tiles.nth(0).click()
    tiles.nth(1).click(modifiers=["Shift"])
    assert page.inner_text("#detail h2") == "Two jobs side by side"
    assert page.locator("#detail .views figure").count() == 2 and page.locator(".tile.compared").count() == 1
    assert "prompt" in texts(page, "#detail .job tr.differs th")
    page.screenshot(path=shots / "pair.png")


def test_shading_by_a_metric_colours_cells_and_shows_the_scale(page):
    page.select_option("#shade", "motion_score")
    colours = page.eval_on_selector_all("#sweep-table .tile:not(.failed)", "nodes => nodes.map(n => n.style.borderColor)")
    assert len(set(colours)) > 1 and all(colours)
    assert len(texts(page, "#legend span")) == 3  # low, ramp, high
    assert "0.06" in page.inner_text("#sweep-table .tile .label >> nth=0")


def test_cells_play_in_sync_pause_and_scrub(page, shots: Path):
    page.locator("#play").click()
    page.wait_for_function("document.getElementById('play').textContent === 'Pause'")
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#sweep-table video[src]')).some(v => !v.paused && v.currentTime > 0)",
        timeout=10000,
    )
    page.screenshot(path=shots / "playing.png")
    page.locator("#play").click()
    assert page.eval_on_selector_all("video[src]", "videos => videos.every(v => v.paused)")
    page.eval_on_selector("#scrub", "s => { s.value = '0.5'; s.dispatchEvent(new Event('input')); }")
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#sweep-table video[src]')).every(v => v.readyState < 1 || Math.abs(v.currentTime - 0.5) < 0.02)"
    )
    assert page.inner_text("#clock").startswith("0.50 /")


def test_videos_load_only_when_their_cell_is_on_screen(page):
    page.set_viewport_size({"width": 1400, "height": 300})
    page.select_option("#axis-x", label="motion_bucket_id")
    page.select_option("#axis-y", label="prompt")
    page.select_option("#axis-z", label="seed")
    page.fill("#cell-size", "480")  # one 480 x 360 cell per job: the second row is below the grid's scrolled view
    page.dispatch_event("#cell-size", "input")
    page.locator("#sweep-grid").evaluate("node => { node.scrollTo(0, 0); node.scrollIntoView(); }")
    page.wait_for_timeout(300)
    lazy = page.eval_on_selector_all("#sweep-table video", "videos => videos.filter(v => !v.getAttribute('src')).length")
    assert lazy > 0 and page.locator("#sweep-table video").count() > lazy  # some have a source, those off screen none
    page.locator("#sweep-table tbody tr >> nth=1").scroll_into_view_if_needed()
    page.wait_for_function("document.querySelector('#sweep-table tbody tr:nth-child(2) video').getAttribute('src')")
    page.set_viewport_size({"width": 1400, "height": 900})
    page.fill("#cell-size", "200")
    page.dispatch_event("#cell-size", "input")


def test_the_results_table_searches_sorts_and_opens_a_record(page, shots: Path):
    page.fill("#search", "dawn")
    assert page.locator("#results-table tbody tr").count() == 4
    page.fill("#search", "")
    assert page.locator("#results-table img.thumb").count() == 7  # every ok job has a poster
    page.locator('#results-table th[data-key="total_s"]').click()
    column = texts(page, "#results-table thead th").index("total_s") + 1
    totals = [float(text) for text in texts(page, f"#results-table tbody td:nth-child({column})")]
    assert totals == sorted(totals)
    page.locator("#results-table tbody tr >> nth=2").click()
    assert page.locator("#results-table tbody tr.selected").count() == 1 and "Job #" in page.inner_text("#detail h2")
    page.locator("#results").screenshot(path=shots / "results.png")


def test_the_grids_play_and_the_page_logged_no_errors(page):
    grids = page.eval_on_selector_all("figure.grid video", "videos => videos.map(v => v.readyState)")
    assert len(grids) == 2
    page.wait_for_function("Array.from(document.querySelectorAll('figure.grid video')).every(v => v.readyState >= 2)")
    assert page.errors == []


# -- sound: jobs whose mp4 has an AAC track (LTX-2) ---------------------------------------------------


def audio_root(base: Path) -> Path:
    """Three jobs with sound (a tone each, in their mp4s) and one silent job, recorded as render_job records them."""
    import json as _json

    import numpy as np

    from videosweep.tasks.models.base import Audio
    from videosweep.tasks.render.export import audio_identity
    from videosweep.tasks.report import write_report
    from videosweep.tasks.results import write_record
    from videosweep.tasks.video import write_mp4

    from .test_report import T0, clip

    root = base / "sound"
    for index, tone in enumerate((220, 330, 440, None)):
        job_id = f"{index:016x}"
        video = f"videos/{job_id}.mp4"
        sound = None
        if tone:
            t = np.arange(12000) / 24000
            sound = Audio(np.stack([0.3 * np.sin(2 * np.pi * tone * t)] * 2).astype(np.float32), 24000)
        write_mp4(clip(12, 24, 32, 30 * index), 24, root / video, audio=sound)
        record = {
            "job_id": job_id, "run_id": "run-1", "attempt": 1, "status": "ok", "manifest_name": "sound", "job_index": index,
            "model": "tiny-ltx2" if tone else "tiny-svd", "family": "ltx2" if tone else "svd", "seed": index,
            "sweep_json": _json.dumps({"seed": index}), "params_json": _json.dumps({"frame_rate": 24}),
            "video_path": video, "video_frames": 12, "video_fps": 24.0, "video_width": 32, "video_height": 24,
            "total_s": 1.0, "queued_at": T0, "started_at": T0, "finished_at": T0,
            **(audio_identity(sound) if sound else {}),
        }  # fmt: skip
        write_record(root, record)
    write_report(root)
    return root


def test_cells_play_muted_and_a_speaker_unmutes_exactly_one_job(page, tmp_path_factory, shots: Path):
    """A root whose jobs have sound, in a second tab of the module's browser."""
    root = audio_root(tmp_path_factory.mktemp("sound"))
    tab = page.context.browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        tab.set_default_timeout(10_000)
        errors = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.goto((root / "report.html").as_uri())
        tab.wait_for_selector("body[data-ready]")

        def unmuted() -> list[str]:
            return tab.eval_on_selector_all("video", "videos => videos.filter(v => !v.muted).map(v => v.dataset.job)")

        assert "3 of 4 jobs have sound" in tab.inner_text("#audio-note") and "grids below are silent" in tab.inner_text("#audio-note")
        assert tab.locator("#sweep-grid .tile.has-audio").count() == 3 and tab.locator("#sweep-grid .tile .speaker").count() == 3
        assert unmuted() == [] and tab.locator("#sweep-grid video").count() == 4  # every cell muted to begin with
        speakers = tab.locator("#sweep-grid .tile .speaker")
        speakers.nth(1).click()
        assert unmuted() == ["1"] and tab.locator("button.speaker.on").count() == 1
        assert tab.locator("#detail video").count() == 0, "the speaker is not a click on the cell"
        speakers.nth(2).click()  # another job's sound: the first goes quiet
        assert unmuted() == ["2"] and tab.get_attribute("#sweep-grid .speaker.on", "data-job") == "2"
        tab.locator("#sweep-grid .tile >> nth=2").click()  # its detail panel: the panel's copy plays it, the cell is muted
        assert tab.locator("#detail figcaption .speaker.on").count() == 1
        assert unmuted() == ["2"] and tab.eval_on_selector_all("video", "vs => vs.filter(v => !v.muted).length") == 1
        assert tab.eval_on_selector("#detail video", "v => !v.muted")
        assert "audio_sample_rate" in tab.inner_text("#detail")
        tab.screenshot(path=shots / "sound.png")
        tab.locator("#detail figcaption .speaker").click()  # off again: all muted
        assert unmuted() == [] and tab.locator("button.speaker.on").count() == 0
        tab.locator("#sweep-grid .tile >> nth=3").click()  # the silent job has no speaker anywhere
        assert tab.locator("#detail .speaker").count() == 0
        assert errors == []
    finally:
        tab.close()
