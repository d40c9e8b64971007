"""``python -m tao_step report`` end to end, with a fake TAO command (tests/data/fake_tao.py)."""

import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO
from report_helpers import (
    FAKE_TAO,
    PYTHON,
    ROOT,
    RUN_UID,
    SAMPLES,
    check_outputs,
    csv_rows,
    evaluate_text,
    fake_tao,
    kept_result,
    metric_values,
    outputs_of,
    run_env,
    run_report,
)

from tao_step import console, evaluate_report, guard, parse, profiles

EVALUATE_2 = SAMPLES / "evaluate_2class.txt"
EVALUATE_24 = SAMPLES / "evaluate_24class.txt"


def markdown_of(ui: dict) -> str:
    return "\n".join(o["source"] for o in outputs_of(ui, "markdown"))


def write_evaluate(tmp_path, names, matrix) -> str:
    path = tmp_path / "evaluate.txt"
    path.write_text(evaluate_text(names, matrix), encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------- running TAO

def test_failing_command_passes_its_status_and_publishes_nothing(tmp_path):
    out = tmp_path / "out"
    gate = tmp_path / "gate"
    result = run_report("evaluate", "--out-dir", out, "--label", "baseline",
                        "--min-accuracy", "0", "--gate-file", gate,
                        command=fake_tao("print", EVALUATE_2, "exit", 3))
    assert result.returncode == 3
    assert "Confusion Matrix" in result.stdout  # the log was still streamed
    assert "exited with status 3; nothing is published" in result.stdout
    assert not (out / "mlpipeline-metrics.json").exists()
    assert not list(out.iterdir())
    assert gate.read_text() == "fail"


def test_stale_outputs_of_an_earlier_run_are_removed(tmp_path):
    out = tmp_path / "out"
    ok = run_report("evaluate", "--out-dir", out, "--label", "baseline",
                    command=fake_tao("print", EVALUATE_2))
    assert ok.returncode == 0 and (out / "mlpipeline-metrics.json").exists()
    failed = run_report("evaluate", "--out-dir", out, "--label", "baseline",
                        command=fake_tao("exit", 1))
    assert failed.returncode == 1
    assert not list(out.iterdir())


def test_command_not_found(tmp_path):
    result = run_report("prune", "--out-dir", tmp_path, "--input-model", "a", "--output-model",
                        "b", command=["classification-does-not-exist", "prune", "-k", "key1"])
    assert result.returncode == 127
    messages = [line for line in result.stdout.splitlines() if "ERROR" in line]
    assert messages == ["tao_step report: ERROR: command not found: "
                        "classification-does-not-exist"]


def test_the_key_after_k_is_never_printed(tmp_path):
    key = "nvidia_tlt_secret"
    result = run_report("prune", "--out-dir", tmp_path / "out", "--input-model", "in",
                        "--output-model", "out",
                        command=fake_tao("say", f"loaded key {key}", "err", f"--key={key}",
                                         "exit", 1, "-k", key, "--key", key, f"--key={key}"))
    assert result.returncode == 1
    assert key not in result.stdout + result.stderr
    running = next(line for line in result.stdout.splitlines() if "running:" in line)
    assert running.endswith("-k *** --key *** --key=***")
    assert "loaded key ***" in result.stdout


def test_the_key_is_masked_in_the_kept_line_too(tmp_path):
    key = "nvidia_tlt_secret"
    earlier = tmp_path / f"model-{key}.etlt"
    earlier.write_text("earlier run")
    result = run_report("run", "--out-dir", tmp_path / "out", "--keep-previous", earlier,
                        command=fake_tao("exit", 0, "-k", key))
    assert result.returncode == 0
    assert key not in result.stdout + result.stderr
    assert "kept the earlier run's" in result.stdout


def test_a_secret_key_in_any_other_argument_is_refused_before_anything_runs(tmp_path,
                                                                            monkeypatch):
    key = "k3y-from-the-secret"
    monkeypatch.setenv("TAO_API_KEY", key)
    earlier = tmp_path / f"model-{key}.etlt"
    earlier.write_text("earlier run")
    result = run_report("run", "--out-dir", tmp_path / "out", "--keep-previous", earlier,
                        command=fake_tao("say", "ran", "exit", 0, "-k", key))
    assert result.returncode == 2
    assert key not in result.stdout + result.stderr
    assert "contains the key" in result.stdout and "ran" not in result.stdout
    assert earlier.read_text() == "earlier run"  # nothing moved, no file named after it
    # The key as -k's value alone is what the Secret is for.
    ok = run_report("run", "--out-dir", tmp_path / "out", command=fake_tao("exit", 0, "-k", key))
    assert ok.returncode == 0 and key not in ok.stdout and "-k ***" in ok.stdout


def test_redaction_forms():
    assert console.redact(["c", "-k", "K1", "-kK2", "--key=K3", "--key", "K4", "-e", "s"]) == [
        "c", "-k", "***", "-k***", "--key=***", "--key", "***", "-e", "s"]
    assert console.secrets_in(["c", "-k", "K1xx", "-kK2xx", "--key=K3xx", "-k", "ab"]) == [
        "K1xx", "K2xx", "K3xx"]


def test_output_is_streamed_live(tmp_path):
    """The first line must reach our stdout while the command is still running: the fake
    command does not print its second line until the test has seen the first."""
    go = tmp_path / "go"
    (tmp_path / "1.txt").write_text("first line\n")
    (tmp_path / "2.txt").write_text("second line\n")
    argv = [PYTHON, "-m", "tao_step", "report", "convert", "--out-dir", str(tmp_path / "out"),
            "--engine", str(tmp_path / "e.engine"), "--precision", "fp16", "--",
            *fake_tao("print", tmp_path / "1.txt", "wait", go, "bytes", 10,
                      tmp_path / "e.engine", "print", tmp_path / "2.txt")]
    process = subprocess.Popen(argv, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = b""
    try:
        deadline = time.time() + 15
        while b"first line" not in seen and time.time() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 0.5)
            if ready:
                seen += os.read(process.stdout.fileno(), 4096)
        assert b"first line" in seen, "nothing streamed while the command was running"
        assert b"second line" not in seen
        go.touch()
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert b"second line" in seen + rest


def test_the_kept_copy_equals_what_was_printed():
    sink = io.BytesIO()
    command = [sys.executable, str(FAKE_TAO), "say", "to stdout", "err", "to stderr",
               "rawhex", "c3a9ff0a", "print", str(EVALUATE_2), "rawhex", "6e6f206e65776c696e65"]
    status, copy = guard.run_streaming(command, sink)
    assert status == 0
    printed = sink.getvalue()
    assert copy == printed.decode("utf-8", "replace")
    assert printed.startswith(b"to stdout\nto stderr\n\xc3\xa9\xff\n")
    assert printed.endswith(b"no newline")
    assert (EVALUATE_2.read_bytes()) in printed


def test_sigterm_is_passed_to_the_command(tmp_path):
    argv = [PYTHON, "-m", "tao_step", "report", "convert", "--out-dir", str(tmp_path),
            "--engine", "e", "--precision", "fp32", "--",
            *fake_tao("say", "started", "wait", tmp_path / "never")]
    process = subprocess.Popen(argv, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert b"started" in process.stdout.readline() + process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal.SIGTERM
    assert b"exited with status 143" in output


@pytest.mark.parametrize("options, command, message", [
    (["evaluate", "--label", "baseline"], None, "needs the TAO command after --"),
    (["evaluate", "--label", "baseline", "--gate-file", "g"], ["true"], "go together"),
])
def test_usage_errors(tmp_path, options, command, message):
    result = run_report(*options, "--out-dir", tmp_path, command=command)
    assert result.returncode == 2
    assert message in result.stdout


def test_bad_option_values_are_usage_errors(tmp_path):
    result = run_report("evaluate", "--out-dir", tmp_path, "--label", "final", command=["true"])
    assert result.returncode == 2 and "invalid choice" in result.stderr
    result = run_report("inference", "--out-dir", tmp_path, "--image-dir", tmp_path,
                        "--max-rows", "0", command=["true"])
    assert result.returncode == 2


# --------------------------------------------------------------------------- evaluate

def test_evaluate_two_classes(tmp_path):
    out = tmp_path / "out"
    result = run_report("evaluate", "--out-dir", out, "--label", "baseline", "--top-k", 3,
                        command=fake_tao("print", EVALUATE_2))
    assert result.returncode == 0, result.stdout
    assert "tao_step report: WARNING" not in result.stdout
    metrics, ui = check_outputs(out)
    # [[70 12] [3 233]]: precision = column share, recall = row share
    precision, recall = (70 / 73, 233 / 245), (70 / 82, 233 / 236)
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall, strict=True)]
    # The run's only metrics are the two top-1 accuracies (docs/tao-step-report.md).
    assert metrics["metrics"] == [{"name": "accuracy-top1-baseline", "numberValue": 303 / 318,
                                   "format": "PERCENTAGE"}]
    text = markdown_of(ui)
    for measure, value in (("Macro precision", sum(precision) / 2),
                           ("Macro recall", sum(recall) / 2), ("Macro F1", sum(f1) / 2)):
        assert f"| {measure} | {value:.4f} |" in text
    assert "| Loss | 0.3028 |" in text and "| Top-3 accuracy (TAO's" in text
    assert "| **1** bicycle | **70** | 12 |" in text  # the matrix with names, as markdown
    (matrix,) = outputs_of(ui, "confusion_matrix")
    assert matrix["labels"] == ["bicycle", "electric_bicycle"]
    assert matrix["source"].splitlines() == [
        "bicycle,bicycle,70", "bicycle,electric_bicycle,12",
        "electric_bicycle,bicycle,3", "electric_bicycle,electric_bicycle,233"]
    (table,) = outputs_of(ui, "table")
    assert table["header"] == ["class (baseline)", "precision", "recall", "f1-score", "support"]
    assert table["source"].splitlines()[0] == "bicycle,0.9589,0.8537,0.9032,82"
    assert "**95.28%** (303 of 318 images; from the confusion matrix)" in text
    assert "Top-3 accuracy" in text and "| Images | 318 |" in text and "| Classes | 2 |" in text


