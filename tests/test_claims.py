"""Runs sharing a workspace: preflight claims a run's outputs, refuses a run that would
write where an active run writes, and ``python -m tao_step release`` drops a claim."""

import errno
import json
import os
import subprocess
from contextlib import contextmanager

import pytest
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
    assert result.stdout == f"release: run run-b (uid uid-b) holds no claim in {workspace}\n"
    result = release(workspace, "--run", "run-a", "--run-uid", "uid-other")
    assert (workspace / claims.FOLDER / "uid-a.json").exists()
    assert preflight(workspace, values, "run-b", "uid-b").returncode == 1

    result = release(workspace, "--run", "run-a")
    assert result.returncode == 0
    assert result.stdout.startswith("release: released the claim of run run-a (started ")
    assert preflight(workspace, values, "run-b", "uid-b").returncode == 0


def test_release_by_hand_of_a_run_or_workspace_mistyped_fails_listing_the_claims(workspace,
                                                                                 values):
    result = release(workspace, "--run", "run-a")
    assert result.returncode == 1
    assert result.stdout == (f"release: {workspace} holds no claims (there is no "
                             f"{claims.FOLDER} folder); is it the workspace the refusal "
                             "names?\n")
    assert preflight(workspace, values, "run-a", "uid-a").returncode == 0
    claim = json.loads((workspace / claims.FOLDER / "uid-a.json").read_text())

    result = release(workspace, "--run", "run-aa")
    assert result.returncode == 1
    assert result.stdout == (
        f"release: run run-aa holds no claim in {workspace}; the claims there: run run-a "
        f"(started {claim['started']}, claim file {workspace / claims.FOLDER / 'uid-a.json'})\n")
    result = release(workspace.with_name("wss"), "--run", "run-a")
    assert result.returncode == 1
    assert result.stdout == (f"release: --workspace {workspace.with_name('wss')}: no such "
                             "folder; give the workspace folder the refusal names\n")
    assert (workspace / claims.FOLDER / "uid-a.json").exists()


def test_release_usage_errors_exit_2(workspace):
    result = release(workspace)
    assert result.returncode == 2
    assert "usage: python3 -m tao_step release" in result.stderr
    assert "Traceback" not in result.stderr


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


# -- paths as the file system reaches them ------------------------------------------------

def test_a_symlink_in_the_workspace_does_not_let_two_runs_claim_one_folder(workspace, values):
    # tao-experiments/b -> . makes tao-experiments/b/output the folder tao-experiments/output.
    (workspace / "tao-experiments" / "b").symlink_to(".")
    linked = elsewhere(workspace, values, "b")
    assert preflight(workspace, values, "run-a", "uid-a").returncode == 0
    result = preflight(workspace, linked, "run-b", "uid-b")
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith(
        "train_classification_output: tao-experiments/b/output (tao-experiments/output once "
        "its symbolic links are followed) is being written by run run-a (started ")

    # The other way round: the claim holds the path followed, not as spelled.
    assert release(workspace, "--run", "run-a").returncode == 0
    assert preflight(workspace, linked, "run-b", "uid-b").returncode == 0
    claim = json.loads((workspace / claims.FOLDER / "uid-b.json").read_text())
    assert "tao-experiments/output" in claim["paths"]
    result = preflight(workspace, values, "run-a", "uid-a")
    assert result.returncode == 1
    assert ("train_classification_output: tao-experiments/output is being written by run "
            "run-b") in result.stdout


def test_a_writing_step_refuses_an_output_a_link_made_after_preflight_leads_out(workspace,
                                                                                 values):
    # Preflight refuses such a link among the form's paths (test_preflight.py); a link made
    # after it would send TAO's output into the container, lost with it.
    assert preflight(workspace, values, "run-a", "uid-a").returncode == 0
    outside = workspace.parent / "elsewhere"
    outside.mkdir()
    (workspace / "tao-experiments" / "export").symlink_to(outside)
    result = report_step(workspace, "run-a", "uid-a", "tao-experiments/export/final_model.etlt")
    assert result.returncode == 1
    assert result.stdout == (
        "tao_step report: ERROR: tao-experiments/export/final_model.etlt leads out of the "
        f"workspace through a symbolic link (to {outside}/final_model.etlt): a step's "
        "container sees only the workspace volume; replace the link by a folder\n")


