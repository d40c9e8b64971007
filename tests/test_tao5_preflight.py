"""The preflight of the TAO 5 build: its form, its spec rules and its file names."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import MOUNT, REPO
from in_container import PYTHON

import tao_iva_classification_pipeline as pipeline
from rehearsal.dry_run import seed_workspace
from tao_step import preflight
from tao_step.profiles import TAO_5_0

FORM = {p.name: p.default for p in pipeline.CompileOptions(tao_version="5.0").form()}


@pytest.fixture
def ws(tmp_path):
    """A workspace seeded for the 5.0 form with the TAO 5 specs (their paths name MOUNT)."""
    root = tmp_path / "ws"
    seed_workspace(root, form=FORM, specs_dir=REPO / "specs" / "tao5")
    return root


def problems(ws, **changes) -> list:
    values = {**FORM, **changes}
    return preflight.validate_values(values, TAO_5_0) + preflight.Preflight(
        str(ws), values, MOUNT, TAO_5_0).run().problems


def test_the_5_0_defaults_and_specs_pass(ws):
    assert problems(ws) == []


def test_the_5_0_form_is_the_one_checked():
    assert preflight.validate_values(FORM, TAO_5_0) == []
    with_dims = dict(FORM, convert_trt_dims="3,224,224")
    assert preflight.validate_values(with_dims, TAO_5_0) == [
        "convert_trt_dims: not a parameter of this pipeline (check the spelling; known: "
        + ", ".join(preflight.parameters_of(TAO_5_0)) + ")"]
    missing = {k: v for k, v in FORM.items() if k != "convert_trt_results_dir"}
    assert preflight.validate_values(missing, TAO_5_0) == [
        "convert_trt_results_dir: no value given (every Create Run parameter needs one)"]


def test_the_key_may_be_empty_in_5_0_only(ws):
    assert problems(ws, api_key="") == []
    assert preflight.validate_values({**FORM, "api_key": " x"}, TAO_5_0) == [
        "api_key: contains spaces (the TAO model key passed as -k; nvidia_tlt for NGC's public "
        "TAO models)"]
    three = {p.name: p.default for p in pipeline.CompileOptions().form()}
    assert preflight.validate_values({**three, "api_key": ""})[0].startswith("api_key: is empty")


def test_3_0_checkpoint_names_are_reported_with_the_hdf5_name(ws):
    found = problems(ws, prune_model_input_file="tao-experiments/output/weights/resnet_080.tlt")
    assert len(found) == 1
    assert found[0].startswith("prune_model_input_file: tao-experiments/output/weights/"
                               "resnet_080.tlt does not match the checkpoint train-model writes "
                               "(tao-experiments/output/weights/resnet_080.hdf5")


@pytest.mark.parametrize("name, value, fix", [
    ("prune_model_output_file", "tao-experiments/output-pruned/p.tlt",
     "name it tao-experiments/output-pruned/p.hdf5"),
    ("export_model_output_file", "tao-experiments/export/m.etlt",
     "name it tao-experiments/export/m.onnx"),
])
def test_outputs_tao5_would_rename_are_refused(name, value, fix):
    (problem,) = [p for p in preflight.validate_values({**FORM, name: value}, TAO_5_0)
                  if p.startswith(name)]
    assert problem.startswith(f"{name}: {value} must end in ") and problem.endswith(fix)


def test_the_5_0_spec_rules_apply(ws):
    spec = ws / "specs" / "classification_spec.cfg"
    spec.write_text(spec.read_text().replace("use_batch_norm: true", "use_imagenet_head: true"))
    assert any("model_config.use_imagenet_head: unknown in TAO 5.0: renamed retain_head" in p
               for p in problems(ws))


def test_engine_calibration_batch_must_fit_a_tensorfile_record(ws):
    found = problems(ws, convert_trt_batch_size="128", convert_trt_max_batch_size="128")
    assert len(found) == 1 and found[0].startswith(
        "convert_trt_batch_size: 128 is larger than the 64 images per batch of the calibration "
        "tensorfile")


def test_preflight_command_takes_the_tao_version(ws):
    params = [arg for name, value in FORM.items() for arg in ("--param", f"{name}={value}")]
    argv = [PYTHON, "-m", "tao_step", "preflight", "--workspace", str(ws),
            "--mount-dir", MOUNT, "--tao-version", "5.0", *params]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("preflight OK")
    shutil.rmtree(ws / "specs")
    assert subprocess.run(argv, capture_output=True, text=True, cwd=REPO,
                          timeout=60).returncode == 1


def test_mount_paths_in_the_shipped_tao5_specs_are_the_default_mount():
    for spec in (REPO / "specs" / "tao5").glob("*.cfg"):
        assert f"{MOUNT}/tao-experiments/" in spec.read_text()