def test_evaluate_many_classes(tmp_path):
    out = tmp_path / "out"
    truth = json.loads((SAMPLES / "evaluate_24class.expected.json").read_text())
    result = run_report("evaluate", "--out-dir", out, "--label", "retrained",
                        command=fake_tao("print", EVALUATE_24))
    assert result.returncode == 0
    metrics, ui = check_outputs(out)
    matrix = truth["matrix"]
    assert metric_values(metrics) == {"accuracy-top1-retrained": sum(
        matrix[i][i] for i in range(24)) / sum(map(sum, matrix))}
    assert "| Top-k accuracy (TAO's" in markdown_of(ui)  # k not given: not guessed
    (viewer,) = outputs_of(ui, "confusion_matrix")
    assert viewer["labels"] == truth["class_names"]
    assert len(viewer["source"].strip().splitlines()) == 24 ** 2 + 0  # no quoted newlines
    assert '"helicopter, light",airbus_a320,' in viewer["source"]
    pairs, table = outputs_of(ui, "table")
    assert len(table["source"].strip().splitlines()) == 24
    # 24 classes: no markdown matrix but the most confused pairs, ranked, zero-padded
    ranked = csv_rows(pairs["source"])
    assert [r[0] for r in ranked] == [f"{n:02d}" for n in range(1, len(ranked) + 1)]
    counts = [int(r[3]) for r in ranked]
    assert counts == sorted(counts, reverse=True) and 0 < len(ranked) <= 30
    off = sorted((matrix[i][j] for i in range(24) for j in range(24) if i != j), reverse=True)
    assert counts == off[:len(counts)]
    assert "| Top-k accuracy (TAO's 'Evaluation Top K accuracy') | 98.74% |" in markdown_of(ui)


