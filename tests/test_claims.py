"""Runs sharing a workspace: preflight claims a run's outputs, refuses a run that would
write where an active run writes, and ``python -m tao_step release`` drops a claim."""

import json
import os
import subprocess

from conftest import MOUNT, ROOT
from in_container import PYTHON

from tao_step import claims


def preflight(workspace, values, run=None, uid=None, env=None):
    arguments = [PYTHON, "-m", "tao_step", "preflight", "--workspace", str(workspace),
                 "--mount-dir", MOUNT]
    if run:
        arguments += ["--run", run, "--run-uid", uid]
    for name, value in values.items():
        arguments += ["--param", f"{name}={value}"]
    return subprocess.run(arguments, cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def release(workspace, *extra):
    return subprocess.run([PYTHON, "-m", "tao_step", "release", "--workspace",
                           str(workspace), *extra], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def elsewhere(workspace, values, tag):
    """The same run writing everything to paths of its own: outputs under
    tao-experiments/TAG/, the model under models-TAG/, predictions into another test class
    folder, with spec files to match under specs/TAG/."""
    def move(text):
        return (text.replace("tao-experiments/output", f"tao-experiments/{tag}/output")
                .replace("tao-experiments/export", f"tao-experiments/{tag}/export")
                .replace("/models/", f"/models-{tag}/"))

    (workspace / "specs" / tag).mkdir()
    moved = {name: move(value) for name, value in values.items()}
    for name in ("train_classification_spec", "retrain_classification_spec",
                 "calibrate_classification_spec"):
        moved[name] = values[name].replace("specs/", f"specs/{tag}/")
        (workspace / moved[name]).write_text(move((workspace / values[name]).read_text()))
    moved["pretrained_model_dir"] = f"models-{tag}"
    moved["test_infer_image_path"] = "tao-experiments/data/split/test/car"
    return moved


def test_a_second_run_on_the_same_outputs_is_refused_naming_the_first(workspace, values):
    first = preflight(workspace, values, "tao-iva-classification-aaaaa", "uid-a")
    assert first.returncode == 0, first.stdout
    assert first.stdout.rstrip().endswith("outputs claimed for run tao-iva-classification-aaaaa")
    claim = json.loads((workspace / claims.FOLDER / "uid-a.json").read_text())
    assert claim["workflow"] == "tao-iva-classification-aaaaa"
    assert "tao-experiments/output" in claim["paths"]
    assert "tao-experiments/data/split/test/person/result.csv" in claim["paths"]

    second = preflight(workspace, values, "tao-iva-classification-bbbbb", "uid-b")
    assert second.returncode == 1
    lines = second.stdout.splitlines()
    refusal = [line for line in lines if line.startswith("train_classification_output:")]
    assert refusal == [
        f"train_classification_output: tao-experiments/output is being written by run "
        f"tao-iva-classification-aaaaa (started {claim['started']}, claim file "
        f"{workspace / claims.FOLDER / 'uid-a.json'}), whose output tao-experiments/output "
        "overlaps it; wait until that run ends, or give this run other output paths. If that "
        "run no longer exists (terminated or deleted), release its claim: python3 -m tao_step "
        f"release --workspace {workspace} --run tao-iva-classification-aaaaa"]
    # One line per output the runs share, and nothing claimed for the refused run.
    assert lines[-1].startswith("preflight: 10 problems")
    assert not (workspace / claims.FOLDER / "uid-b.json").exists()


def test_runs_writing_elsewhere_run_side_by_side(workspace, values):
    assert preflight(workspace, values, "run-a", "uid-a").returncode == 0
    result = preflight(workspace, elsewhere(workspace, values, "b"), "run-b", "uid-b")
    assert result.returncode == 0, result.stdout
    assert len(list((workspace / claims.FOLDER).glob("*.json"))) == 2


def test_an_output_inside_another_runs_output_folder_conflicts(workspace, values):
    assert preflight(workspace, values, "run-a", "uid-a").returncode == 0
    other = elsewhere(workspace, values, "b")
    other["calibrate_output_file"] = "tao-experiments/output/calibration.tensor"
    result = preflight(workspace, other, "run-b", "uid-b")
    assert result.returncode == 1
    problems = result.stdout.splitlines()[:-1]
    assert len(problems) == 1
    assert problems[0].startswith(
        "calibrate_output_file: tao-experiments/output/calibration.tensor is being written by "
        "run run-a (started ")
    assert "whose output tao-experiments/output overlaps it" in problems[0]


def test_two_runs_started_together_exactly_one_proceeds(workspace, values):
    for attempt in range(3):
        processes = []
        for run in ("left", "right"):
            arguments = [PYTHON, "-m", "tao_step", "preflight", "--workspace",
                         str(workspace), "--mount-dir", MOUNT, "--run", f"{run}-{attempt}",
                         "--run-uid", f"uid-{run}-{attempt}"]
            for name, value in values.items():
                arguments += ["--param", f"{name}={value}"]
            processes.append(subprocess.Popen(arguments, cwd=ROOT, stdout=subprocess.PIPE,
                                              universal_newlines=True))
        outputs = [process.communicate(timeout=60)[0] for process in processes]
        codes = sorted(process.returncode for process in processes)
        assert codes == [0, 1], outputs
        held = [path.name for path in (workspace / claims.FOLDER).glob("*.json")]
        assert len(held) == 1
        winner = held[0][len("uid-"):-len(".json")]
        assert release(workspace, "--run", winner).returncode == 0


def test_a_retried_preflight_of_the_same_run_keeps_its_claim(workspace, values):
    assert preflight(workspace, values, "run-a", "uid-a").returncode == 0
    assert preflight(workspace, values, "run-a", "uid-a").returncode == 0


def test_a_run_with_problems_claims_nothing(workspace, values):
    result = preflight(workspace, dict(values, train_num_gpus="two"), "run-a", "uid-a")
    assert result.returncode == 1
    assert list((workspace / claims.FOLDER).glob("*.json")) == []


def test_release_is_explicit_and_only_drops_the_named_run(workspace, values):
    assert preflight(workspace, values, "run-a", "uid-a").returncode == 0
    # The exit handler of a refused run releases by its own uid: the holder keeps its claim.
    result = release(workspace, "--run", "run-b", "--run-uid", "uid-b")
    assert result.returncode == 0
    assert result.stdout == f"release: run run-b holds no claim in {workspace}\n"
    result = release(workspace, "--run", "run-a", "--run-uid", "uid-other")
    assert (workspace / claims.FOLDER / "uid-a.json").exists()
    assert preflight(workspace, values, "run-b", "uid-b").returncode == 1

    result = release(workspace, "--run", "run-a")
    assert result.returncode == 0
    assert result.stdout.startswith("release: released the claim of run run-a (started ")
    assert preflight(workspace, values, "run-b", "uid-b").returncode == 0


def test_release_usage_errors_exit_2(workspace):
    result = release(workspace)
    assert result.returncode == 2
    assert "usage: python3 -m tao_step release" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreadable_claim_is_reported_not_ignored(workspace, values):
    (workspace / claims.FOLDER).mkdir()
    (workspace / claims.FOLDER / "broken.json").write_text("{")
    result = preflight(workspace, values, "run-a", "uid-a")
    assert result.returncode == 1
    assert "broken.json cannot be read" in result.stdout
    assert "delete it if no run is using this workspace" in result.stdout


def test_a_form_value_holding_the_secret_key_is_refused_without_printing_it(workspace, values):
    key = "s3cr3t-tao-key-value"
    leaked = dict(values, api_key=key,
                  export_model_output_file=f"tao-experiments/export/{key}.etlt")
    result = preflight(workspace, leaked, "run-a", "uid-a", env={"TAO_API_KEY": key})
    assert result.returncode == 1
    assert key not in result.stdout + result.stderr
    assert ("export_model_output_file: the value contains the TAO key from the Secret "
            "(Kubernetes expanded $(TAO_API_KEY) into it); remove it from "
            "export_model_output_file") in result.stdout.splitlines()
    assert not (workspace / claims.FOLDER / "uid-a.json").exists()


def report_step(workspace, run, uid, output):
    """A writing step as the pipeline runs it: tao_step report with the run's identity."""
    env = {**os.environ, "TAO_RUN_WORKSPACE": str(workspace), "TAO_RUN_NAME": run,
           "TAO_RUN_UID": uid}
    return subprocess.run([PYTHON, "-m", "tao_step", "report", "run", "--out-dir",
                           str(workspace.parent / f"out-{uid}"), "--keep-previous",
                           str(workspace / output), "--", PYTHON, "-c", "print('ran')"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)


def test_a_writing_step_retakes_its_runs_claim_as_after_a_kfp_retry(workspace, values):
    # KFP's Retry keeps the succeeded preflight and re-runs the failed steps, after the first
    # attempt's exit handler released the claim.
    assert preflight(workspace, values, "run-a", "uid-a").returncode == 0
    assert release(workspace, "--run", "run-a", "--run-uid", "uid-a").returncode == 0
    retried = report_step(workspace, "run-a", "uid-a", "tao-experiments/output-retrain")
    assert retried.returncode == 0 and "ran" in retried.stdout
    result = preflight(workspace, values, "run-b", "uid-b")
    assert result.returncode == 1
    assert ("retrain_classification_output: tao-experiments/output-retrain is being written by "
            "run run-a") in result.stdout


def test_a_writing_step_of_another_run_moves_nothing(workspace, values):
    assert preflight(workspace, values, "run-a", "uid-a").returncode == 0
    earlier = workspace / "tao-experiments" / "output"
    earlier.mkdir(parents=True)
    (earlier / "training.csv").write_text("run a is writing")
    result = report_step(workspace, "run-b", "uid-b", "tao-experiments/output")
    assert result.returncode == 1
    assert "tao-experiments/output is being written by run run-a" in result.stdout
    assert "nothing was run or moved" in result.stdout and "ran" not in result.stdout
    assert (earlier / "training.csv").read_text() == "run a is writing"
    assert not list(earlier.parent.glob("output.previous-*"))
