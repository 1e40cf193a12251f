"""User text in every medium: terminal, grid drawing, Prefect markdown; and a grid or report that fails alone.

Hostile strings (line breaks, tabs, RTL, emoji, zero-width and bidi controls, terminal escapes,
rich markup, 100k characters) go through tasks.text, the grid's layout and drawing, the progress
bar, the run summary, the results table and the markdown artifact. The last test renders a
``prompt: |`` block on the tiny text-to-video model through the CLI, grid and report included.
"""

import html
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from videosweep.tasks import grid as grid_module
from videosweep.tasks.grid import Cell, _AxisSpec, _fit_text, _font, _label, _layout, _static_layer, draw_grids
from videosweep.tasks.progress import job_progress
from videosweep.tasks.query import rich_table
from videosweep.tasks.report import Outputs, draw_outputs, summary_markdown
from videosweep.tasks.results import read_results
from videosweep.tasks.summary import RunSummary
from videosweep.tasks.text import DRAW_LIMIT, drawable, markdown, markdown_code_block, one_line, printable

from .test_grid import add_job, color_of

OSC_TITLE = "\x1b]0;pwned\x07"  # sets the terminal's title
CLEAR = "\x1b[2J"  # clears the screen
HOSTILE = {
    "newline": "a rocket\nat dawn",
    "crlf, cr": "one\r\ntwo\rthree\r\n",
    "tab": "left\tright",
    "arabic": "صاروخ عند الفجر",
    "hebrew": "טיל עם שחר",
    "emoji": "rocket 🚀 family 👨‍👩‍👧 flag 🇫🇷",
    "zero width": "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom",
    "bidi controls": "bidi \u202eoverride\u202c \u2067isolate\u2069 \u200fmark",
    "escapes": f"{OSC_TITLE}title \x1b[31mred\x1b[0m {CLEAR}\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\",
    "controls": "nul\x00 bel\x07 del\x7f nel\x85 csi\x9b c1\x9d",
    "separators": "line\u2028sep\u2029para\v\f",
    "markup": "[bold]markup[/bold] [link=http://x]x[/link]",
    "title separator": "a · b · c",
    "empty": "",
    "long": "a very long prompt " * 5300,  # 100,700 characters
}
UNSAFE = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A))]


# -- the helpers ------------------------------------------------------------------------------------


def test_one_line_shows_line_breaks_and_tabs():
    assert one_line("a\r\nb\tc") == "a ⏎ b ⇥ c"
    assert one_line("a\nb\rc\u2028d") == "a ⏎ b ⏎ c ⏎ d"
    assert one_line("plain") == "plain"


@pytest.mark.parametrize("name", HOSTILE)
def test_printable_has_no_escape_or_control_character(name: str):
    text = printable(HOSTILE[name])
    assert not [char for char in text if char in UNSAFE], repr(text)
    assert drawable(HOSTILE[name]) == printable(HOSTILE[name], DRAW_LIMIT)


def test_printable_removes_whole_escape_sequences():
    assert printable(f"{OSC_TITLE}title \x1b[31mred\x1b[0m {CLEAR}done") == "title red done"
    assert printable("see \x1b]8;;http://x\x1b\\the link\x1b]8;;\x1b\\ here") == "see the link here"
    assert printable("unterminated \x1b]0;swallows the rest") == "unterminated "
    assert printable("reset\x1bc and \x1b(B charset") == "reset and  charset"
    assert printable("a\x00b\x7fc\x9cd\u202ee\u2066f") == "abcdef"
    assert printable("8-bit \x9b31mcsi, 8-bit \x9d0;osc") == "8-bit csi, 8-bit 0;osc"  # no OSC without ESC ]


def test_printable_keeps_rtl_emoji_joiners_and_markup_text():
    for name in ("arabic", "hebrew", "emoji", "markup"):
        assert printable(HOSTILE[name]) == HOSTILE[name]
    assert printable(HOSTILE["zero width"]) == "zero\u200bwidth\u200cnon\u200djoinerbom"  # only the BOM goes


def test_long_text_is_shortened_with_an_ellipsis():
    long = HOSTILE["long"]
    assert printable(long, 80) == long[:79] + "…"
    assert printable(long) == long
    assert len(drawable(long)) == DRAW_LIMIT and drawable(long).endswith("…")
    assert printable("\x1b[1m" * 50_000 + "end", 10) == "…"  # cut before the escapes: never the whole string
    assert printable("short", 80) == "short" and printable("abc", 0) == ""