def test_evaluate_truncated_output_publishes_no_wrong_number(tmp_path):
    out = tmp_path / "out"
    result = run_report("evaluate", "--out-dir", out, "--label", "baseline",
                        command=fake_tao("print", SAMPLES / "evaluate_truncated.txt"))
    assert result.returncode == 0
    assert "WARNING: the confusion matrix is cut off" in result.stdout
    metrics, ui = check_outputs(out)
    assert metrics is None
    assert not outputs_of(ui, "confusion_matrix") and not outputs_of(ui, "table")
    text = markdown_of(ui)
    assert "| Top-1 accuracy | unknown |" in text and "cut off" in text


def test_evaluate_class_names_the_ui_cannot_label(tmp_path):
    text = "Class name = [' cat', 'cat']\n" + evaluate_text(["a", "b"], [[3, 1], [1, 3]])
    path = tmp_path / "evaluate.txt"
    path.write_text(text[:text.index("Classification Report")])
    result = run_report("evaluate", "--out-dir", tmp_path / "out", "--label", "baseline",
                        command=fake_tao("print", path))
    assert result.returncode == 0
    assert "confusion matrix viewer not used" in result.stdout
    metrics, ui = check_outputs(tmp_path / "out")
    assert metric_values(metrics)["accuracy-top1-baseline"] == 0.75
    assert not outputs_of(ui, "confusion_matrix")


def test_evaluate_empty_output(tmp_path):
    out = tmp_path / "out"
    result = run_report("evaluate", "--out-dir", out, "--label", "baseline",
                        command=fake_tao())
    assert result.returncode == 0
    metrics, ui = check_outputs(out)
    assert metrics is None and not (out / "mlpipeline-metrics.json").exists()
    assert "Could not be read" in markdown_of(ui)


# The 4x4 matrix below has top-1 accuracy 12/16 = 0.75 exactly.
GATE_NAMES = ["cat", "dog", "fox", "owl"]
GATE_MATRIX = [[3, 1, 0, 0], [0, 3, 1, 0], [0, 0, 3, 1], [1, 0, 0, 3]]


@pytest.mark.parametrize("minimum, verdict", [("0.7", "pass"), ("0.75", "pass"),
                                              (" 0.75 ", "pass"), ("0.76", "fail"),
                                              ("1", "fail"), ("0", "pass")])
def test_quality_gate(tmp_path, minimum, verdict):
    out, gate = tmp_path / "out", tmp_path / "gate" / "result"
    result = run_report("evaluate", "--out-dir", out, "--label", "retrained",
                        "--min-accuracy", minimum, "--gate-file", gate,
                        command=fake_tao("print", write_evaluate(tmp_path, GATE_NAMES,
                                                                 GATE_MATRIX)))
    assert result.returncode == 0
    assert gate.read_text() == verdict
    metrics, ui = check_outputs(out)
    assert metric_values(metrics) == {"accuracy-top1-retrained": 0.75}
    text = markdown_of(ui)
    if float(minimum) == 0:
        assert "Quality gate: off (min_accuracy 0)" in text
    elif verdict == "pass":
        assert "Quality gate: PASSED — retrained top-1 accuracy 75.0% meets" in text
    else:
        assert "Quality gate: FAILED — retrained top-1 accuracy 75.0% is below min_accuracy" in text
        assert "will not run" in text


def test_gate_wording_never_shows_unequal_values_as_equal(tmp_path):
    names, matrix = ["a", "b"], [[8995, 1005], [0, 0]]  # 0.8995
    gate = tmp_path / "gate"
    result = run_report("evaluate", "--out-dir", tmp_path / "out", "--label", "retrained",
                        "--min-accuracy", "0.9", "--gate-file", gate,
                        command=fake_tao("print", write_evaluate(tmp_path, names, matrix)))
    assert gate.read_text() == "fail", result.stdout
    _, ui = check_outputs(tmp_path / "out")
    assert "accuracy 89.95% is below min_accuracy 90.00%" in markdown_of(ui)


@pytest.mark.parametrize("minimum", ["abc", "1.5", "-0.1", "nan", "90%", "", "inf"])
def test_invalid_min_accuracy_stops_before_running_tao(tmp_path, minimum):
    marker = tmp_path / "tao-ran"
    result = run_report("evaluate", "--out-dir", tmp_path / "out", "--label", "baseline",
                        "--min-accuracy", minimum, "--gate-file", tmp_path / "gate",
                        command=fake_tao("bytes", 1, marker))
    assert result.returncode == 2
    assert "min_accuracy" in result.stdout
    assert not marker.exists()


def test_gate_without_top1_fails_the_step_unless_min_accuracy_is_zero(tmp_path):
    truncated = SAMPLES / "evaluate_truncated.txt"
    gate = tmp_path / "gate"
    strict = run_report("evaluate", "--out-dir", tmp_path / "a", "--label", "retrained",
                        "--min-accuracy", "0.5", "--gate-file", gate,
                        command=fake_tao("print", truncated))
    assert strict.returncode == 1
    assert "the quality gate needs the retrained top-1 accuracy" in strict.stdout
    assert gate.read_text() == "fail"
    _, ui = check_outputs(tmp_path / "a")
    assert "Quality gate: UNDECIDED" in markdown_of(ui)

    lenient = run_report("evaluate", "--out-dir", tmp_path / "b", "--label", "retrained",
                         "--min-accuracy", "0", "--gate-file", gate,
                         command=fake_tao("print", truncated))
    assert lenient.returncode == 0
    assert gate.read_text() == "pass"
    assert "WARNING: top-1 accuracy unknown; min_accuracy is 0" in lenient.stdout


# --------------------------------------------------------------------------- train

def train(tmp_path, label, *ops):
    out = tmp_path / "out"
    result = run_report("train", "--out-dir", out, "--results-dir", tmp_path / "results",
                        "--label", label, command=fake_tao(*ops))
    return result, out


