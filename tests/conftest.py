"""Shared helpers: compile through the user's entry point and read the Argo workflow; a
workspace laid out as original-interface.md documents, and Create Run values for it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
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

def run_compiler(*args: str, cwd: Path = REPO, env: dict | None = None
                 ) -> subprocess.CompletedProcess:
    """Run the compile command exactly as a user types it (``env``: added variables)."""
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


def compile_in_process(tmp_path: Path, *args: str) -> dict:
    """The workflow the compile command writes for ``args``, run in this process: for tests
    of what is compiled, where starting the script is not what they test."""
    import tao_iva_classification_cli as cli

    out = tmp_path / "pipeline.yaml"
    assert cli.main(["--output", str(out), *args]) == 0
    return yaml.safe_load(out.read_text())


def compile_workflow(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "pipeline.yaml"
    result = run_compiler("--output", str(out), *args)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(out.read_text())


@pytest.fixture(scope="session")
def default_workflow(tmp_path_factory) -> CompiledWorkflow:
    return CompiledWorkflow(compile_workflow(tmp_path_factory.mktemp("compiled")))


def read_package(path: Path) -> dict:
    with tarfile.open(path) as tar:
        (member,) = tar.getmembers()
        return yaml.safe_load(tar.extractfile(member).read())


ROOT = str(REPO)
MOUNT = "/mnt/workspace"
SPECS = os.path.join(ROOT, "tests", "data", "specs")

# The original sample's interface, an external fact: CI has ../shared beside the clone.
ORIGINAL_INTERFACE = REPO.parent / "shared" / "reference" / "original-interface.md"


def original_form() -> list:
    """The original sample's Create Run form, ``[(name, default)]`` in its order, read from
    the table under "Create Run form parameters" in original-interface.md."""
    text = ORIGINAL_INTERFACE.read_text(encoding="utf-8")
    section = text.split("## Create Run form parameters", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([a-z0-9_]+) \| (.*?) \|$", section, flags=re.M)[1:]  # no header
    assert len(rows) >= 30, f"no form table in {ORIGINAL_INTERFACE}"
    return rows


def original_steps() -> tuple:
    """The original sample's steps, by the name the UI shows, from the table under "Steps"
    in original-interface.md."""
    text = ORIGINAL_INTERFACE.read_text(encoding="utf-8")
    section = text.split("## Steps", 1)[1].split("\n## ", 1)[0]
    return tuple(re.findall(r"^\| ([a-z0-9-]+) \| `", section, flags=re.M))


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
