"""specs/: valid TAO classification specs that agree with the Create Run defaults."""

from __future__ import annotations

from conftest import REPO

import tao_iva_classification_pipeline as pipeline
from rehearsal.dry_run import seed_workspace
from tao_step.preflight import Preflight, validate_values
from tao_step.specs import PATH_FIELDS, check_spec_file

SPECS = sorted((REPO / "specs").glob("*.cfg"))
DEFAULTS = {p.name: p.default for p in pipeline.PARAMETERS}


def test_both_specs_are_shipped_and_pass_the_spec_checker():
    assert [p.name for p in SPECS] == ["classification_retrain_spec.cfg",
                                       "classification_spec.cfg"]
    for path in SPECS:
        spec, problems = check_spec_file(str(path))
        assert spec is not None and problems == [], problems


def test_the_recipe_is_resnet18_on_224_pixel_rgb():
    for path in SPECS:
        spec, _ = check_spec_file(str(path))
        assert spec.field("model_config.arch")[0] == "resnet"
        assert spec.field("model_config.n_layers")[0] == 18
        assert spec.field("model_config.input_image_size")[0] == "3,224,224"
        assert spec.field("train_config.n_epochs")[0] == 80


def test_every_spec_path_is_under_the_default_mount():
    for path in SPECS:
        spec, _ = check_spec_file(str(path))
        values = [spec.field(field)[0] for field in PATH_FIELDS]
        assert all(v.startswith("/mnt/workspace/") for v in values), values


def test_defaults_pass_the_form_checks_and_agree_with_the_specs(tmp_path):
    assert validate_values(DEFAULTS) == []
    workspace = tmp_path / "workspace"
    seed_workspace(workspace, form=DEFAULTS, specs_dir=REPO / "specs")
    # the copies are unchanged: they name paths under tao_mount_dir (/mnt/workspace), which
    # preflight reads as this folder, where the workspace is mounted
    check = Preflight(str(workspace), DEFAULTS, None).run()
    assert check.problems == []