def test_train_with_training_csv(tmp_path):
    result, out = train(tmp_path, "baseline",
                        "copy", SAMPLES / "train_baseline.training.csv",
                        tmp_path / "results" / "training.csv",
                        "print", SAMPLES / "train_baseline.log")
    assert result.returncode == 0
    metrics, ui = check_outputs(out)
    assert metrics is None  # figures only in the markdown: the run list keeps the top-1s
    assert "| Final validation accuracy | 98.80% (from TAO's 'Total Val accuracy') |" in (
        markdown_of(ui))
    assert "| Final validation loss | 0.2701 (from TAO's 'Total Val Loss') |" in markdown_of(ui)
    (page,) = outputs_of(ui, "web-app")
    assert "<svg" in page["source"] and "from training.csv" in page["source"]
    assert "| Epochs | 12 (curve from training.csv) |" in markdown_of(ui)


def test_train_falls_back_to_the_log(tmp_path):
    result, out = train(tmp_path, "retrained", "print", SAMPLES / "train_baseline.log")
    assert result.returncode == 0
    _, ui = check_outputs(out)
    assert len(outputs_of(ui, "web-app")) == 1
    assert "The curve comes from the log because there is no" in markdown_of(ui)


def test_train_without_curve_or_totals(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "training.csv").write_text("epoch,lr\n0,0.1\n")
    result, out = train(tmp_path, "baseline", "say", "Training finished successfully.")
    assert result.returncode == 0
    assert "WARNING: training curve unavailable" in result.stdout
    metrics, ui = check_outputs(out)
    assert metrics is None and not outputs_of(ui, "web-app")
    assert "Training curve unavailable" in markdown_of(ui)


def test_train_final_values_from_the_csv_when_the_log_has_no_totals(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "training.csv").write_text(
        "epoch,val_loss,val_acc\n0,0.9,0.5\n1,0.7,0.625\n")
    result, out = train(tmp_path, "baseline", "say", "done")
    metrics, ui = check_outputs(out)
    assert metrics is None
    assert "| Final validation accuracy | 62.50% (from the last epoch in training.csv) |" in (
        markdown_of(ui))
    assert "| Final validation loss | 0.7000 (from the last epoch in training.csv) |" in (
        markdown_of(ui))


# --------------------------------------------------------------------------- prune

def prune(tmp_path, *ops, env=None):
    """prune as the pipeline runs it (its output moved aside first)."""
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    (models / "in.tlt").write_bytes(b"\0" * 4000)
    out = tmp_path / "out"
    result = run_report("prune", "--out-dir", out, "--input-model", models / "in.tlt",
                        "--output-model", models / "out.tlt", "--keep-previous",
                        models / "out.tlt", command=fake_tao(*ops), env=env)
    return result, out, models


def test_prune(tmp_path):
    result, out, models = prune(tmp_path, "print", SAMPLES / "prune.log",
                                "bytes", 1000, tmp_path / "models" / "out.tlt")
    assert result.returncode == 0
    metrics, ui = check_outputs(out)
    assert metrics is None
    assert "| Pruning ratio (pruned / original model) | 0.6354 |" in markdown_of(ui)
    assert "| Size reduction | 75.0% |" in markdown_of(ui)


def test_prune_without_ratio_line(tmp_path):
    result, out, _ = prune(tmp_path, "bytes", 1000, tmp_path / "models" / "out.tlt")
    assert result.returncode == 0
    assert "WARNING: no 'Pruning ratio" in result.stdout
    metrics, ui = check_outputs(out)
    assert metrics is None and "| Pruning ratio (pruned / original model) | unknown |" in (
        markdown_of(ui))


def test_prune_that_writes_no_model_fails(tmp_path):
    result, out, _ = prune(tmp_path, "print", SAMPLES / "prune.log")
    assert result.returncode == 1
    assert "prune reported success but" in result.stdout
    _, ui = check_outputs(out)
    assert "The pruned model was not written" in markdown_of(ui)


# --------------------------------------------------------------------------- inference

def test_inference_truncated_table_and_counts(tmp_path):
    images = tmp_path / "images"
    out = tmp_path / "out"
    result = run_report("inference", "--out-dir", out, "--image-dir", images,
                        command=fake_tao("subst", "@IMAGE_DIR@", images,
                                         "copy", SAMPLES / "inference_result.csv",
                                         images / "result.csv",
                                         "print", SAMPLES / "inference.log"))
    assert result.returncode == 0
    metrics, ui = check_outputs(out)
    assert metrics is None
    predictions, counts = outputs_of(ui, "table")
    rows = predictions["source"].splitlines()
    assert len(rows) == 50
    assert rows[0] == "bicycle/bicycle_1000.jpg,bicycle,0.8018"  # relative to --image-dir
    count_rows = [r.split(",") for r in counts["source"].splitlines()]
    assert counts["header"][0] == "rank" and [r[0] for r in count_rows] == ["1", "2"]
    assert sum(int(r[2]) for r in count_rows) == 64
    assert int(count_rows[0][2]) >= int(count_rows[1][2])
    text = markdown_of(ui)
    assert "64 images classified into 2 classes" in text
    assert "truncated: it shows the first 50 of 64 rows" in text


def test_inference_small_result_without_confidence(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "result.csv").write_text(f"{images}/a.png,cat\n/elsewhere/b.png,dog\n\n")
    result = run_report("inference", "--out-dir", tmp_path / "out", "--image-dir", images,
                        "--max-rows", 5, command=fake_tao())
    assert result.returncode == 0
    _, ui = check_outputs(tmp_path / "out")
    predictions, _ = outputs_of(ui, "table")
    assert predictions["source"].splitlines() == ["a.png,cat,", "/elsewhere/b.png,dog,"]
    assert "truncated" not in markdown_of(ui)


