"""fake_tao5: the TAO 5 wrapper's rules and the traps the pipeline must handle, emulated
as NVIDIA's source describes them (see rehearsal/fake_tao/fake_tao5.py for the citations)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from rehearsal.dry_run import seed_workspace
from rehearsal.step_executor import PATH_MAP_ENV
from tao_step import profiles

BIN = REPO / "rehearsal" / "fake_tao" / "bin"
# The specs name paths under tao_mount_dir; the fake reads them where the runner would have
# mounted the workspace (set by the `trained` fixture).
MOUNTED = {}


def tf1(*arguments, env=None, cwd=None) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(BIN), os.path.dirname(sys.executable), os.environ["PATH"]])
    return subprocess.run([str(BIN / "classification_tf1"), *map(str, arguments)],
                          capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, "PATH": path, PATH_MAP_ENV: json.dumps(MOUNTED),
                               **(env or {})})


def status_lines(folder: Path) -> list:
    return [json.loads(line)["status"]
            for line in (folder / "status.json").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workspace with the TAO 5 specs, the pretrained .hdf5 and a trained model."""
    import tao_iva_classification_pipeline as pipeline

    ws = tmp_path_factory.mktemp("ws")
    form = {p.name: p.default for p in pipeline.CompileOptions(tao_version="5.0").form()}
    seed_workspace(ws, form=form, specs_dir=REPO / profiles.TAO_5_0.specs_dir)
    MOUNTED[form["tao_mount_dir"]] = str(ws)
    subprocess.run([str(BIN / "ngc"), "registry", "model", "download-version",
                    form["pretrained_model_name"], "--dest", str(ws / "models")],
                   check=True, capture_output=True,
                   env={**os.environ, "PATH": os.path.dirname(sys.executable)})
    result = tf1("train", "-e", ws / "specs/classification_spec.cfg",
                 "-r", ws / "tao-experiments/output", "--gpus", "1")
    assert result.returncode == 0, result.stdout
    return ws


def test_train_writes_plain_hdf5_checkpoints_and_logs_in_tao5_format(trained):
    output = trained / "tao-experiments/output"
    assert (output / "weights/resnet_080.hdf5").is_file()
    assert status_lines(output)[-1] == "SUCCESS"


def test_the_subtask_must_be_the_first_argument(trained):
    result = tf1("--gpus", "1", "train", "-e", trained / "specs/classification_spec.cfg",
                 "-r", trained / "elsewhere")
    assert result.returncode != 0 and "the subtask must come first" in result.stdout
    assert not (trained / "elsewhere").exists()


def test_empty_options_are_dropped_and_calibration_takes_no_key(trained):
    spec = trained / "specs/classification_spec.cfg"
    ok = tf1("evaluate", "-e", spec, "-k", "")
    assert ok.returncode == 0 and ok.stdout.rstrip().endswith("Execution status: PASS")
    assert "[TAO Toolkit] [INFO] __main__ " in ok.stdout
    refused = tf1("calibration_tensorfile", "-e", spec, "-o", trained / "c.tensor", "-k", "x")
    assert refused.returncode == 2 and "unrecognized arguments: -k x" in refused.stderr


def test_prune_output_must_end_in_hdf5(trained):
    model = trained / "tao-experiments/output/weights/resnet_080.hdf5"
    bad = tf1("prune", "-m", model, "-o", trained / "pruned/p.tlt", "-pth", "0.6")
    assert bad.returncode == 255 and "No such file or directory" in bad.stdout
    assert (trained / "pruned/p.tlt.hdf5").exists()  # what TAO 5 leaves behind
    good = tf1("prune", "-m", model, "-o", trained / "pruned/p.hdf5", "-pth", "0.6")
    assert good.returncode == 0 and (trained / "pruned/p.hdf5").is_file()


