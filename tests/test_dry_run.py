"""The dry run, as users run it: the whole compiled pipeline against the fake TAO.

Also the catalogue of misconfigurations: each is reported by compile-time validation or by
the preflight step, never first by a GPU step.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import ENTRY_POINT, REPO, TAO5, main_error, run_compiler

from rehearsal.fake_tao.make_dataset import make_dataset
from rehearsal.path_map import PathMap

# A task's status line; the exit handler's node is Argo's "onExit", running template summary.
STATUS = re.compile(r"^\s+(Succeeded|Failed|Skipped|Omitted)\s+([\w-]+|onExit \(summary\)):",
                    re.M)
STEPS = ("preflight", "download-model", "train-model", "evaluate-model", "prune-model",
         "retrain-model", "reevaluate-model", "test-infer", "export-model", "calibrate-model",
         "export-int8-model", "convert-trt", "summary")
GATED = ("export-model", "export-int8-model", "convert-trt")


@pytest.fixture(autouse=True)
def scratch_in_pytest_tmp(tmp_path, monkeypatch):
    """Failed dry runs keep their logs for the user: in tests, under pytest's tmp."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))


def step_statuses(stdout: str) -> dict:
    """Each task's statuses, by name, as the dry run printed them."""
    statuses = {}
    for status, name in STATUS.findall(stdout):
        if not name.startswith(("condition-", "exit-handler-")):
            statuses.setdefault(name.replace("onExit (summary)", "summary"), []).append(status)
    return statuses


def dry_run(*args: str, env: dict | None = None):
    result = run_compiler("--dry-run", *args, env=env)
    return result, step_statuses(result.stdout)