@pytest.mark.parametrize("written, said", [
    (None, "but wrote no {}"),
    ("", "but {} holds no predictions"),
    ("\n\n", "but {} holds no predictions"),
])
def test_inference_that_classified_nothing_fails_the_step(tmp_path, written, said):
    """TAO exited 0, but this run wrote no result.csv, or an empty one (an earlier run's
    file was moved aside first): nothing was classified."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "result.csv").write_text("a.png,cat,0.9\n")  # an earlier run's
    writes = []
    if written is not None:
        (tmp_path / "written.csv").write_text(written)
        writes = ["copy", tmp_path / "written.csv", images / "result.csv"]
    result = run_report("inference", "--out-dir", tmp_path / "out", "--image-dir", images,
                        "--keep-previous", images / "result.csv", command=fake_tao(*writes))
    assert result.returncode == 1
    assert ("ERROR: inference exited 0 " + said.format(images / "result.csv")
            + ": it classified nothing, so this step fails") in result.stdout
    _, ui = check_outputs(tmp_path / "out")
    assert "it classified nothing" in markdown_of(ui)
    assert len(list(images.glob("result.csv.previous-*"))) == 1


# --------------------------------------------------------------------------- convert

def test_convert(tmp_path):
    engine = tmp_path / "engines" / "model.int8.engine"
    result = run_report("convert", "--out-dir", tmp_path / "out", "--engine", engine,
                        "--precision", "INT8",
                        command=fake_tao("print", SAMPLES / "convert.log",
                                         "bytes", 2_500_000, engine))
    assert result.returncode == 0
    metrics, ui = check_outputs(tmp_path / "out")
    assert metrics is None
    assert "| Precision | INT8 |" in markdown_of(ui) and "2.50 MB" in markdown_of(ui)


def test_convert_that_writes_no_engine_fails(tmp_path):
    result = run_report("convert", "--out-dir", tmp_path / "out", "--engine",
                        tmp_path / "missing.engine", "--precision", "fp16",
                        command=fake_tao("print", SAMPLES / "convert.log"))
    assert result.returncode == 1
    assert "the converter reported success but wrote no engine" in result.stdout
    metrics, ui = check_outputs(tmp_path / "out")
    assert metrics is None and "wrote no engine" in markdown_of(ui)


# --------------------------------------------------------------------------- results

def test_each_step_keeps_what_it_found_for_the_summary(tmp_path):
    """With the run's environment (the pipeline gives it every step), a step keeps its
    result where the summary reads it: the prune ratio exact, the sizes, what it wrote."""
    env = run_env(tmp_path, "prune-model")
    result, out, models = prune(tmp_path, "print", SAMPLES / "prune.log",
                                "bytes", 1000, tmp_path / "models" / "out.tlt", env=env)
    assert result.returncode == 0, result.stdout
    kept = kept_result(tmp_path, "prune-model")
    assert kept["ratio"] == 0.6353601900291853
    assert (kept["kind"], kept["step"], kept["status"]) == ("prune", "prune-model", 0)
    assert (kept["input_size"], kept["output_size"]) == (4000, 1000)
    assert kept["wrote"] == [str(models / "out.tlt")]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", kept["finished"])

    # A failing attempt of the same step removes it: no stale result in the summary.
    again, _, _ = prune(tmp_path, "exit", 1, env=env)
    assert again.returncode == 1
    assert kept_result(tmp_path, "prune-model") is None


def test_every_kind_that_succeeds_exits_0_and_keeps_status_0(tmp_path):
    """What the report exited with is the step's status and what it keeps for the summary
    (tao_step/results.py): 0 for each kind's success, not a missing value."""
    engine = tmp_path / "model.engine"
    runs = (
        ("train-model", ("train", "--results-dir", tmp_path / "results", "--label", "baseline"),
         fake_tao("print", SAMPLES / "train_baseline.log")),
        ("export-engine", ("convert", "--engine", engine, "--precision", "fp16"),
         fake_tao("print", SAMPLES / "convert.log", "bytes", 1000, engine)),
    )
    for step, (kind, *options), command in runs:
        result = run_report(kind, "--out-dir", tmp_path / step, *options, command=command,
                            env=run_env(tmp_path, step))
        assert result.returncode == 0, result.stdout
        assert (kept_result(tmp_path, step)["kind"], kept_result(tmp_path, step)["status"]) == (
            kind, 0)


def test_no_result_is_kept_without_the_step_name(tmp_path):
    env = run_env(tmp_path, "prune-model")
    del env["TAO_RUN_STEP"]  # a step run by hand, or by an older pipeline
    result, _, _ = prune(tmp_path, "print", SAMPLES / "prune.log",
                         "bytes", 1000, tmp_path / "models" / "out.tlt", env=env)
    assert result.returncode == 0
    assert not list(tmp_path.rglob("results"))


def test_a_result_that_cannot_be_kept_is_a_warning_not_a_failure(tmp_path):
    env = run_env(tmp_path, "prune-model")
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / ".tao-run-claims").write_text("a file where the folder goes")
    result, _, _ = prune(tmp_path, "print", SAMPLES / "prune.log",
                         "bytes", 1000, tmp_path / "models" / "out.tlt", env=env)
    assert result.returncode == 0
    assert "WARNING: cannot keep this step's result for the summary" in result.stdout


# --------------------------------------------------------------------------- Python 3.6

