"""Shared helpers: compile through the user's entry point and read the Argo workflow; a
workspace laid out as original-interface.md documents, and Create Run values for it."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from in_container import PYTHON as STEP_PYTHON
from in_container import describe as describe_container_python

from rehearsal.workflow_view import CompiledWorkflow

REPO = Path(__file__).resolve().parents[1]
ENTRY_POINT = REPO / "tao_iva_classification_pipeline.py"
# Which interpreter ran tao_step, found once per session (tests/in_container.py).
CONTAINER_PYTHON = pytest.StashKey[str]()


def pytest_report_header(config) -> str:
    config.stash[CONTAINER_PYTHON] = describe_container_python()
    return config.stash[CONTAINER_PYTHON]


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    # Repeated at the end, where a reader of CI's output looks: 3.6 untested must be seen.
    terminalreporter.write_line(config.stash.get(CONTAINER_PYTHON, describe_container_python()))

# The test being set up or run: run_compiler checks it is marked e2e (the tiers: README).
_RUNNING: dict = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item) -> None:
    _RUNNING["item"] = item


def pytest_runtest_teardown(item) -> None:
    _RUNNING.pop("item", None)


def require_e2e(what: str) -> None:
    """Fail a test that starts ``what`` (a subprocess of the compile script, a whole dry
    run) without the e2e marker: the fast tier (-m "not e2e") must stay fast."""
    item = _RUNNING.get("item")
    if item is not None and item.get_closest_marker("e2e") is None:
        pytest.fail(f"{item.nodeid} {what}: mark it @pytest.mark.e2e, or test in-process "
                    "(compile_workflow, main_error)", pytrace=False)


def run_compiler(*args: str, cwd: Path = REPO, env: dict | None = None
                 ) -> subprocess.CompletedProcess:
    """Run the compile command exactly as a user types it (``env``: added variables), in a
    subprocess: only for tests marked e2e."""
    require_e2e("runs the compile script in a subprocess")
    return subprocess.run(
        [sys.executable, str(ENTRY_POINT), *args], cwd=cwd, capture_output=True, text=True,
        timeout=120, env={**os.environ, **(env or {})},
    )


def main_error(capsys, *args: str) -> str:
    """The one error line of the compile command run in-process on ``args``, which must be
    refused as a usage error (exit status 2) before anything is written or run."""
    import tao_iva_classification_cli as cli

    try:
        code = cli.main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "", captured.out + captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def compile_workflow(tmp_path: Path, *args: str) -> dict:
    """The Argo workflow the compile command writes for ``args``, compiled in-process
    (its ``main``, as the script runs it; tests/test_cli.py runs the script itself)."""
    import tao_iva_classification_cli as cli

    out = tmp_path / "pipeline.yaml"
    assert cli.main(["--output", str(out), *args]) == 0
    return yaml.safe_load(out.read_text())


@pytest.fixture(scope="session")
def default_workflow(tmp_path_factory) -> CompiledWorkflow:
    return CompiledWorkflow(compile_workflow(tmp_path_factory.mktemp("compiled")))


# The compile options of the TAO 5.0 build.
TAO5 = ("--tao-version", "5.0")


@pytest.fixture(scope="session")
def tao5_workflow(tmp_path_factory) -> CompiledWorkflow:
    return CompiledWorkflow(compile_workflow(tmp_path_factory.mktemp("tao5"), *TAO5))


# ------------------------------------------------------------------ shared dry runs
# A full dry run takes seconds: each kind below runs once per test session, whatever the
# number of pytest-xdist workers (a file lock in the directory the workers share, as
# pytest-xdist's documentation shows), and every test that only reads its results shares it.
# Such tests must not change the workspace or the outputs.
class DryRun:
    """A finished ``--dry-run --workspace WS --outputs KFP`` of the compile script."""

    def __init__(self, root: Path, record: dict):
        self.root, self.workspace, self.outputs = root, root / "ws", root / "kfp"
        self.returncode = record["returncode"]
        self.stdout, self.stderr = record["stdout"], record["stderr"]
        self.package_untouched = record["package_untouched"]
        self.python_calls = root / "python3-calls.txt"  # one line per step's python3


# kind: (the options besides --dry-run --workspace --outputs, the environment added, and
# whether the --outputs folder exists, empty, before the run; else the run makes it).
SHARED_DRY_RUNS = {
    "default": ((), {}, False),
    # the quality gate fails: the exports are skipped, the summary fails the run
    "gate-failure": (("--param", "min_accuracy=0.99", "--kfp-release", "1.8"), {}, True),
    # prune-model crashes: what depends on it is omitted, the rest runs on
    "prune-crash": ((), {"FAKE_TAO_FAIL": "prune"}, False),
}


SHARED_DRY_RUN_FIXTURES = {"default_dry_run", "gate_failure_dry_run", "prune_crash_dry_run"}


def pytest_collection_modifyitems(config, items) -> None:
    """A test reading a shared dry run (directly or through another fixture) is e2e."""
    unmarked = [item.nodeid for item in items
                if SHARED_DRY_RUN_FIXTURES & set(getattr(item, "fixturenames", ()))
                and item.get_closest_marker("e2e") is None]
    if unmarked:
        raise pytest.UsageError("these tests read a shared dry run: mark them "
                                "@pytest.mark.e2e: " + ", ".join(unmarked))


def shared_dry_run(tmp_path_factory, kind: str) -> DryRun:
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the folder every worker of this session shares
    root = base / f"shared-dry-run-{kind}"
    with open(base / f"shared-dry-run-{kind}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / "record.json"
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)  # a run that failed to finish
            (root / "tmp").mkdir(parents=True)
            # each step's python3 through a wrapper that records it, on TAO_STEP_PYTHON
            wrapper = root / "python3"
            wrapper.write_text(f'#!/bin/sh\necho ran >> "{root / "python3-calls.txt"}"\n'
                               f'exec "{STEP_PYTHON}" "$@"\n')
            wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
            package = REPO / "tao_iva_classification_pipeline.py.tar.gz"
            before = package.stat().st_mtime_ns if package.exists() else None
            options, env, outputs_exist = SHARED_DRY_RUNS[kind]
            if outputs_exist:
                (root / "kfp").mkdir()
            result = subprocess.run(
                [sys.executable, str(ENTRY_POINT), "--dry-run", "--workspace", str(root / "ws"),
                 "--outputs", str(root / "kfp"), *options],
                cwd=REPO, capture_output=True, text=True, timeout=300,
                env={**os.environ, **env, "TMPDIR": str(root / "tmp"),
                     "TAO_STEP_PYTHON": str(wrapper)})
            after = package.stat().st_mtime_ns if package.exists() else None
            done.write_text(json.dumps({
                "returncode": result.returncode, "stdout": result.stdout,
                "stderr": result.stderr, "package_untouched": before == after}))
        return DryRun(root, json.loads(done.read_text()))


@pytest.fixture(scope="session")
def default_dry_run(tmp_path_factory) -> DryRun:
    """The default pipeline rehearsed into a new workspace, its outputs kept (read only)."""
    return shared_dry_run(tmp_path_factory, "default")


@pytest.fixture(scope="session")
def gate_failure_dry_run(tmp_path_factory) -> DryRun:
    """The same with min_accuracy=0.99: the gate fails; kept as KFP 1.8 shows it (read only)."""
    return shared_dry_run(tmp_path_factory, "gate-failure")


@pytest.fixture(scope="session")
def prune_crash_dry_run(tmp_path_factory) -> DryRun:
    """The default pipeline with FAKE_TAO_FAIL=prune: prune-model crashes (read only; copy
    its workspace to run again)."""
    return shared_dry_run(tmp_path_factory, "prune-crash")


def read_package(path: Path) -> dict:
    with tarfile.open(path) as tar:
        (member,) = tar.getmembers()
        return yaml.safe_load(tar.extractfile(member).read())


ROOT = str(REPO)
MOUNT = "/mnt/workspace"
SPECS = os.path.join(ROOT, "tests", "data", "specs")

# The original sample's interface, an external fact, recorded once from the team's reference
# (shared/reference/original-interface.md, which a clone of this repository does not have).
ORIGINAL_INTERFACE = json.loads(
    (REPO / "tests" / "data" / "original-interface.json").read_text(encoding="utf-8"))


def original_form() -> list:
    """The original sample's Create Run form, ``[(name, default)]`` in its order."""
    return [tuple(row) for row in ORIGINAL_INTERFACE["form"]]