# -- housekeeping: a claims folder or claim file that is not what it should be -------------

@contextmanager
def immutable(path):
    """``path`` made immutable (``chattr +i``): nobody, root included, may create, rename or
    remove anything in it, as root may not in a folder on an NFS export with root_squash
    (and the tests run as root, whom file modes do not stop)."""
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


UNWRITABLE = {
    "no claims folder yet": ("workspace", "cannot create the claims folder"),
    "no lock file yet": ("folder", "cannot open the lock file"),
    "a lock file from earlier runs": ("lock", "cannot write the claim file"),
}


@pytest.mark.parametrize("case", UNWRITABLE)
def test_an_unwritable_claims_folder_is_one_line_in_preflight(workspace, values, case):
    which, expected = UNWRITABLE[case]
    folder = workspace / claims.FOLDER
    if which != "workspace":
        folder.mkdir()
    if which == "lock":
        (folder / claims.LOCK).touch()
    with immutable(workspace if which == "workspace" else folder):
        result = preflight(workspace, values, "run-a", "uid-a")
    assert result.returncode == 1 and result.stderr == ""
    problems = result.stdout.splitlines()[:-1]
    assert len(problems) == 1
    assert problems[0].startswith(f"--workspace {workspace}: {expected} ")
    assert problems[0].endswith(
        f"(Operation not permitted): every run records its claim in {folder}, so the steps "
        "(root in the TAO image, nobody on an NFS export with root_squash) must be able to "
        f"write there: chmod a+rwx {folder}, or export the share with no_root_squash")


def test_an_unwritable_claims_folder_is_one_line_in_writing_steps_and_exit_handler(workspace,
                                                                                   values):
    assert preflight(workspace, values, "run-a", "uid-a").returncode == 0
    folder = workspace / claims.FOLDER
    with immutable(folder):
        step = report_step(workspace, "run-a", "uid-a", "tao-experiments/output")
        handler = release(workspace, "--run", "run-a", "--run-uid", "uid-a")
    assert step.returncode == 1 and step.stderr == ""
    assert step.stdout == (
        f"tao_step report: ERROR: cannot write the claim file {folder}/uid-a.json (Operation "
        f"not permitted): every run records its claim in {folder}, so the steps (root in the "
        "TAO image, nobody on an NFS export with root_squash) must be able to write there: "
        f"chmod a+rwx {folder}, or export the share with no_root_squash\n")
    assert handler.returncode == 1 and handler.stderr == ""
    assert handler.stdout.startswith(f"release: cannot remove the claim file {folder}/uid-a.json "
                                     "(Operation not permitted): ")
    assert len(handler.stdout.splitlines()) == 1


def damage(folder, kind):
    """A file named like a claim that is not one; returns what preflight says about it."""
    path = folder / "uid-x.json"
    if kind == "cut short":
        path.write_text('{"workflow": "run-x", "uid": "uid-x", "paths": ["tao-exp')
        return "not complete JSON: Unterminated string starting at: line 1 column 49 (char 48)"
    if kind == "a folder":
        path.mkdir()
        return "a folder, not a file"
    if kind == "a FIFO":
        os.mkfifo(path)  # opening it to read would wait for a writer, holding the lock
        return "a FIFO, not a file"
    if kind == "binary":
        path.write_bytes(b"\xff\xfe{}")
        return "not UTF-8 text"
    path.write_text('["tao-experiments/output"]')
    return "JSON, but not a claim: it needs workflow, uid and started texts and a list of paths"


@pytest.mark.parametrize("kind", ["cut short", "a folder", "a FIFO", "binary", "not a claim"])
def test_a_damaged_claim_file_blocks_no_run_and_no_exit_handler(workspace, values, kind):
    folder = workspace / claims.FOLDER
    folder.mkdir()
    reason = damage(folder, kind)
    removal = f"rm -r {folder}/uid-x.json" if kind == "a folder" else f"rm {folder}/uid-x.json"
    warning = (f"warning: claim file {folder}/uid-x.json is damaged ({reason}), so it blocks "
               "no run, and the run of uid uid-x that wrote it is not protected until its "
               f"next step re-takes its claim; remove it: {removal}")
    result = preflight(workspace, values, "run-a", "uid-a")
    assert result.returncode == 0, result.stdout
    assert warning in result.stdout.splitlines()
    assert result.stdout.rstrip().endswith("1 warning; outputs claimed for run run-a")
    # Another run is still refused by the readable claim, and the exit handler releases.
    assert preflight(workspace, values, "run-b", "uid-b").returncode == 1
    handler = release(workspace, "--run", "run-a", "--run-uid", "uid-a")
    assert handler.returncode == 0
    assert handler.stdout.splitlines()[0] == "release: " + warning
    assert not (folder / "uid-a.json").exists()