def test_tao_step_is_python_3_6_compatible():
    vermin = [os.path.join(os.path.dirname(sys.executable), "vermin"), "--target=3.6-",
              "--no-tips", "--violations", "--eval-annotations", "--no-config-file"]
    result = subprocess.run([*vermin, str(ROOT / "tao_step")], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_vermin_check_catches_3_7_features(tmp_path):
    """The flags above do fail on what the TAO image's Python 3.6 cannot run."""
    vermin = [os.path.join(os.path.dirname(sys.executable), "vermin"), "--target=3.6-",
              "--no-tips", "--violations", "--eval-annotations", "--no-config-file"]
    for code in ("import subprocess\nsubprocess.run(['x'], capture_output=True)\n",
                 "from dataclasses import dataclass\n",
                 "def f(x: list[int]) -> None:\n    pass\n",
                 "if (n := 1):\n    pass\n"):
        (tmp_path / "newer.py").write_text(code)
        result = subprocess.run([*vermin, str(tmp_path / "newer.py")], capture_output=True,
                                text=True, check=False)
        assert result.returncode != 0, code


def _env_seen_by_ngc(tmp_path, env):
    """What NGC_CLI_ORG the downloaded command sees, run through the real CLI."""
    show = [sys.executable, "-c", "import os; print('ORG=' + os.environ.get('NGC_CLI_ORG', '-'))"]
    result = subprocess.run(
        [PYTHON, "-m", "tao_step", "report", "run", "--out-dir", str(tmp_path),
         "--ngc-model", "acme/vision/classifier:v2", "--ngc-dest", str(tmp_path / "models"),
         "--", *show],
        capture_output=True, text=True, timeout=60,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("NGC_CLI_")},
             **env, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith("ORG=")]


def test_a_private_ngc_model_gets_its_org(tmp_path):
    assert _env_seen_by_ngc(tmp_path, {"NGC_CLI_API_KEY": "k"}) == ["ORG=acme"]
    assert _env_seen_by_ngc(tmp_path, {"NGC_CLI_API_KEY": "k", "NGC_CLI_ORG": "mine"}) == [
        "ORG=mine"]
    assert _env_seen_by_ngc(tmp_path, {}) == ["ORG=-"]  # public models: no key, no org


# --------------------------------------------------------------------------- crashes

@pytest.mark.parametrize("kind, options", [
    ("evaluate", ["--label", "retrained", "--min-accuracy", "0.5", "--gate-file", "GATE"]),
    ("train", ["--label", "baseline", "--results-dir", "RESULTS"]),
])
def test_a_traceback_with_exit_status_0_fails_the_step_and_publishes_nothing(tmp_path, kind,
                                                                             options):
    options = [str(tmp_path / o) if o in ("GATE", "RESULTS") else o for o in options]
    out = tmp_path / "out"
    result = run_report(kind, "--out-dir", out, *options, command=fake_tao(
        "print", EVALUATE_2 if kind == "evaluate" else SAMPLES / "train_baseline.log",
        "err", "Traceback (most recent call last):", "err", '  File "x.py", line 1',
        "err", "RuntimeError: CUDA error", "exit", 0))
    assert result.returncode == 1
    assert "exited with status 0 but printed 'Traceback (most recent call last):'" in (
        result.stdout)
    assert not list(out.iterdir())
    if kind == "evaluate":
        assert (tmp_path / "GATE").read_text() == "fail"


def test_tao_execution_status_fail_with_exit_0_fails_the_step(tmp_path):
    result = run_report("prune", "--out-dir", tmp_path / "out", "--input-model", "a",
                        "--output-model", "b",
                        command=fake_tao("print", SAMPLES / "prune.log",
                                         "say", "Execution status: FAIL"))
    assert result.returncode == 1 and "Execution status: FAIL" in result.stdout
    assert not (tmp_path / "out" / "mlpipeline-ui-metadata.json").exists()


def test_a_traceback_python_ignored_at_exit_is_not_a_failure(tmp_path):
    result = run_report("evaluate", "--out-dir", tmp_path / "out", "--label", "baseline",
                        command=fake_tao("print", EVALUATE_2,
                                         "err", "Exception ignored in: <function Pool.__del__>",
                                         "err", "Traceback (most recent call last):",
                                         "err", "TypeError: 'NoneType' object is not callable"))
    assert result.returncode == 0, result.stdout
    metrics, _ = check_outputs(tmp_path / "out")
    assert metric_values(metrics) == {"accuracy-top1-baseline": 303 / 318}


# --------------------------------------------------------------------------- caps

def test_a_thousand_classes_publish_a_bounded_readable_report(tmp_path):
    """No viewer matrix of a million cells: the figures, the 30 most confused pairs and the
    per-class table, all well under a megabyte."""
    k = 1000
    names = [f"class_{i:04d}" for i in range(k)]
    matrix = [[0] * k for _ in range(k)]
    for i in range(k):
        matrix[i][i] = 20
        matrix[i][(i * 7 + 1) % k] = 1 + i % 5
    out = tmp_path / "out"
    result = run_report("evaluate", "--out-dir", out, "--label", "baseline",
                        command=fake_tao("print", write_evaluate(tmp_path, names, matrix)))
    assert result.returncode == 0, result.stdout[-2000:]
    metrics, ui = check_outputs(out)
    assert metric_values(metrics) == {"accuracy-top1-baseline": 20 * k / sum(map(sum, matrix))}
    assert [o["type"] for o in ui["outputs"]] == ["markdown", "table", "table"]
    pairs, per_class = outputs_of(ui, "table")
    assert len(csv_rows(pairs["source"])) == 30 and len(csv_rows(per_class["source"])) == k
    assert csv_rows(pairs["source"])[0][:4] == ["01", "class_0004", "class_0029", "5"]
    assert (out / "mlpipeline-ui-metadata.json").stat().st_size < 200_000


@pytest.mark.parametrize("k, types", [
    (10, ["markdown", "markdown", "confusion_matrix", "table"]),
    (11, ["markdown", "table", "confusion_matrix", "table"]),
    (26, ["markdown", "table", "confusion_matrix", "table"]),
    (27, ["markdown", "table", "table"]),
])
def test_what_evaluate_publishes_by_class_count(tmp_path, k, types):
    names = [f"c{i:02d}" for i in range(k)]
    matrix = [[5 if i == j else (1 if j == (i + 1) % k else 0) for j in range(k)]
              for i in range(k)]
    out = tmp_path / "out"
    result = run_report("evaluate", "--out-dir", out, "--label", "baseline",
                        command=fake_tao("print", write_evaluate(tmp_path, names, matrix)))
    assert result.returncode == 0
    _, ui = check_outputs(out)
    assert [o["type"] for o in ui["outputs"]] == types
    if k <= 10:
        table = outputs_of(ui, "markdown")[1]["source"]
        assert f"| **{k:02d}** c{k - 1:02d} | 1 |" in table  # names on the rows


