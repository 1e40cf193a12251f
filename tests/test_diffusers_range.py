"""The diffusers releases a family works with: declared on its record, checked where a row names it.

Five families' pipelines (I2VGen-XL, PIA, TextToVideoSD, VideoToVideoSD, TextToVideoZero) live under
``diffusers.pipelines.deprecated`` since diffusers 0.38, and two more import Text2Video-Zero's attention
processor from there; a release may drop that package. Each of those families states the releases it
is checked on, so the project's pin can move for the others: with diffusers outside a family's range,
its rows are refused with the fix named, and every other family resolves, validates and lists as before.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys

import pytest

from videosweep.tasks import models
from videosweep.tasks.manifest import ManifestError, load_manifest
from videosweep.tasks.models import FAMILIES, ModelError, installed_diffusers, resolve
from videosweep.tasks.models.family import Family, FamilyError

from .conftest import REPO, ROCKET

NEXT = "0.43.0"  # a release past every declared range today


def test_every_family_that_states_a_range_works_with_the_installed_diffusers():
    ranged = {name: spec.diffusers for name, spec in FAMILIES.items() if spec.diffusers is not None}
    assert {name for name, spec in FAMILIES.items() if spec.deprecated} <= set(ranged)  # Family() insists on it
    outside = {name: span for name, span in ranged.items() if not FAMILIES[name].works_with(installed_diffusers())}
    assert not outside, f"diffusers {installed_diffusers()} is outside these families' ranges: {outside}"


def test_every_family_on_diffusers_deprecated_code_says_so():
    """Read from the installed diffusers itself: a family whose pipeline class is defined under
    diffusers.pipelines.deprecated is marked deprecated, and one whose module imports from there states a range."""
    import diffusers

    for name, spec in FAMILIES.items():
        defined_in = getattr(diffusers, spec.pipeline_class).__module__
        if defined_in.startswith("diffusers.pipelines.deprecated."):
            assert spec.deprecated, f"{name}: {spec.pipeline_class} is in {defined_in}; mark the family deprecated=True"
        source = inspect.getsource(sys.modules[spec.load.__module__])
        if re.search(r"^\s*(from|import) diffusers\.pipelines\.deprecated\b", source, re.MULTILINE):
            assert spec.diffusers is not None, f"{name} imports from diffusers.pipelines.deprecated; state diffusers="


def test_a_row_of_a_family_outside_its_range_is_refused_and_the_others_resolve(monkeypatch):
    monkeypatch.setattr(models, "installed_diffusers", lambda: NEXT)
    for name, family in (("tiny-i2vgen-xl", "i2vgen-xl"), ("modelscope-1.7b", "text-to-video-sd")):
        with pytest.raises(ModelError) as refused:
            resolve(name)
        assert str(refused.value) == (
            f"model {name!r}: family {family!r} works with diffusers >=0.42,<0.43 (its pipeline is deprecated "
            f"upstream), but {NEXT} is installed: pip install 'diffusers>=0.42,<0.43', or use another family "
            "(videosweep models)"
        )
    with pytest.raises(ModelError, match=r"^model 'org/pia-finetune': family 'pia' works with diffusers"):
        resolve("org/pia-finetune", family="pia")  # a hub id with `family:`, as a key would be
    with pytest.raises(ModelError, match=rf"family 'text2video-zero-pix2pix' works with .*, but {NEXT} is installed"):
        resolve("tiny-text2video-zero-pix2pix")  # not deprecated itself: its attention processor is

    unranged = [name for name, spec in FAMILIES.items() if spec.diffusers is None]
    assert "svd" in unranged and "wan" in unranged
    for family in unranged:
        assert resolve(f"tiny-{family}").family == family


def test_a_mixed_manifest_names_only_the_refused_rows(monkeypatch, tmp_path, tiny_svd):
    monkeypatch.setattr(models, "installed_diffusers", lambda: NEXT)
    svd = f"{{model: tiny-svd, image: {ROCKET}, height: 32, width: 48, num_frames: 4, num_inference_steps: 2}}"
    i2vgen = f"{{model: tiny-i2vgen-xl, prompt: a rocket, image: {ROCKET}, height: 32, width: 48, num_frames: 4}}"
    (tmp_path / "mixed.yaml").write_text(f"name: mixed\nrows:\n  - {svd}\n  - {i2vgen}\nseeds: [1]\n")
    with pytest.raises(ManifestError) as refused:
        load_manifest(tmp_path / "mixed.yaml", "cpu")
    [problem] = refused.value.problems
    assert problem.where == "job 1 (rows[1], seed=1)", str(refused.value)
    assert problem.message.startswith(f"model 'tiny-i2vgen-xl': family 'i2vgen-xl' works with diffusers >=0.42,<0.43")

    (tmp_path / "svd.yaml").write_text(f"name: svd\nrows:\n  - {svd}\nseeds: [1]\n")
    assert [job.family for job in load_manifest(tmp_path / "svd.yaml", "cpu").jobs] == ["svd"]


def test_a_range_is_checked_on_the_record():
    spec = FAMILIES["i2vgen-xl"]
    declared = {field: getattr(spec, field) for field in spec.__dataclass_fields__}
    with pytest.raises(FamilyError, match=r"^a deprecated family states the diffusers releases it works with"):
        Family(**{**declared, "diffusers": None})
    with pytest.raises(FamilyError, match=r"^diffusers must be a version range like '>=0.42,<0.43', not '0.42'"):
        Family(**{**declared, "diffusers": "0.42"})
    ranged = Family(**{**declared, "diffusers": ">=0.42,<0.43"})
    assert ranged.works_with("0.42.1") and ranged.works_with("0.42.2.dev0")
    assert not ranged.works_with("0.43.0.dev0") and not ranged.works_with("0.41.0")


def test_without_diffusers_deprecated_pipelines_the_registry_imports_and_lists(tmp_path):
    """As a release that dropped diffusers.pipelines.deprecated: the registry and `videosweep models` never import a
    pipeline class, the deprecated families are listed as refused, and the others resolve."""
    script = f"""
import sys
sys.modules["diffusers.pipelines.deprecated"] = None  # importing it now fails, as where it is gone
import diffusers
try:
    diffusers.I2VGenXLPipeline
except Exception:
    pass
else:
    raise SystemExit("the simulation failed: I2VGenXLPipeline still imports")
from videosweep.tasks import models
models.installed_diffusers = lambda: {NEXT!r}
from videosweep.flows.cli.models import models as listing
listing()
print("svd resolves:", models.resolve("tiny-svd").family)
try:
    models.resolve("tiny-pia")
except models.ModelError as exc:
    print("refused:", exc)
"""
    env = {**os.environ, "VIDEOSWEEP_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "svd resolves: svd" in done.stdout
    assert f"refused: model 'tiny-pia': family 'pia' works with diffusers >=0.42,<0.43" in done.stdout
    listed = " ".join(done.stdout.split())  # a table's title wraps at the table's width
    for name, spec in FAMILIES.items():
        title = " ".join(f"{name} ({spec.pipeline_class}): {spec.description}".split())
        if spec.diffusers is None:
            assert title in listed and f"{title};" not in listed
        else:
            refused = f"{title}; works with diffusers {spec.diffusers}, not the installed {NEXT}: its rows are refused"
            assert refused in listed