def test_export_appends_onnx_and_refuses_an_existing_output(trained):
    model = trained / "tao-experiments/output/weights/resnet_080.hdf5"
    spec = trained / "specs/classification_spec.cfg"
    first = tf1("export", "-m", model, "-o", trained / "x/final.etlt", "-e", spec)
    assert first.returncode == 0 and (trained / "x/final.etlt.onnx").is_file()
    again = tf1("export", "-m", model, "-o", trained / "x/final.etlt", "-e", spec)
    assert again.returncode == 255 and "already exists" in again.stdout


def test_int8_engine_needs_both_calibration_files_and_may_fall_back_to_random(trained):
    model = trained / "tao-experiments/output/weights/resnet_080.hdf5"
    spec = trained / "specs/classification_spec.cfg"
    onnx = trained / "e/m.onnx"
    assert tf1("export", "-m", model, "-o", onnx, "-e", spec).returncode == 0
    common = ["gen_trt_engine", "-m", onnx, "-e", spec, "--data_type", "int8",
              "--engine_file", trained / "e/m.trt"]
    crash = tf1(*common, "-r", trained / "e/r1", "--cal_cache_file", trained / "e/c.bin")
    assert crash.returncode == 255 and "NoneType" in crash.stdout
    assert status_lines(trained / "e/r1") == ["STARTED", "FAILURE"]
    random = tf1(*common, "-r", trained / "e/r2", "--cal_cache_file", trained / "e/c.bin",
                 "--cal_data_file", trained / "e/missing.tensor")
    assert random.returncode == 0 and "random images" in random.stdout  # the silent trap


def test_a_failure_recorded_only_in_status_json_exits_0_with_pass(trained):
    result = tf1("evaluate", "-e", trained / "specs/classification_spec.cfg",
                 "-r", trained / "ev", env={"FAKE_TAO_FAIL": "evaluate:status"})
    assert result.returncode == 0 and result.stdout.rstrip().endswith("Execution status: PASS")
    assert status_lines(trained / "ev") == ["FAILURE"]


def test_inference_without_images_fails_or_records_failure_as_tao5_does(trained):
    """tao_tensorflow1_backend@d73dcfc makenet/scripts/inference.py: without -r the empty
    folder's FAILURE line meets an unbound status logger; with -r it is recorded and the
    wrapper says PASS. result.csv exists, empty, either way."""
    empty = trained / "no-images"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image\n")
    output = trained / "tao-experiments/output"
    command = ["inference", "-e", trained / "specs/classification_spec.cfg",
               "-m", output / "weights/resnet_080.hdf5", "-d", empty,
               "-cm", output / "classmap.json"]
    crash = tf1(*command)
    assert crash.returncode == 255 and "UnboundLocalError" in crash.stdout
    assert (empty / "result.csv").read_text() == ""
    recorded = tf1(*command, "-r", trained / "infer")
    assert recorded.returncode == 0, recorded.stdout
    assert recorded.stdout.rstrip().endswith("Execution status: PASS")
    assert status_lines(trained / "infer") == ["STARTED", "FAILURE"]
    assert (trained / "infer/result.csv").read_text() == ""


def test_the_wrapper_reads_values_with_bash_as_tao_does(trained, tmp_path):
    """Issue 15's example, which preflight now refuses: TAO's wrapper (entrypoint.py
    launch_job at d73dcfc) runs `touch pwned` and exports to m.onnx; a ' crashes it."""
    model = trained / "tao-experiments/output/weights/resnet_080.hdf5"
    spec = trained / "specs/classification_spec.cfg"
    result = tf1("export", "-m", model, "-o", f"{trained}/q/m`touch${{IFS}}pwned`.onnx",
                 "-e", spec, cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert (tmp_path / "pwned").is_file()
    assert [p.name for p in (trained / "q").iterdir()] == ["m.onnx"]
    crash = tf1("export", "-m", model, "-o", f"{trained}/q/it's.onnx", "-e", spec)
    assert crash.returncode == 1 and "ValueError: No closing quotation" in crash.stderr
    assert "Execution status" not in crash.stdout