def test_a_perfect_model_publishes_no_empty_pairs_table(tmp_path):
    names = [f"c{i:02d}" for i in range(12)]
    matrix = [[4 if i == j else 0 for j in range(12)] for i in range(12)]
    out = tmp_path / "out"
    result = run_report("evaluate", "--out-dir", out, "--label", "baseline",
                        command=fake_tao("print", write_evaluate(tmp_path, names, matrix)))
    assert result.returncode == 0
    _, ui = check_outputs(out)
    assert [o["type"] for o in ui["outputs"]] == ["markdown", "confusion_matrix", "table"]
    assert "no class was confused" in markdown_of(ui)


@pytest.mark.parametrize("checkpoints, uncertain", [(["resnet_003.tlt"], False), ([], True)])
def test_train_one_based_csv_is_told_by_the_checkpoints(tmp_path, checkpoints, uncertain):
    results = tmp_path / "results"
    (results / "weights").mkdir(parents=True)
    for name in checkpoints:
        (results / "weights" / name).write_bytes(b"\0")
    (results / "training.csv").write_text(
        "epoch,loss,val_loss,val_acc\n1,1.0,1.1,0.5\n2,0.8,0.9,0.6\n3,0.7,0.8,0.7\n")
    result, out = train(tmp_path, "baseline", "say", "no Keras epoch lines")
    assert result.returncode == 0
    _, ui = check_outputs(out)
    assert ("could not be determined" in markdown_of(ui)) == uncertain
    assert ("WARNING: epochs as written" in result.stdout) == uncertain
    assert "| Epochs | 3 (curve from training.csv) |" in markdown_of(ui)


# --------------------------------------------------------------------------- hand-over

def test_train_hands_its_report_to_the_evaluate_step(tmp_path):
    results = tmp_path / "results"
    hand_over = results / "tao_step-training-report.json"
    result = run_report("train", "--out-dir", tmp_path / "t", "--results-dir", results,
                        "--label", "baseline", "--hand-over", hand_over,
                        command=fake_tao("copy", SAMPLES / "train_baseline.training.csv",
                                         results / "training.csv",
                                         "print", SAMPLES / "train_baseline.log"))
    assert result.returncode == 0
    _, train_ui = check_outputs(tmp_path / "t")
    assert json.loads(hand_over.read_text()) == train_ui
    out = tmp_path / "e"
    result = run_report("evaluate", "--out-dir", out, "--label", "baseline",
                        "--training-report", hand_over, command=fake_tao("print", EVALUATE_2))
    assert result.returncode == 0
    _, ui = check_outputs(out)
    assert ui["outputs"][:2] == train_ui["outputs"]
    assert ui["outputs"][2]["source"].startswith("### Evaluation: baseline model")


def test_a_missing_training_report_is_said_not_hidden(tmp_path):
    out = tmp_path / "e"
    result = run_report("evaluate", "--out-dir", out, "--label", "retrained",
                        "--training-report", tmp_path / "none.json",
                        command=fake_tao("print", EVALUATE_2))
    assert result.returncode == 0
    assert "WARNING: the train step wrote no report at" in result.stdout
    _, ui = check_outputs(out)
    assert ui["outputs"][0]["source"].startswith(
        "### Training: retrained model\n\nNot shown: the train step wrote no report at")


def test_a_failed_train_leaves_no_earlier_hand_over(tmp_path):
    hand_over = tmp_path / "results" / "tao_step-training-report.json"
    hand_over.parent.mkdir()
    hand_over.write_text('{"outputs": []}')
    result = run_report("train", "--out-dir", tmp_path / "t", "--results-dir",
                        tmp_path / "results", "--label", "baseline", "--hand-over", hand_over,
                        command=fake_tao("exit", 2))
    assert result.returncode == 2 and not hand_over.exists()


@pytest.mark.parametrize("switch, ran", [
    ("use_amp=true", ["train", "--use_amp", "-e", "s.cfg"]),
    ("use_amp=false", ["train", "-e", "s.cfg"]),
])
def test_a_form_switch_adds_its_flag_after_the_subtask_only_when_true(tmp_path, switch, ran):
    """train_use_amp / retrain_use_amp: TAO's --use_amp takes no value, so the runtime adds
    it after the subtask (where TAO 5's wrapper reads its own options) when the form says
    true."""
    cli = tmp_path / "classification"  # prints the argv it was given
    cli.write_text(f"#!{PYTHON}\nimport sys\nprint(sys.argv[1:])\n")
    cli.chmod(0o755)
    result = run_report("run", "--out-dir", tmp_path / "out", "--switch", switch,
                        command=[str(cli), "train", "-e", "s.cfg"])
    assert result.returncode == 0, result.stdout
    assert repr(ran) in result.stdout


def test_a_switch_that_is_neither_true_nor_false_is_one_line_and_status_2(tmp_path):
    result = run_report("run", "--out-dir", tmp_path / "out", "--switch", "use_amp=yes",
                        command=[PYTHON, "-c", "print('ran')"])
    assert result.returncode == 2
    assert "ran" not in result.stdout.replace("--switch", "")
    assert "--switch 'use_amp=yes': give FLAG=true or FLAG=false" in result.stdout


# ==========================================================================================
# TAO 5.0 (--tao-version 5.0), merged from test_tao5_report.py
# tao_step report on TAO 5's output: its log format between printed results, and a step's
# success judged from the exit status and status.json together.


TAO5_LOG = "2023-07-11 10:00:00,123 [TAO Toolkit] [INFO] root 2102: Evaluation in progress."