def original_steps() -> tuple:
    """The original sample's steps, by the name the UI shows."""
    return tuple(ORIGINAL_INTERFACE["steps"])


# The eleven steps of the original sample.
ORIGINAL_STEPS = original_steps()
assert len(ORIGINAL_STEPS) == 11, ORIGINAL_STEPS


def _added_defaults() -> dict:
    """The defaults of the parameters this project added after the original's."""
    from tao_step import form

    return {p.name: p.default for p in form.PARAMETERS[len(original_form()):]}


# The original Create Run defaults, plus those of the added fields, with a gate to pass.
ORIGINAL_DEFAULTS = {**dict(original_form()), **_added_defaults(), "min_accuracy": "0.5"}
assert ORIGINAL_DEFAULTS["tao_mount_dir"] == MOUNT
# The same with the checkpoint names the 80-epoch specs really produce.
GOOD_VALUES = dict(
    ORIGINAL_DEFAULTS,
    prune_model_input_file="tao-experiments/output/weights/resnet_080.tlt",
    test_infer_model_input_file="tao-experiments/output-retrain/weights/resnet_080.tlt",
    export_model_input_file="tao-experiments/output-retrain/weights/resnet_080.tlt",
)
# Images per class the generated dataset holds; with batch_size_per_gpu 16 in the fixture
# specs, 4 classes x 40 training images are exactly calibrate_max_batches=10 batches.
COUNTS = {"train": 40, "val": 10, "test": 10}


@pytest.fixture(scope="session")
def dataset_template(tmp_path_factory):
    from rehearsal.fake_tao.make_dataset import make_dataset

    root = str(tmp_path_factory.mktemp("dataset"))
    make_dataset(root, counts=COUNTS)
    return root


@pytest.fixture
def workspace(tmp_path, dataset_template):
    """A fresh workspace: the fixture specs in specs/ and the dataset in tao-experiments/data."""
    root = tmp_path / "ws"
    shutil.copytree(SPECS, str(root / "specs"))
    shutil.copytree(dataset_template, str(root / "tao-experiments" / "data"))
    return root


@pytest.fixture
def values():
    """Create Run values that pass preflight on ``workspace``."""
    return dict(GOOD_VALUES)