def test_a_runs_own_damaged_claim_file_is_replaced_by_its_next_step_and_removed_on_exit(
        workspace, values):
    folder = workspace / claims.FOLDER
    folder.mkdir()
    (folder / "uid-a.json").write_text("{")
    step = report_step(workspace, "run-a", "uid-a", "tao-experiments/output")
    assert step.returncode == 0 and "WARNING" not in step.stdout
    assert json.loads((folder / "uid-a.json").read_text())["paths"] == ["tao-experiments/output"]

    (folder / "uid-a.json").write_text("{")
    handler = release(workspace, "--run", "run-a", "--run-uid", "uid-a")
    assert handler.returncode == 0
    assert handler.stdout == (f"release: removed this run's damaged claim file "
                              f"{folder}/uid-a.json (not complete JSON: Expecting property "
                              "name enclosed in double quotes: line 1 column 2 (char 1))\n")
    assert not (folder / "uid-a.json").exists()


def test_a_claim_file_root_cannot_read_blocks_no_run(tmp_path, monkeypatch):
    # On an NFS export with root_squash, a claim file of another user's mode 0600 (tests
    # run as root, whom modes do not stop: the refusal is simulated in-process).
    folder = tmp_path / claims.FOLDER
    folder.mkdir()
    (folder / "uid-x.json").write_text("{}")
    real_open = os.open

    def refusing_open(path, flags, *mode):
        if str(path).endswith("uid-x.json"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *mode)

    monkeypatch.setattr(os, "open", refusing_open)
    conflicts, damaged = claims.take(str(tmp_path), "run-a", "uid-a", ["output"])
    assert conflicts == []
    assert [(d.file, d.reason) for d in damaged] == [
        (str(folder / "uid-x.json"), "unreadable: Permission denied")]


FOLDER_MISTAKES = {
    "a file": (lambda folder: folder.write_text("x"),
               "the claims folder {f} is a file, not a folder: runs record their claims in a "
               "folder of that name, so move it away (mv {f} {f}.moved) and start the run "
               "again"),
    "a dangling link": (lambda folder: folder.symlink_to(folder.parent / "gone"),
                        "the claims folder {f} is a symbolic link to {g}, which does not "
                        "exist: create that folder, or remove the link (rm {f}) and start the "
                        "run again"),
}


@pytest.mark.parametrize("case", FOLDER_MISTAKES)
def test_a_claims_folder_that_is_not_one_is_named_with_the_fix(workspace, values, case):
    make, expected = FOLDER_MISTAKES[case]
    folder = workspace / claims.FOLDER
    make(folder)
    message = expected.format(f=folder, g=workspace / "gone")
    result = preflight(workspace, values, "run-a", "uid-a")
    assert result.returncode == 1
    assert result.stdout.splitlines()[:-1] == [f"--workspace {workspace}: {message}"]
    # The exit handler of that refused run has nothing to release; by hand, it is a mistake.
    assert release(workspace, "--run", "run-a", "--run-uid", "uid-a").returncode == 0
    result = release(workspace, "--run", "run-a")
    assert result.returncode == 1
    assert result.stdout == (f"release: {workspace} holds no claims ({message}); is it the "
                             "workspace the refusal names?\n")


def test_a_folder_in_place_of_the_lock_file_is_named_with_the_fix(workspace, values):
    lock = workspace / claims.FOLDER / claims.LOCK
    lock.mkdir(parents=True)
    result = preflight(workspace, values, "run-a", "uid-a")
    assert result.returncode == 1 and result.stderr == ""
    assert result.stdout.splitlines()[:-1] == [
        f"--workspace {workspace}: {lock} is a folder, not the claims' lock file: remove it "
        f"(rm -r {lock}) and start the run again"]
