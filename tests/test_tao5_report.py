"""tao_step report on TAO 5's output: its log format between printed results, and a step's
success judged from the exit status and status.json together."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO
from in_container import PYTHON

from tao_step import evaluate_report, parse, profiles

TAO5_LOG = "2023-07-11 10:00:00,123 [TAO Toolkit] [INFO] root 2102: Evaluation in progress."


def report(tmp_path, *options: str, script: str) -> subprocess.CompletedProcess:
    """``report run`` around a Python one-liner standing in for a TAO 5 subtask."""
    return subprocess.run(
        [PYTHON, "-m", "tao_step", "report", "run", "--out-dir", str(tmp_path / "out"),
         *options, "--", sys.executable, "-c", script],
        capture_output=True, text=True, cwd=REPO, timeout=60)


def status_line(status: str, message: str) -> str:
    return json.dumps({"date": "7/11/2023", "time": "10:0:0", "status": status,
                       "verbosity": "INFO", "message": message})


def appender(path, *lines: str) -> str:
    text = "".join(line + "\n" for line in lines)
    return (f"open({str(path)!r}, 'a').write({text!r}); "
            "print('Execution status: PASS')")


def test_tao5_log_lines_are_skipped_inside_the_confusion_matrix():
    text = "\n".join([
        "Evaluation Loss: 0.5", "Evaluation Top K accuracy: 0.9",
        "Found 4 images belonging to 2 classes.", "Confusion Matrix", "[[2 0]", TAO5_LOG,
        " [1 1]]", "Classification Report",
        "              precision    recall  f1-score   support", "",
        "           a       0.67      1.00      0.80         2",
        "           b       1.00      0.50      0.67         2", "",
        "    accuracy                           0.75         4",
        "   macro avg       0.83      0.75      0.73         4",
        "weighted avg       0.83      0.75      0.73         4", "",
    ])
    assert parse.is_log_line(TAO5_LOG)
    evaluation = parse.parse_evaluate(text)
    assert evaluation.matrix == [[2, 0], [1, 1]]


def test_a_failure_recorded_in_status_json_fails_the_step_although_tao_exited_0(tmp_path):
    status = tmp_path / "results" / "status.json"
    status.parent.mkdir()
    result = report(tmp_path, "--status-json", str(status), script=appender(
        status, status_line("STARTED", "Starting evaluation."),
        status_line("FAILURE", "Evaluation was interrupted")))
    assert result.returncode == 1
    assert "exited 0 but recorded a failure" in result.stdout  # the step's log
    assert "Evaluation was interrupted" in result.stdout


def test_only_lines_this_run_appended_count(tmp_path):
    status = tmp_path / "status.json"
    status.write_text(status_line("FAILURE", "an earlier run failed") + "\n")
    result = report(tmp_path, "--status-json", str(status), script=appender(
        status, status_line("STARTED", "Starting."), status_line("SUCCESS", "Done.")))
    assert result.returncode == 0, result.stderr


def test_no_status_json_leaves_the_exit_status_to_decide(tmp_path):
    result = report(tmp_path, "--status-json", str(tmp_path / "none.json"),
                    script="print('Execution status: PASS')")
    assert result.returncode == 0, result.stderr


def test_a_required_input_that_is_missing_stops_the_step_before_tao_runs(tmp_path):
    marker = tmp_path / "ran"
    result = report(tmp_path, "--require", str(tmp_path / "calibration.tensor"),
                    script=f"open({str(marker)!r}, 'w')")
    assert result.returncode == 1 and not marker.exists()
    assert "calibration.tensor does not exist" in result.stdout  # the step's log
    assert "random data" in result.stdout and "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("release, gated", [("3.0", "export, INT8 export and TensorRT conversion"),
                                            ("5.0", "export and TensorRT conversion")])
def test_the_gate_names_what_the_releases_build_holds_back(release, gated):
    """In the reevaluate step's words (before) and the summary's (after the run)."""
    from tao_step import summary

    profile = profiles.get(release)
    assert evaluate_report.gate_sentence("retrained", 0.8, 0.85, profile).endswith(
        f"is below min_accuracy 85.0%; {gated} will not run.")
    records = [{"kind": "evaluate", "label": "retrained", "top1": 0.8,
                "gate": {"verdict": "fail", "min_accuracy": 0.85}}]
    run = summary.Run("Succeeded", [], None, records, [], [], "/ws", profile)
    assert summary.gate_line(run).endswith(f"is below min_accuracy 85.0%; {gated} did not run.")