def test_markdown_escapes_html_and_markdown():
    text = markdown('"><img src=x onerror=alert(3)>.csv')
    assert "<" not in text and ">" not in text and '"' not in text
    assert text == "&quot;&gt;&lt;img src\\=x onerror\\=alert\\(3\\)&gt;\\.csv"
    assert markdown("[a](javascript:x) **b** `c` # d\n- e") == (
        "\\[a\\]\\(javascript\\:x\\) \\*\\*b\\*\\* \\`c\\` \\# d ⏎ \\- e"
    )
    block = markdown_code_block("fine\n```\n<b>" + CLEAR)
    assert block.splitlines() == ["````", "fine", "```", "<b>", "````"]


# -- drawing ------------------------------------------------------------------------------------------


class CountingFont:
    """A font that counts the characters it measures, and stops a layout that measures 100k characters again
    and again (cutting one character at a time: quadratic) instead of letting it run for hours."""

    def __init__(self, font, budget: int = 200_000):
        self.font, self.calls, self.measured, self.budget, self.size = font, 0, 0, budget, font.size

    def getlength(self, text, *args, **kwargs):
        self.calls += 1
        self.measured += len(text)
        assert self.measured <= self.budget, f"{self.calls} measures, {self.measured} characters in all"
        return self.font.getlength(text, *args, **kwargs)


@pytest.fixture
def counting_fonts(monkeypatch):
    """The grid's fonts, counting: what a layout measures stays far below the text's square."""
    real = grid_module._font
    monkeypatch.setattr(grid_module, "_font", lambda size, bold=False: CountingFont(real(size, bold)))
    return monkeypatch


def test_fitting_a_100k_character_prompt_measures_it_a_few_times():
    font = CountingFont(_font(14))
    fitted = _fit_text(HOSTILE["long"], font, 300)
    assert fitted.endswith("…") and _font(14).getlength(fitted) <= 300
    assert font.calls < 40