def report_run(tmp_path, *options: str, script: str) -> subprocess.CompletedProcess:
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
    result = report_run(tmp_path, "--status-json", str(status), script=appender(
        status, status_line("STARTED", "Starting evaluation."),
        status_line("FAILURE", "Evaluation was interrupted")))
    assert result.returncode == 1
    assert "exited 0 but recorded a failure" in result.stdout  # the step's log
    assert "Evaluation was interrupted" in result.stdout


def test_only_lines_this_run_appended_count(tmp_path):
    status = tmp_path / "status.json"
    status.write_text(status_line("FAILURE", "an earlier run failed") + "\n")
    result = report_run(tmp_path, "--status-json", str(status), script=appender(
        status, status_line("STARTED", "Starting."), status_line("SUCCESS", "Done.")))
    assert result.returncode == 0, result.stderr


def test_no_status_json_leaves_the_exit_status_to_decide(tmp_path):
    result = report_run(tmp_path, "--status-json", str(tmp_path / "none.json"),
                    script="print('Execution status: PASS')")
    assert result.returncode == 0, result.stderr


def test_a_required_input_that_is_missing_stops_the_step_before_tao_runs(tmp_path):
    marker = tmp_path / "ran"
    result = report_run(tmp_path, "--require", str(tmp_path / "calibration.tensor"),
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


# --------------------------------------------------------------------------- engine (TAO 5)

def deploy_evaluate_text(names, matrix) -> str:
    """What TAO Deploy's evaluate prints (tao_deploy@a285787 classification_tf1/scripts/
    evaluate.py): its headers are log lines, the matrix and report printed after each; no
    loss and no 'Evaluation Top K accuracy' line."""
    stamp = "2023-07-26 10:00:00,000 [TAO Toolkit] [INFO] root"
    text = evaluate_text(names, matrix)
    matrix_and_report = text[text.index("Confusion Matrix\n"):]
    return (f"{stamp} 131: Top 5 scores: 1.0\n"
            + matrix_and_report.replace("Confusion Matrix\n", f"{stamp} 133: Confusion Matrix\n")
            .replace("Classification Report\n", f"{stamp} 136: Classification Report\n")
            + f"{stamp} 148: Finished evaluation.\n")


def keep_retrained_top1(tmp_path, top1) -> None:
    """reevaluate-model's result in this run, as tao_step.results keeps it."""
    folder = tmp_path / "ws" / ".tao-run-claims" / "results" / RUN_UID
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reevaluate-model.json").write_text(json.dumps(
        {"format": 1, "kind": "evaluate", "label": "retrained", "top1": top1,
         "step": "reevaluate-model", "finished": "2026-01-01T00:00:00Z"}), encoding="utf-8")


def run_engine_report(tmp_path, matrix, max_drop):
    printed = tmp_path / "deploy.txt"
    printed.write_text(deploy_evaluate_text(["cat", "dog"], matrix), encoding="utf-8")
    engine = tmp_path / "final_model.trt"
    engine.write_bytes(b"engine")
    result = run_report("engine", "--out-dir", tmp_path / "out", "--engine", engine,
                        "--precision", "INT8", "--max-drop", max_drop,
                        command=fake_tao("print", printed),
                        env=run_env(tmp_path, "evaluate-engine"))
    return result, kept_result(tmp_path, "evaluate-engine")


def test_engine_losing_more_than_allowed_fails_naming_engine_drop_and_fix(tmp_path):
    keep_retrained_top1(tmp_path, 0.9)
    result, kept = run_engine_report(tmp_path, [[45, 5], [10, 40]], "0.01")  # 85 of 100
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = [x for x in result.stdout.splitlines() if "Engine gate" in x]
    assert ("Engine gate: FAILED — engine %s loses 5.00 points of top-1 accuracy (85.00%% "
            "against the retrained model's 90.00%%), more than max_engine_accuracy_drop 1.00 "
            "points; try more calibration batches (calibrate_max_batches, "
            "export_int8_batches) or convert_trt_precision fp16." % (tmp_path / "final_model.trt")
            ) in line
    metrics, ui = check_outputs(tmp_path / "out")
    assert metrics is None  # the run keeps exactly its two top-1 metrics
    card = markdown_of(ui)
    assert "| Engine top-1 accuracy | **85.00%** (85 of 100 images; from the confusion matrix) |"\
        in card
    assert "| Retrained model top-1 accuracy | 90.00% |" in card
    assert "| Difference | -5.00 points |" in card
    assert kept["kind"] == "engine" and kept["verdict"] == "fail" and kept["status"] == 1
    assert kept["top1"] == 0.85 and kept["model_top1"] == 0.9 and kept["problems"] == []


def test_engine_within_the_allowed_drop_passes(tmp_path):
    keep_retrained_top1(tmp_path, 0.9)
    result, kept = run_engine_report(tmp_path, [[45, 5], [10, 40]], "0.05")  # exactly 5 points
    assert result.returncode == 0, result.stdout + result.stderr
    assert kept["verdict"] == "pass" and "within max_engine_accuracy_drop 5.00" in kept[
        "sentence"]


def test_engine_gate_undecided_without_the_models_top1_or_with_a_short_matrix(tmp_path):
    result, kept = run_engine_report(tmp_path, [[45, 5], [10, 40]], "0.01")  # no reevaluate
    assert result.returncode == 1
    assert "UNDECIDED — the retrained model's top-1 accuracy is unknown (reevaluate-model " \
           "kept no result in this run)" in result.stdout
    keep_retrained_top1(tmp_path, 0.9)
    # 1 accepts any engine, whatever could be read
    result, kept = run_engine_report(tmp_path, [[45, 5], [10, 40]], "1")
    assert result.returncode == 0 and kept["verdict"] == "pass"


def test_engine_max_drop_is_checked_before_anything_runs(tmp_path):
    result = run_report("engine", "--out-dir", tmp_path, "--engine", "e.trt", "--precision",
                        "fp16", "--max-drop", "2", command=fake_tao("exit", 0))
    assert result.returncode == 2
    assert "max_engine_accuracy_drop must be a fraction between 0 and 1" in result.stdout
