"""The in-container code gives the same results on the TAO image's Python as here.

The CLI tests (report, preflight, spec-check, the runtime bootstrap, the dry run's steps) run
``tao_step`` as a process on ``in_container.PYTHON``; this module checks what they cannot see
from the outside: the readers in ``tao_step.parse`` return the same values on both
interpreters for every sample TAO output, and that interpreter has what the image has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO
from in_container import PYTHON
from report_helpers import SAMPLES

# Runs on Python 3.6 too: prints every sample's parse result as JSON.
PARSE_ALL = r'''
import json, os, sys
from tao_step import parse

def plain(value):
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if hasattr(value, "__dict__"):
        return {k: plain(v) for k, v in sorted(vars(value).items())}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value

READERS = [
    (".training.csv", parse.parse_training_csv),
    ("inference_result.csv", parse.parse_inference_csv),
    ("prune.log", parse.parse_pruning_ratio),
    ("train_baseline.log", parse.parse_training_log),
]
results = {}
folder = sys.argv[1]
for name in sorted(os.listdir(folder)):
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        text = f.read()
    if name.startswith("evaluate") and name.endswith(".txt"):
        results[name] = plain(parse.parse_evaluate(text))
    for suffix, reader in READERS:
        if name.endswith(suffix):
            results[name] = plain(reader(text))
print(json.dumps(results, sort_keys=True))
'''


def parse_samples(python: str) -> dict:
    result = subprocess.run([python, "-c", PARSE_ALL, str(SAMPLES)], capture_output=True,
                            text=True, timeout=60, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_parse_gives_the_same_results_on_the_container_python():
    here = parse_samples(sys.executable)
    assert len(here) >= 6 and any(name.startswith("evaluate") for name in here)
    assert parse_samples(PYTHON) == here


def test_the_container_python_has_what_tao_step_imports():
    """protobuf is the one package tao_step needs beyond the standard library."""
    probe = "import google.protobuf, tao_step.specs; print(google.protobuf.__version__)"
    result = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, timeout=60,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    if PYTHON != sys.executable:  # the image's release line, as requirements-py36.txt pins
        assert result.stdout.startswith("3.19."), result.stdout


def test_the_session_line_says_plainly_when_36_was_not_used(tmp_path):
    """The line the test session prints first and last (tests/conftest.py)."""
    describe = ("import sys; sys.path.insert(0, 'tests'); import in_container; "
                "print(in_container.describe())")
    lines = {}
    for case, value in (("host", sys.executable), ("missing", str(tmp_path / "python3.6"))):
        result = subprocess.run([sys.executable, "-c", describe], capture_output=True,
                                text=True, timeout=60, cwd=REPO,
                                env={**os.environ, "TAO_STEP_PYTHON": value})
        lines[case] = result.stdout.strip()
    assert "NOT on Python 3.6" in lines["host"] and "set TAO_STEP_PYTHON" in lines["host"]
    assert lines["missing"].endswith("is not an executable interpreter")