@pytest.mark.parametrize("name", HOSTILE)
def test_every_hostile_string_draws_as_title_axis_value_and_label(name: str, counting_fonts):
    text = HOSTILE[name]
    spec = _AxisSpec(x=text or "x", y=text or "y", z=None, x_values=[text, 7.5], y_values=[text, None])
    layout = _layout(spec, (48, 32), f"prompt={text} · model=tiny · seed=42", (640, 360))
    counting_fonts.undo()  # drawing needs real fonts
    assert layout.title_lines and all(not set(line) & set(UNSAFE) for line in layout.title_lines)
    cells = [
        Cell(row, col, None, None, None, status, (*layout.origin(row, col), *layout.cell))
        for (row, col), status in {(0, 0): text, (0, 1): "failed", (1, 0): "missing", (1, 1): "ok"}.items()
    ]
    image = _static_layer(layout, spec, cells)
    assert image.shape == (layout.height, layout.width, 3)
    title_band = image[: layout.top // 3]
    assert (title_band.max(axis=-1) > 120).sum() > 20, "no title drawn"


def test_text_with_a_slash_is_labelled_whole_and_a_path_by_its_name():
    assert _label("a cat / a dog") == "a cat / a dog"
    assert _label("a rocket [bold]loud[/bold]\nat dawn") == "a rocket [bold]loud[/bold]\nat dawn"
    assert _label("/somewhere/inputs/rocket.png") == "rocket.png"
    assert _label("/models/my model/") == "my model"
    assert _label("stabilityai/stable-video-diffusion-img2vid-xt") == "stable-video-diffusion-img2vid-xt"


def test_raqm_refusing_a_string_falls_back_to_the_basic_layout(monkeypatch):
    """A string the layout engine still refuses is drawn with Pillow's basic layout, not a crash."""
    from PIL import ImageFont

    real = ImageFont.FreeTypeFont.getlength

    def refusing(self, text, *args, **kwargs):
        if self.layout_engine != ImageFont.Layout.BASIC:
            raise RuntimeError("raqm_layout() failed.")
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(ImageFont.FreeTypeFont, "getlength", refusing)
    spec = _AxisSpec(x="guidance_scale", y=None, z=None, x_values=[1.0, 7.5], y_values=[None])
    layout = _layout(spec, (48, 32), ["prompt=a rocket", "seed=42"], (640, 360))
    assert layout.title_lines == ["prompt=a rocket · seed=42"]
    assert _static_layer(layout, spec, []).shape == (layout.height, layout.width, 3)


def hostile_root(out: Path) -> None:
    """One column per hostile prompt (x = prompt), and a hostile negative prompt in every title."""
    for index, text in enumerate(HOSTILE.values()):
        sweep = {"prompt": text, "negative_prompt": HOSTILE["crlf, cr"]}
        add_job(out, f"job-{index}", sweep, color=color_of(index % 12))


def test_a_grid_of_hostile_prompts_draws_and_its_sidecar_keeps_them_whole(tmp_path: Path):
    hostile_root(tmp_path)
    (grid,) = draw_grids(tmp_path, "prompt", max_width=1920, max_height=400)
    assert grid.mp4.is_file() and grid.preview.is_file()
    sidecar = json.loads(grid.sidecar.read_text())
    assert sorted(sidecar["x_values"]) == sorted(HOSTILE.values())
    assert sidecar["fixed"]["negative_prompt"] == HOSTILE["crlf, cr"]
    assert f"negative_prompt={HOSTILE['crlf, cr']}" in sidecar["title"]
    outputs = draw_outputs(tmp_path, [{"x": "prompt"}], [f"job-{index}" for index in range(len(HOSTILE))])
    assert outputs.problems == [] and outputs.report.is_file()
    page = outputs.report.read_bytes().decode("utf-8")  # as written: no newline translation
    assert f"negative_prompt={HOSTILE['crlf, cr']}" in page  # the grid's title, whole (escaped: nothing to escape)
    assert HOSTILE["arabic"] in page and html.escape(HOSTILE["markup"]) in page


# -- one grid (or the report) failing costs nothing else -----------------------------------------


def two_grid_root(out: Path) -> list[str]:
    jobs = []
    for index, (motion, noise) in enumerate((m, n) for m in (60, 120) for n in (0.02, 0.1)):
        jobs.append(f"job-{index}")
        add_job(out, jobs[-1], {"motion_bucket_id": motion, "noise_aug_strength": noise}, color=color_of(index))
    return jobs


def test_a_grid_failing_for_any_reason_leaves_the_other_grids_and_the_report(tmp_path: Path, monkeypatch):
    jobs = two_grid_root(tmp_path)
    real, calls = grid_module._static_layer, []

    def first_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("raqm_layout() failed.\nsecond line")
        return real(*args, **kwargs)

    monkeypatch.setattr(grid_module, "_static_layer", first_fails)
    specs = [{"x": "motion_bucket_id", "y": "noise_aug_strength"}, {"x": "noise_aug_strength", "y": "motion_bucket_id"}]
    outputs = draw_outputs(tmp_path, specs, jobs)
    assert len(outputs.grids) == 1 and outputs.grids[0].is_file()
    assert outputs.report == tmp_path / "report.html" and outputs.report.is_file()
    (problem,) = outputs.problems
    assert problem.startswith("grid x=motion_bucket_id, y=noise_aug_strength: RuntimeError: raqm_layout() failed.")
    assert "\n" not in problem
    assert "x=noise_aug_strength" in outputs.report.read_text()  # the grid drawn is in the report


def test_a_report_that_cannot_be_written_is_a_problem_line(tmp_path: Path, monkeypatch):
    jobs = two_grid_root(tmp_path)

    def broken(*args, **kwargs):
        raise OSError("read-only file system")

    monkeypatch.setattr("videosweep.tasks.report.render_report", broken)
    outputs = draw_outputs(tmp_path, [{"x": "motion_bucket_id", "y": "noise_aug_strength"}], jobs)
    assert len(outputs.grids) == 1 and outputs.report is None
    assert outputs.problems == [f"report {tmp_path / 'report.html'}: OSError: read-only file system"]
    run = SimpleNamespace(run_id="run-1", out_root=tmp_path)
    text = RunSummary.of(run, total=4, records=[], wall_s=1.0, outputs=outputs).format()
    assert "not drawn: report" in text and "read-only file system" in text


# -- terminals and markdown -------------------------------------------------------------------------

EVIL = f"{OSC_TITLE}[bold]loud[/bold] {CLEAR}\nsecond line"


def terminal() -> tuple[Console, io.StringIO]:
    file = io.StringIO()
    return Console(file=file, force_terminal=True, width=300, color_system="standard"), file


def assert_no_user_escapes(output: str) -> None:
    assert "\x1b]" not in output and CLEAR not in output and "pwned" not in output
    assert "[bold]loud[/bold]" in output  # shown, not read as markup
    assert "second line" in output and "\nsecond line" not in output


def test_progress_prints_job_labels_and_failures_as_plain_printable_text():
    console, file = terminal()
    job = SimpleNamespace(job_id="job-1", label=lambda: f"#1, prompt={EVIL}")
    with job_progress(1, console=console) as progress:
        progress.start(job)
        progress.finish({"status": "failed", "job_id": "job-1", "error_type": "ValueError", "error": EVIL})
    output = file.getvalue()
    assert_no_user_escapes(output)
    assert "failed job-1: ValueError: [bold]loud[/bold]" in output.replace("\x1b[0m", "").replace("\x1b[31m", "")
    assert "prompt=[bold]loud[/bold]" in output


def test_summary_lines_are_printable():
    run = SimpleNamespace(run_id="run-1", out_root=Path(f"/tmp/out{CLEAR}"))
    record = {"status": "failed", "job_id": "job-1", "error_type": "ValueError", "error": EVIL, "total_s": 1.0}
    outputs = Outputs(problems=[f"grid x=prompt: {EVIL}"])
    text = RunSummary.of(run, total=1, records=[record], wall_s=1.0, outputs=outputs).format()
    assert "\x1b" not in text
    assert_no_user_escapes(text)
    assert "  failed job-1: ValueError: [bold]loud[/bold]  ⏎ second line" in text
    assert "  not drawn: grid x=prompt: [bold]loud[/bold]" in text


def test_results_table_cells_are_printable_and_not_markup():
    console, file = terminal()
    frame = pd.DataFrame({"job_id": ["a" * 64], "prompt": [EVIL], "odd[red]column": [1.5]})
    console.print(rich_table(frame, title=f"by [red]{EVIL}"))
    output = file.getvalue()
    assert_no_user_escapes(output)
    assert "odd[red]column" in output and "by [red]" in output


def test_the_markdown_artifact_escapes_paths_names_and_problems(tmp_path: Path):
    root = tmp_path / '"><img src=x onerror=alert(3)>.csv'
    root.mkdir()
    outputs = Outputs(
        grids=[root / "grids" / "g<script>.mp4"],
        problems=["grid x=prompt: <script>alert(1)</script> [x](javascript:alert(2))"],
        report=root / "report.html",
    )
    text = summary_markdown(root, read_results(root), outputs)
    assert "<img" not in text and "<script" not in text and "](javascript" not in text and "`" not in text
    assert "&lt;img src\\=x onerror\\=alert\\(3\\)&gt;\\.csv" in text
    assert text.startswith("# videosweep: ")


# -- end to end: a prompt written as a YAML block ---------------------------------------------------

MANIFEST = """\
name: yaml-block-prompt
defaults:
  model: tiny-text-to-video-sd
  num_inference_steps: 2
  height: 32
  width: 48
  num_frames: 4
  prompt: |
    a rocket 🚀 at dawn
    صاروخ
sweep: {guidance_scale: [1.0, 7.5]}
seeds: [42]
grid: {x: guidance_scale}
"""


def test_a_yaml_block_prompt_renders_draws_its_grid_and_report(tmp_path: Path):
    from videosweep.flows.cli import app

    manifest, out = tmp_path / "manifest.yaml", tmp_path / "out"
    manifest.write_text(MANIFEST, encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(manifest), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "not drawn" not in result.output
    (mp4,) = (out / "grids").glob("*.mp4")
    (sidecar,) = (out / "grids").glob("*.json")
    assert json.loads(sidecar.read_text())["fixed"]["prompt"] == "a rocket 🚀 at dawn\nصاروخ\n"
    assert (out / "report.html").is_file() and "report:" in result.output
    assert "صاروخ" in (out / "report.html").read_text(encoding="utf-8")

    result = runner.invoke(app, ["grid", str(out), "--x", "guidance_scale"])
    assert result.exit_code == 0, result.output
    assert str(mp4) in result.output.split()
