"""The project's shape: one import name, and a family contract checked when families are discovered."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from videosweep.tasks.models import FAMILIES, discover
from videosweep.tasks.models.family import FamilyError

ROOT = Path(__file__).resolve().parent.parent


def test_an_install_claims_videosweep_alone(tmp_path):
    """Outside the checkout, ``import tasks`` and ``import flows`` fail; videosweep and its command line work."""
    def python(code: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)

    for generic in ("tasks", "flows"):
        assert "No module named" in python(f"import {generic}").stderr
    found = python("import videosweep.tasks.manifest, videosweep.flows.cli; print(videosweep.tasks.manifest.__name__)")
    assert found.stdout.strip() == "videosweep.tasks.manifest", found.stderr
    for command in ([sys.executable, "-m", "videosweep", "--help"], [str(Path(sys.executable).parent / "videosweep"), "--help"]):
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0 and "Usage: videosweep" in done.stdout, done.stderr


def test_every_package_folder_is_installed():
    """pyproject.toml lists the packages by hand (its folders map to videosweep.*): none may be forgotten."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {"videosweep"}
    for top in ("flows", "tasks", "videosweep"):
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT).parts
            on_disk.add(".".join(("videosweep", *parts)) if top != "videosweep" else "videosweep")
    assert listed == on_disk


def test_no_module_is_imported_under_a_generic_name():
    assert not [name for name in sys.modules if name.split(".")[0] in ("tasks", "flows")]


def family_package(tmp_path: Path, name: str, body: str) -> list[str]:
    """A package holding one family module ``name`` with ``body``: what :func:`discover` is given."""
    package = tmp_path / "fake_families"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / f"{name}.py").write_text(textwrap.dedent(body))
    sys.path.insert(0, str(tmp_path))
    return [str(package)]


@pytest.fixture
def fresh_import(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in [name for name in sys.modules if name.startswith("fake_families")]:
        del sys.modules[name]


GOOD = """
    from videosweep.tasks.models.base import VideoParams
    from videosweep.tasks.models.family import Family, one_video_per_call

    class Params(VideoParams):
        prompt: str
        num_frames: int = 8

    def load(options, device): ...
    def render(pipe, params, generator, device): ...
    def build_tiny(path): ...

    FAMILY = Family(
        name="toy", pipeline_class="ToyPipeline", description="a toy", models={}, params=Params, load=load,
        render=one_video_per_call(render), build_tiny=build_tiny, uint8_conversion="round",{extra}
    )
"""


def good(extra: str = "") -> str:
    return GOOD.replace("{extra}", extra)


def test_a_module_that_meets_the_contract_is_a_family(tmp_path, fresh_import):
    path = family_package(tmp_path, "toy", good())
    (toy,) = discover(path, "fake_families").values()
    assert toy.name == "toy" and toy.batch_fields is None and not toy.can_batch({"prompt": "a"})


@pytest.mark.parametrize(
    "body, message",
    [
        (good().replace("build_tiny=build_tiny, ", ""), "fake_families.toy: Family(...) lacks build_tiny"),
        (good(' batch_fields=("image",)'), "fake_families.toy: batch_fields names image, which its params"),
        (good().replace('uint8_conversion="round",', 'uint8_conversion="floor",'), "'round' or 'truncate'"),
        (good().replace("num_frames: int = 8", "num_frames: list[int] = []"), "params field 'num_frames'"),
        ("FAMILY = 'toy'\n", "fake_families.toy is not a family: it declares no FAMILY = Family(...)"),
    ],
    ids=["missing-part", "unknown-batch-field", "bad-conversion", "untyped-param", "no-record"],
)
def test_a_module_missing_a_part_is_refused_at_discovery_naming_it(tmp_path, fresh_import, body, message):
    path = family_package(tmp_path, "toy", body)
    with pytest.raises(FamilyError) as caught:
        discover(path, "fake_families")
    assert message in str(caught.value)


def test_one_parameter_name_has_one_type_in_every_family(tmp_path, fresh_import):
    """Its results column holds every family's values: a float ``num_frames`` beside the others' int is refused."""
    body = good().replace("num_frames: int = 8", "num_frames: float = 8.0")
    path = family_package(tmp_path, "toy", body)
    (tmp_path / "fake_families" / "other.py").write_text(textwrap.dedent(good().replace('"toy"', '"other"')))
    with pytest.raises(FamilyError, match="parameter 'num_frames' is float in family 'toy' but int in 'other'"):
        discover(path, "fake_families")


def test_every_family_declares_its_record():
    assert len(FAMILIES) >= 15
    for name, spec in FAMILIES.items():
        assert spec.name == name and spec.render and spec.params.model_fields


#: The layers of videosweep, lowest first (docs/ARCHITECTURE.md draws them). A module imports its own
#: layer or lower ones, never a higher one, and no chain of imports (inside functions too) comes back.
LAYERS = [
    # 0. foundations: no videosweep imports above them
    ["tasks.errors", "tasks.text", "tasks.files", "tasks.layout", "tasks.run_context", "tasks.watchdog",
     "tasks.children", "tasks.denoiser_hooks", "tasks.metrics", "tasks.devices", "tasks.models.base",
     "tasks.models._tiny", "tasks"],
    # 1. what a family is, and what a row may ask of a pipeline
    ["tasks.models", "tasks.video", "tasks.pipeline_options"],
    # 2. from manifest to jobs and a plan; setting a loaded pipeline up
    ["tasks.jobs", "tasks.estimates", "tasks.memory", "tasks.manifest", "tasks.plan", "tasks.pipeline_setup"],
    # 3. the record of a job and the output root it lives in
    ["tasks.provenance", "tasks.record", "tasks.results", "tasks.outroot", "tasks.query", "tasks.progress"],
    # 4. rendering, and what is made from the records
    ["tasks.render", "tasks.grid", "tasks.report", "tasks.report_data", "tasks.summary", "tasks.submission",
     "tasks.reproduce"],
    # 5. Prefect flows, the dispatcher and the command line
    ["flows"],
]


def module_imports() -> dict[str, set[str]]:
    """Every videosweep module (``tasks.x`` / ``flows.x``) and the videosweep modules it imports anywhere in it."""
    files = {}
    for top in ("tasks", "flows"):
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            package = parts[-1] == "__init__"
            files[".".join(parts[:-1] if package else parts)] = (path, package)
    graph = {}
    for name, (path, package) in files.items():
        here = name if package else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = (node.module or "").removeprefix("videosweep.")
                for alias in node.names:
                    found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in files else target)
            elif isinstance(node, ast.Import):
                found.update(alias.name.removeprefix("videosweep.") for alias in node.names)
        graph[name] = {target for target in found if target in files and target != name}
    return graph


def layer_of(module: str) -> int:
    """The layer of the longest prefix of ``module`` that LAYERS names."""
    best = None
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[1])):
                best = (level, prefix)
    assert best is not None, f"{module} has no layer: add it to LAYERS (and docs/ARCHITECTURE.md)"
    return best[0]


def test_imports_go_down_the_layers_and_never_come_back():
    graph = module_imports()
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(module) and not target.startswith(module + ".")
    ]
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    graph = module_imports()
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(graph[module]):
            # a package importing its own submodules is its table of contents, not a circle
            if target.startswith(module + "."):
                continue
            if state.get(target) == 1:
                return path + [module, target]
            if target not in state and (circle := visit(target, path + [module])):
                return circle
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            circle = visit(module, [])
            assert circle is None, " -> ".join(circle)