@pytest.mark.e2e
def test_default_pipeline_succeeds_end_to_end(default_dry_run):
    result, statuses = default_dry_run, step_statuses(default_dry_run.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(statuses) == set(STEPS)
    assert all(s == ["Succeeded"] for s in statuses.values()), statuses
    assert "Failed" not in result.stdout
    # a rehearsal writes no package, and leaves a user's own build alone
    assert result.package_untouched


@pytest.mark.e2e
def test_quality_gate_below_threshold_skips_every_export(gate_failure_dry_run):
    result, statuses = gate_failure_dry_run, step_statuses(gate_failure_dry_run.stdout)
    assert result.returncode == 1
    assert statuses["reevaluate-model"] == ["Succeeded"]
    for step in GATED:
        assert step not in statuses  # inside a skipped group: never started
    assert re.search(r"Skipped\s+condition-gate-fp32-export", result.stdout)
    assert re.search(r"Skipped\s+condition-gate-int8-export", result.stdout)
    assert statuses["summary"] == ["Failed"]  # the run shows the model did not pass
    assert "quality gate failed" in result.stdout and "below min_accuracy 99" in result.stdout
    workspace = gate_failure_dry_run.workspace
    assert not (workspace / "tao-experiments" / "export" / "final_model.etlt").exists()


@pytest.mark.e2e
def test_quality_gate_above_threshold_exports(tmp_path):
    # its own run: the form's default min_accuracy, 0, is met by any accuracy
    result, statuses = dry_run("--param", "min_accuracy=0.5")
    assert result.returncode == 0, result.stdout
    assert all(statuses[s] == ["Succeeded"] for s in GATED)


@pytest.mark.e2e
def test_a_failing_step_stops_only_what_depends_on_it_and_a_fixed_rerun_succeeds(
        prune_crash_dry_run, tmp_path):
    result, statuses = prune_crash_dry_run, step_statuses(prune_crash_dry_run.stdout)
    assert result.returncode == 1
    assert statuses["prune-model"] == ["Failed"]
    for step in ("retrain-model", "reevaluate-model", "test-infer"):
        assert statuses[step] == ["Omitted"], step
    assert statuses["summary"] == ["Succeeded"]  # the exit handler reports it
    for step in ("preflight", "download-model", "calibrate-model", "train-model",
                 "evaluate-model"):
        assert statuses[step] == ["Succeeded"], step
    assert "simulated crash" in result.stdout and "prune-model" in result.stdout
    workspace = tmp_path / "ws"  # the shared run's, copied: the re-run changes it
    shutil.copytree(prune_crash_dry_run.workspace, workspace, symlinks=True)
    calibration = workspace / "tao-experiments" / "export" / "calibration.tensor"
    checkpoint = workspace / "tao-experiments" / "output" / "weights" / "resnet_080.tlt"
    before = calibration.read_bytes(), checkpoint.read_bytes()

    rerun, statuses = dry_run("--workspace", str(workspace))
    assert rerun.returncode == 0, rerun.stdout
    # what the first run produced is still there, moved aside, byte for byte
    (kept_calibration,) = calibration.parent.glob("calibration.tensor.previous-*")
    (kept_output,) = checkpoint.parents[2].glob("output.previous-*")
    assert kept_calibration.read_bytes() == before[0]
    assert (kept_output / "weights" / "resnet_080.tlt").read_bytes() == before[1]


@pytest.mark.e2e
def test_a_failed_test_infer_stops_nothing_else_and_the_summary_reports_it(tmp_path):
    """failFast: false in every DAG, and Argo v3.3.8 starts every ready task either way:
    the exports run on. The exit handler, summary, reports the run as Argo would let it
    (workflow.status, workflow.failures): which step failed with its message, and what
    was produced; then it releases the run's claim on the workspace."""
    workspace, out = tmp_path / "ws", tmp_path / "kfp"
    result, statuses = dry_run("--workspace", str(workspace), "--outputs", str(out),
                               env={"FAKE_TAO_FAIL": "inference"})
    assert result.returncode == 1
    assert statuses["test-infer"] == ["Failed"]
    for step in GATED + ("reevaluate-model", "calibrate-model", "summary"):
        assert statuses[step] == ["Succeeded"], step
    assert list((workspace / ".tao-run-claims").glob("*.json")) == []
    ui = json.loads((out / "onExit" / "mlpipeline-ui-metadata.json").read_text())
    text = "\n".join(o["source"] for o in ui["outputs"] if o["type"] == "markdown")
    assert text.startswith("## Run summary: Failed\n\n- **test-infer** failed: Error (exit "
                           "code 1)\n\n")
    assert "**Test inference**: no result: test-infer failed." in text
    assert "**TensorRT engine**: `tao-experiments/export/final_model.trt`, INT8," in text
    assert "### Artifacts: 12 of 13 produced by this run" in text
    assert ("- **predictions** `tao-experiments/data/split/test/person/result.csv`: "
            "**not produced**") in text
    # every report output a user looks for, also for a run that failed
    assert [o["type"] for o in ui["outputs"]] == [
        "markdown", "web-app", "markdown", "table", "markdown"]


@pytest.mark.e2e
def test_running_twice_on_one_workspace_loses_nothing(default_dry_run, tmp_path):
    assert default_dry_run.returncode == 0, default_dry_run.stdout
    workspace = tmp_path / "ws"  # the shared first run's, copied: the second changes it
    shutil.copytree(default_dry_run.workspace, workspace, symlinks=True)
    export = workspace / "tao-experiments" / "export"
    first = {p.name: p.read_bytes() for p in export.iterdir()}
    second, _ = dry_run("--workspace", str(workspace))
    assert second.returncode == 0, second.stdout
    for name, content in first.items():
        (kept,) = export.glob(f"{name}.previous-*")
        assert kept.read_bytes() == content
        assert (export / name).exists()


@pytest.mark.e2e
def test_two_dry_runs_on_one_workspace_one_proceeds_the_other_is_refused(tmp_path):
    """Each dry run is a new workflow name and uid, as each run on a cluster is
    (rehearsal/workflow_identity.py), so a rehearsal on a workspace another one is writing
    is refused by its preflight, naming the other. The first is held still once its claim is
    taken, as a killed rehearsal would leave it; then it carries on and succeeds."""
    workspace = tmp_path / "ws"
    first = subprocess.Popen([sys.executable, str(ENTRY_POINT), "--dry-run", "--workspace",
                              str(workspace)], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        for line in first.stdout:
            if line.strip().startswith("preflight: Succeeded"):
                break
        first.send_signal(signal.SIGSTOP)
        (claim,) = (workspace / ".tao-run-claims").glob("*.json")
        holder = json.loads(claim.read_text())["workflow"]
        second, statuses = dry_run("--workspace", str(workspace))
    finally:
        first.send_signal(signal.SIGCONT)
        rest = first.communicate(timeout=120)[0]

    assert second.returncode == 1
    assert statuses["preflight"] == ["Failed"] and statuses["train-model"] == ["Omitted"]
    (name,) = re.findall(r"^Workflow (tao-iva-classification-\w{5}): Failed", second.stdout,
                         re.M)
    assert name != holder
    assert (f"train_classification_output: tao-experiments/output is being written by run "
            f"{holder} (started ") in second.stdout
    assert f"python3 -m tao_step release --workspace {workspace} --run {holder}\n" in (
        second.stdout)
    # The refused run's exit handler releases nothing and succeeds; the holder's releases.
    assert re.search(r"Succeeded\s+onExit \(summary\)", second.stdout)
    assert first.returncode == 0, rest
    assert f"Workflow {holder}: Succeeded" in rest
    assert list((workspace / ".tao-run-claims").glob("*.json")) == []


@pytest.mark.e2e
def test_deployment_options_rehearse_too():
    result, statuses = dry_run("--key-secret", "tao-key", "--ngc-secret", "ngc-api", "--pvc",
                               "tao-ws", "--node-selector", "gpu=true", "--gpu-toleration")
    assert result.returncode == 0, result.stdout
    assert all(s == ["Succeeded"] for s in statuses.values())


@pytest.mark.e2e
def test_the_key_never_appears_in_the_report(tmp_path):
    out = tmp_path / "kfp"
    result, statuses = dry_run("--param", "api_key=s3cr3t-key-value", "--outputs", str(out),
                               env={"FAKE_TAO_FAIL": "train"})
    assert result.returncode == 1
    assert "s3cr3t-key-value" not in result.stdout + result.stderr
    assert "-k ***" in result.stdout
    # nor in anything Kubeflow would show: steps' outputs and logs, the summary's report
    assert statuses["summary"] == ["Succeeded"]
    kept = [p for p in out.rglob("*") if p.is_file()]
    assert out / "onExit" / "mlpipeline-ui-metadata.json" in kept
    assert not [p for p in kept if "s3cr3t-key-value" in p.read_text()]


# ------------------------------------------------------------------ misconfigurations
# Caught when compiling: one line per problem, exit status 2, nothing written.
COMPILE_TIME = [
    ("train_num_gpus=two", "train_num_gpus"),
    ("prune_threshold=1.5", "prune_threshold"),
    ("prune_equalization_criterion=average", "prune_equalization_criterion"),
    ("convert_trt_precision=int4", "convert_trt_precision"),
    ("convert_trt_dims=224,224", "convert_trt_dims"),
    ("convert_trt_input_type=chw", "convert_trt_input_type"),
    ("train_classification_output=/data/output", "train_classification_output"),
    ("test_infer_image_path=../elsewhere/images", "test_infer_image_path"),
    ("min_accuracy=90", "min_accuracy"),
    ("tao_mount_dir=mnt/workspace", "tao_mount_dir"),
    ("convert_trt_batch_size=128", "convert_trt_batch_size"),
    ("pretrained_model_name=resnet18", "pretrained_model_name"),
    # Values TAO cannot use, or that would become options of its parsers.
    ("train_num_gpus= 1", "train_num_gpus"),
    ("train_num_gpus=\u0661", "train_num_gpus"),
    ("train_num_gpus=99999999999999999999", "train_num_gpus"),
    ("test_infer_batch_size=4000000000", "test_infer_batch_size"),
    ("prune_threshold=1e309", "prune_threshold"),
    ("min_accuracy=nan", "min_accuracy"),
    ("api_key=--help", "api_key"),
    ("convert_trt_output_layer=-v", "convert_trt_output_layer"),
    ("convert_trt_output_layer=predictions/softmax", "convert_trt_output_layer"),
    # Longer than Linux takes (PATH_MAX) once a step adds its names: fails only after training.
    ("train_classification_output=tao-experiments/" + "/".join(["d" * 200] * 19),
     "train_classification_output"),
    ("pretrained_model_name=--help/tao/model:v1", "pretrained_model_name"),
    ("tao_mount_dir=//", "tao_mount_dir"),
    ("tao_mount_dir=/mnt/workspace/../../etc", "tao_mount_dir"),
    ("tao_mount_dir=/etc", "tao_mount_dir"),
    ("tao_mount_dir=/usr/local/workspace", "tao_mount_dir"),
    ("export_model_output_file=tao-experiments/export/final_model.etlt/",
     "export_model_output_file"),
    ("export_model_output_file=tao-experiments/export/a\nb.etlt", "export_model_output_file"),
    ("train_classification_output=tao-experiments/\u202eoutput", "train_classification_output"),
    ("calibrate_output_file=tao-experiments/" + "x" * 250, "calibrate_output_file"),
    # Rewritten before the step sees them: the key's $(TAO_API_KEY), Argo's {{...}}.
    ("export_model_output_file=tao-experiments/$(TAO_API_KEY).etlt", "export_model_output_file"),
    ("api_key={{workflow.uid}}", "api_key"),
    # TAO's wrapper would run `touch pwned` and write m.etlt (tests/test_preflight.py has
    # the other characters bash would read).
    ("export_model_output_file=tao-experiments/export/m`touch${IFS}pwned`.etlt",
     "export_model_output_file"),
    ("test_infer_image_path=tao-experiments/{{workflow.name}}", "test_infer_image_path"),
    # Colliding outputs: each would waste both trainings or silently replace a file.
    ("calibrate_output_file=specs/classification_retrain_spec.cfg", "calibrate_output_file"),
    ("export_model_output_file=tao-experiments/output-retrain/weights/resnet_080.tlt",
     "export_model_output_file"),
    ("export_model_output_file=tao-experiments/output-retrain/classmap.json",
     "export_model_output_file"),
    ("export_int8_model_output_file=tao-experiments/export/final_model.etlt",
     "export_int8_model_output_file"),
    ("convert_trt_output_file=tao-experiments/export/final_int8_model.etlt",
     "convert_trt_output_file"),
    ("export_int8_cache_file=tao-experiments/export/calibration.tensor", "export_int8_cache_file"),
    ("prune_model_output_file=tao-experiments/output/pruned.tlt", "prune_model_output_file"),
]


@pytest.mark.parametrize("param, name", COMPILE_TIME)
def test_form_mistakes_are_caught_when_compiling(tmp_path, capsys, param, name):
    out = tmp_path / "p.yaml"
    line = main_error(capsys, "--param", param, "-o", str(out))  # in-process: one line, exit 2
    assert line.split(": error: ", 1)[1].startswith(name), line
    assert not out.exists()


@pytest.mark.e2e
def test_a_form_mistake_is_one_line_from_the_compile_script(tmp_path):
    """The same, as the user runs it: no traceback, nothing written."""
    out = tmp_path / "p.yaml"
    result = run_compiler("--param", "train_num_gpus=two", "-o", str(out))
    line = one_error_line(result)
    assert line.startswith("tao_iva_classification_pipeline.py: error: train_num_gpus"), line
    assert not out.exists()


def test_an_unknown_form_field_is_caught_when_compiling(capsys):
    line = main_error(capsys, "--param", "learning_rate=0.1")
    assert "'learning_rate' is not a Create Run parameter" in line


def edited_specs(tmp_path, name: str, old: str, new: str):
    specs = tmp_path / "specs"
    shutil.copytree(REPO / "specs", specs)
    path = specs / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return ["--specs", str(specs)]


TRAIN, RETRAIN = "classification_spec.cfg", "classification_retrain_spec.cfg"
# Caught by the preflight step: it fails, and no other step starts. One case end to end: the
# catalogue of what preflight catches is tests/test_preflight.py's CATALOGUE (in-process),
# where each of the cases once rehearsed here is a row (missing spec, spec syntax error,
# unknown field, missing required field, retrain not from the pruned model, retrain freezing
# blocks, spec path outside the workspace, pretrained model not where ngc puts it, checkpoint
# name vs n_epochs, engine dims, missing test image folder, class mismatch, class folder
# without images, single class, missing split); tests/test_specs.py has the enum check.
@pytest.mark.e2e
def test_a_workspace_mistake_is_caught_by_preflight_before_any_gpu_step(tmp_path):
    result, statuses = dry_run(*edited_specs(tmp_path, TRAIN, "n_epochs: 80", "n_epochs 80 }"))
    assert result.returncode == 1, result.stdout
    assert statuses.pop("preflight") == ["Failed"]
    assert statuses.pop("summary") == ["Succeeded"]  # the exit handler reports it
    assert all(s == ["Omitted"] for s in statuses.values()), statuses
    tail = result.stdout[result.stdout.index("(template preflight) failed"):]
    assert "classification_spec.cfg:" in tail, tail
    assert "Traceback" not in result.stdout


# ------------------------------------------------------------------ paths, workspaces, errors
def one_error_line(result, status: int = 2) -> str:
    assert result.returncode == status, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def specs_for_mount(tmp_path, mount: str) -> Path:
    """The shipped specs as a user writes them for tao_mount_dir=mount."""
    specs = tmp_path / f"specs-{mount.strip('/').replace('/', '-')}"
    specs.mkdir()
    for spec in (REPO / "specs").glob("*.cfg"):
        (specs / spec.name).write_text(spec.read_text().replace("/mnt/workspace", mount))
    return specs


def readme_workspace(tmp_path, specs: Path = REPO / "specs") -> Path:
    """A workspace laid out as the README says: specs copied unchanged, a dataset."""
    workspace = tmp_path / "real-ws"
    (workspace / "specs").mkdir(parents=True)
    for spec in specs.glob("*.cfg"):
        shutil.copy(spec, workspace / "specs")
    make_dataset(str(workspace / "tao-experiments" / "data"),
                 counts={"train": 170, "val": 6, "test": 6})
    (workspace / "models").mkdir()
    return workspace


@pytest.mark.e2e
def test_tao_mount_dir_data_maps_as_whole_path_components(tmp_path):
    # /data is also a component of tao-experiments/data/split: only the leading one maps.
    specs = specs_for_mount(tmp_path, "/data")
    result, statuses = dry_run("--param", "tao_mount_dir=/data", "--specs", str(specs))
    assert result.returncode == 0, result.stdout
    assert all(s == ["Succeeded"] for s in statuses.values()), statuses
    assert "mounted at tao_mount_dir /data" in result.stdout


def test_path_map_matches_whole_components_only(tmp_path):
    path_map = PathMap({"/data": tmp_path})
    assert path_map.lookup("/data") == str(tmp_path)
    assert path_map.lookup("/data/tao-experiments/data/split") == str(
        tmp_path / "tao-experiments" / "data" / "split")
    assert path_map.lookup("/database/x") is None
    assert path_map.lookup("/x/data/y") is None
    assert path_map.rewrite("--results_dir=/data/out") == f"--results_dir={tmp_path}/out"
    assert path_map.rewrite("--results_dir=/datasets/out") == "--results_dir=/datasets/out"
    # a named file (report summary --artifact NAME=PATH) maps; the mount itself as a form
    # value (preflight --param tao_mount_dir=/data) is compared as typed, not opened
    assert path_map.rewrite("engine=/data/export/m.trt") == f"engine={tmp_path}/export/m.trt"
    assert path_map.rewrite("tao_mount_dir=/data") == "tao_mount_dir=/data"
    assert path_map.rewrite("engine=/datasets/m.trt") == "engine=/datasets/m.trt"
    # and back, in what a step publishes
    assert path_map.unmap(f"`{tmp_path}/out/m.trt`, {tmp_path}. {tmp_path}2 {tmp_path}.bak") \
        == f"`/data/out/m.trt`, /data. {tmp_path}2 {tmp_path}.bak"


@pytest.mark.e2e
def test_a_readme_workspace_is_rehearsed_unchanged(tmp_path):
    workspace = readme_workspace(tmp_path)
    specs_before = {p.name: p.read_bytes() for p in (workspace / "specs").iterdir()}
    images_before = sorted(p.relative_to(workspace)
                           for p in (workspace / "tao-experiments").rglob("*.png"))
    result, statuses = dry_run("--workspace", str(workspace))
    assert result.returncode == 0, result.stdout
    assert all(s == ["Succeeded"] for s in statuses.values()), statuses
    assert {p.name: p.read_bytes() for p in (workspace / "specs").iterdir()} == specs_before
    assert sorted(p.relative_to(workspace)
                  for p in (workspace / "tao-experiments" / "data").rglob("*.png")) == [
        p for p in images_before if p.parts[1] == "data"]
    # says which specs and which dataset it used
    assert f"the workspace's own {workspace / 'specs' / TRAIN}" in result.stdout
    assert f"dataset: the workspace's own {workspace / 'tao-experiments/data/split'}" \
        in result.stdout


@pytest.mark.e2e
def test_a_workspace_for_another_mount_dir_is_rehearsed_as_it_is(tmp_path):
    workspace = readme_workspace(tmp_path, specs_for_mount(tmp_path, "/data"))
    result, _ = dry_run("--workspace", str(workspace), "--param", "tao_mount_dir=/data")
    assert result.returncode == 0, result.stdout


@pytest.mark.e2e
def test_specs_that_differ_from_a_workspaces_own_are_refused(tmp_path):
    workspace = readme_workspace(tmp_path)
    specs = specs_for_mount(tmp_path, "/data")
    before = (workspace / "specs" / TRAIN).read_bytes()
    line = one_error_line(dry_run("--workspace", str(workspace), "--specs", str(specs))[0])
    assert "--specs" in line and str(workspace / "specs" / TRAIN) in line
    assert "never overwrites" in line
    assert (workspace / "specs" / TRAIN).read_bytes() == before
    assert not (workspace / "tao-experiments" / "output").exists()  # nothing ran


@pytest.mark.e2e
def test_no_dataset_is_ever_generated_into_a_named_workspace(tmp_path):
    workspace = readme_workspace(tmp_path)
    shutil.rmtree(workspace / "tao-experiments" / "data")  # images put somewhere else
    result, statuses = dry_run("--workspace", str(workspace))
    assert result.returncode == 1
    assert statuses.pop("preflight") == ["Failed"]
    assert "dataset: none at" in result.stdout and "nothing is generated" in result.stdout
    assert not list(workspace.rglob("*.png"))
    report = result.stdout[result.stdout.index("(template preflight) failed"):]
    assert "train_dataset_path" in report


@pytest.mark.e2e
def test_a_new_named_workspace_is_seeded_and_kept(default_dry_run):
    workspace, result = default_dry_run.workspace, default_dry_run  # new: the run made it
    assert result.returncode == 0, result.stdout
    assert "dataset: generated under" in result.stdout
    assert (workspace / "specs" / TRAIN).read_bytes() == (REPO / "specs" / TRAIN).read_bytes()


def test_ctrl_c_while_a_new_workspace_is_seeded_leaves_it_new(tmp_path, monkeypatch,
                                                               default_workflow):
    from rehearsal import dry_run as rehearsal_module

    def interrupted(root, counts):  # Ctrl-C once some images are written
        make_dataset(root, counts={"train": 1, "val": 0, "test": 0})
        raise KeyboardInterrupt

    monkeypatch.setattr(rehearsal_module, "make_dataset", interrupted)
    workspace = tmp_path / "new-ws"
    rehearsal = rehearsal_module.Rehearsal(default_workflow.doc, overrides={}, specs_dir=None,
                                           workspace=workspace, fresh=True)
    with pytest.raises(KeyboardInterrupt):
        rehearsal.seed()
    assert [p.name for p in tmp_path.iterdir()] == ["new-ws"]  # no half-seeded sibling
    assert list(workspace.iterdir()) == []
    assert rehearsal_module.check_workspace_option(workspace)  # the next run seeds it anew


@pytest.mark.e2e
def test_each_step_is_shown_as_it_starts_and_ends(default_dry_run):
    lines = default_dry_run.stdout.splitlines()
    started = lines.index("  train-model: started")
    assert re.fullmatch(r"  train-model: Succeeded in \d+\.\d s", lines[started + 1])
    assert lines.index("  preflight: started") < started


@pytest.fixture
def in_process_tmp(tmp_path, monkeypatch):
    """TMPDIR for a dry run started in-process (tempfile caches it): pytest's tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_a_dataset_beyond_the_rehearsal_bound_is_refused(in_process_tmp, capsys):
    tmp_path = in_process_tmp
    line = main_error(capsys, "--dry-run", "--param", "calibrate_max_batches=1000000000")
    assert "calibrate_max_batches" in line and "at most" in line
    assert not list(tmp_path.iterdir())  # TMPDIR: nothing generated, nothing left


@pytest.mark.e2e
def test_the_bound_suggested_for_calibrate_max_batches_is_accepted(in_process_tmp, capsys):
    line = main_error(capsys, "--dry-run", "--param", "calibrate_max_batches=300")
    most = re.search(r"calibrate_max_batches=(\d+) or less", line).group(1)
    assert dry_run("--param", f"calibrate_max_batches={most}")[0].returncode == 0


def test_an_unknown_fake_tao_failure_is_refused(in_process_tmp, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_TAO_FAIL", "prune-model")
    line = main_error(capsys, "--dry-run")
    assert "FAKE_TAO_FAIL" in line and "prune-model" in line and "prune" in line


def binary_specs(tmp_path):
    specs = tmp_path / "binary-specs"
    shutil.copytree(REPO / "specs", specs)
    (specs / TRAIN).write_bytes(bytes(range(256)))
    return ["--specs", str(specs)]


def a_file(tmp_path):
    (tmp_path / "ws.txt").write_text("not a folder")
    return ["--workspace", str(tmp_path / "ws.txt")]


BAD_REHEARSALS = {
    "workspace is a file": (a_file, "is a file"),
    "workspace under a file": (
        lambda tmp: ["--workspace", str(tmp / "ws.txt" / "ws")] if a_file(tmp) else [],
        "is not a folder"),
    "workspace under /proc": (lambda tmp: ["--workspace", "/proc/tao-ws"], "cannot be created"),
    "binary spec": (binary_specs, "not a text spec file"),
}


@pytest.mark.parametrize("case", sorted(BAD_REHEARSALS))
def test_bad_rehearsal_options_are_one_line_and_leave_nothing(in_process_tmp, capsys, case):
    tmp_path = in_process_tmp
    make_args, expected = BAD_REHEARSALS[case]
    args = make_args(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    line = main_error(capsys, "--dry-run", *args)  # exit 2, one line, in-process
    option = args[0]
    assert line.split(": error: ", 1)[1].startswith(f"{option} "), line
    assert expected in line
    assert sorted(tmp_path.rglob("*")) == before  # TMPDIR too: no scratch folder left


@pytest.mark.parametrize("content", [[], ["README.md"], ["other_spec.cfg"]])
def test_specs_without_the_forms_spec_files_are_refused(tmp_path, monkeypatch, capsys, content):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # in-process: TMPDIR is cached
    specs = tmp_path / "my_specs"
    specs.mkdir()
    for name in content:
        (specs / name).write_text("model_config {}\n")
    line = main_error(capsys, "--dry-run", "--specs", str(specs))
    assert f"error: --specs {specs}: holds none of the spec files the form names (" \
        "classification_spec.cfg, classification_retrain_spec.cfg)" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_specs"]  # no scratch left


@pytest.mark.e2e
@pytest.mark.parametrize("signum, status, said", [
    (signal.SIGINT, 130, "dry run interrupted"),
    (signal.SIGTERM, 143, "dry run terminated (SIGTERM)"),
])
def test_ctrl_c_or_sigterm_during_a_dry_run_stops_it_and_leaves_nothing(tmp_path, signum,
                                                                        status, said):
    # Ctrl-C in a terminal finds SIGINT at its default; a shell starting the test suite in
    # the background ignores it, and the child would inherit that, so set it as a user has it.
    process = subprocess.Popen([sys.executable, str(ENTRY_POINT), "--dry-run"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TMPDIR": str(tmp_path)},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in process.stdout:
        if line.strip() == "train-model: started":
            break
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == status
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], stderr
    assert not list(tmp_path.iterdir())  # the scratch folder, its compiled package included


def test_the_specs_to_seed_are_read_from_the_compiled_workflow(default_workflow):
    """The parameters a step passes to TAO after -e, not a list kept beside the pipeline."""
    from rehearsal import dry_run as rehearsal_module

    assert rehearsal_module.spec_parameters(default_workflow.doc) == (
        "train_classification_spec", "retrain_classification_spec",
        "calibrate_classification_spec")
    assert rehearsal_module.compiled_release(default_workflow.doc) == "3.0"


# ==========================================================================================
# TAO 5.0 (--tao-version 5.0), merged from test_tao5_build.py: the dry run end to end.
TAO5_STEPS = tuple(s for s in STEPS if s != "export-int8-model") + ("evaluate-engine",)


@pytest.mark.e2e
def test_dry_run_rehearses_the_whole_tao5_pipeline_and_a_rerun(tmp_path):
    workspace = tmp_path / "ws"
    for _ in ("first run", "re-run"):  # the re-run moves the first one's outputs aside
        result, statuses = dry_run(*TAO5, "--workspace", str(workspace))
        assert result.returncode == 0, result.stdout + result.stderr
        assert set(statuses) == set(TAO5_STEPS)
        assert all(s == ["Succeeded"] for s in statuses.values()), statuses
        assert statuses["evaluate-engine"] == ["Succeeded"]  # the engine measured, kept
    export = workspace / "tao-experiments" / "export"
    assert (export / "gen_trt_engine" / "evaluate" / "results.json").is_file()
    assert (export / "final_model.onnx").is_file() and (export / "final_model.trt").is_file()
    assert list(export.glob("final_model.onnx.previous-*"))
    assert list(export.glob("final_model_int8_cache.bin.previous-*"))
    assert (workspace / "tao-experiments/output/weights/resnet_080.hdf5").is_file()


@pytest.mark.e2e
def test_dry_run_fp16_engine_needs_no_calibration_and_hdf5_models_no_key(tmp_path):
    # an empty key: the wrapper drops "-k ''", and .hdf5 models need none
    result, statuses = dry_run(*TAO5, "--param", "convert_trt_precision=fp16",
                               "--param", "api_key=")
    assert result.returncode == 0, result.stdout
    # the FP variant of convert-trt built the engine; the INT8 one never started
    assert re.search(r"Succeeded\s+convert-trt-2 \(convert-trt\)", result.stdout)
    assert re.search(r"Skipped\s+condition-int8-engine", result.stdout)


@pytest.mark.e2e
def test_dry_run_fails_an_engine_that_loses_accuracy_and_the_summary_says_why(tmp_path):
    workspace = tmp_path / "ws"
    result, statuses = dry_run(*TAO5, "--workspace", str(workspace),
                               env={"FAKE_TAO_FAIL": "engine:lossy"})
    assert result.returncode == 1
    assert statuses["convert-trt"] == ["Succeeded"]
    assert statuses["evaluate-engine"] == ["Failed"]
    assert statuses["summary"] == ["Succeeded"]
    reason = re.search(r"Engine gate: FAILED — engine \S+final_model.trt loses ([\d.]+) points "
                       r"of top-1 accuracy .* more than max_engine_accuracy_drop 1.00 points; "
                       r"try more calibration batches \(calibrate_max_batches, "
                       r"export_int8_batches\) or convert_trt_precision fp16.", result.stdout)
    assert reason and float(reason.group(1)) > 1, result.stdout
    # the run's summary (kept with the failed run's logs) names the engine's failure
    (summary,) = tmp_path.glob("tao-dry-run-*/logs/*-onExit/fs/tmp_kfp-outputs/"
                               "mlpipeline-ui-metadata.json")
    text = json.loads(summary.read_text())["outputs"][0]["source"]
    assert "**The engine's accuracy gate failed**: Engine gate: FAILED — engine " in text
    assert re.search(r"Its own accuracy: top-1 [\d.]+% \(24 images\) against the retrained "
                     r"model's [\d.]+%, -[\d.]+ points\. Engine gate: \*\*FAILED\*\*", text)
    (record,) = (workspace / ".tao-run-claims" / "results").glob("*/evaluate-engine.json")
    kept = json.loads(record.read_text())
    assert kept["verdict"] == "fail" and kept["top1"] < kept["model_top1"] - 0.01


@pytest.mark.e2e
def test_dry_run_catches_a_failure_tao5_reports_only_in_status_json():
    result, statuses = dry_run(*TAO5, env={"FAKE_TAO_FAIL": "evaluate:status"})
    assert result.returncode == 1
    assert statuses["evaluate-model"] == ["Failed"]
    assert "exited 0 but recorded a failure" in result.stdout
    assert "Evaluate was interrupted" in result.stdout


@pytest.mark.e2e
def test_dry_run_preflight_applies_the_tao5_spec_rules(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    for spec in (REPO / "specs" / "tao5").glob("*.cfg"):
        text = spec.read_text().replace('  preprocess_mode: "caffe"\n', "")
        (specs / spec.name).write_text(text)
    result, statuses = dry_run(*TAO5, "--specs", str(specs))
    assert result.returncode == 1 and statuses["preflight"] == ["Failed"]
    assert "train_config.preprocess_mode: missing (required: TAO 5 requires it" in result.stdout
    assert statuses["train-model"] == ["Omitted"]  # no GPU step started


def test_the_rehearsal_reads_the_tao5_release_and_its_specs_from_the_workflow(tao5_workflow):
    from rehearsal import dry_run as rehearsal_module

    assert rehearsal_module.compiled_release(tao5_workflow.doc) == "5.0"
    assert rehearsal_module.spec_parameters(tao5_workflow.doc) == (
        "train_classification_spec", "retrain_classification_spec",
        "calibrate_classification_spec")
