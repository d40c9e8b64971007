"""``python3 -m tao_step summary``, the exit handler: the whole run's report, built from what
the steps kept (``tao_step.results``) and what Argo passes an exit handler, then the release
of the run's claim, whatever happened before.

The steps and the summary run on ``in_container.PYTHON`` (the TAO 3.0 image's Python 3.6
when ``TAO_STEP_PYTHON`` names one), as on the cluster.
"""

import json
import re
import subprocess

import pytest
from report_helpers import (
    PYTHON,
    ROOT,
    RUN_UID,
    SAMPLES,
    check_outputs,
    evaluate_text,
    fake_tao,
    kept_result,
    metric_values,
    outputs_of,
    run_env,
    run_report,
)

from rehearsal.substitution import go_json, go_quote
from tao_step import claims, summary

RUN = "tao-iva-classification-x1y2z"
EVALUATE_2 = SAMPLES / "evaluate_2class.txt"
EVALUATE_24 = SAMPLES / "evaluate_24class.txt"
NO_FAILURES = '"null"'  # strconv.Quote of json.Marshal of no failed node

# A node Argo lists in workflow.failures, from its own test: workflow/controller/
# hooks_test.go@v4.0.5 expects globalParams["workflow.failures"] to contain exactly this
# (JSON, then Go-quoted: operator.go strconv.Quote, v3.3.8 to v4.0.5), finishedAt following.
ARGO_FAILURE = ('[{\\"displayName\\":\\"hook-failures\\",\\"message\\":\\"Pod failed\\",'
                '\\"templateName\\":\\"intentional-fail\\",\\"phase\\":\\"Failed\\",'
                '\\"podName\\":\\"hook-failures\\",\\"finishedAt\\":\\"2024-05-01T10:00:00Z\\"}]')

# The side panel shows each output in a PlotCard of maxDimension 500 (RunDetails.tsx
# VisualizationsTabContent, 1.8.5 to 2.17.0) with 20 px of padding (PlotCard.tsx): text
# must fit 460 px. Upper bounds per character: 8 px for 14 px text (bold included), 7.8 px
# for the 13 px monospace of code; a table cell adds 4 px (1 px padding, 2 px spacing).
TEXT_WIDTH = 460


def run_summary(tmp_path, status, failures, artifacts=()):
    out = tmp_path / "summary"
    argv = [PYTHON, "-m", "tao_step", "summary", "--out-dir", str(out),
            "--workspace", str(tmp_path / "ws"), "--run", RUN, "--run-uid", RUN_UID,
            "--status", status, "--failures", failures]
    for name, path in artifacts:
        argv += ["--artifact", name, str(path)]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    ui = json.loads((out / "mlpipeline-ui-metadata.json").read_text())
    return result, ui, out


def take_claim(tmp_path):
    (tmp_path / "ws").mkdir(exist_ok=True)
    assert claims.take(str(tmp_path / "ws"), RUN, RUN_UID, ["tao-experiments"]) == ([], [])


def claim_released(tmp_path, result) -> bool:
    gone = not (tmp_path / "ws" / claims.FOLDER / f"{RUN_UID}.json").exists()
    return gone and f"release: released the claim of run {RUN} " in result.stdout


def markdown(ui) -> str:
    return "\n".join(o["source"] for o in outputs_of(ui, "markdown"))


def token_width(token: str) -> float:
    code = token.startswith("`") or token.endswith("`")
    bare = re.sub(r"\\(.)", r"\1", token.replace("**", "").replace("`", ""))
    return len(bare) * (7.8 if code else 8.0)


def too_wide(text: str) -> list:
    """Tables and words of ``text`` that do not fit the side panel at 500 px."""
    found = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|"):
            if i and lines[i - 1].startswith("|"):
                continue  # measured with its table's first line
            rest = lines[i:] + [""]
            table = rest[:next(n for n, row in enumerate(rest) if not row.startswith("|"))]
            cells = [[c.strip() for c in row.strip("|").split(" | ")] for row in table]
            columns = zip(*[row for row in cells if not set("".join(row)) <= set("- ")],
                          strict=True)
            width = sum(4 + max(token_width(t) for cell in column for t in cell.split() or [""])
                        for column in columns)
            if width > TEXT_WIDTH:
                found.append((width, table[0]))
        else:
            found += [(token_width(t), t) for t in line.split() if token_width(t) > TEXT_WIDTH]
    return found


def whole_run(tmp_path, *, gate="0.5"):
    """Every publishing step of a run, each keeping its result as in the pipeline."""
    ws = tmp_path / "ws"
    models = ws / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / "resnet_080.tlt").write_bytes(b"\0" * 9000)
    images = ws / "data" / "test"
    steps = [
        ("train-model", "train", ["--results-dir", ws / "r1", "--label", "baseline",
                                  "--keep-previous", ws / "r1"],
         ["copy", SAMPLES / "train_baseline.training.csv", ws / "r1" / "training.csv",
          "print", SAMPLES / "train_baseline.log"]),
        ("evaluate-model", "evaluate", ["--label", "baseline", "--top-k", "3"],
         ["print", EVALUATE_2]),
        ("prune-model", "prune", ["--input-model", models / "resnet_080.tlt", "--output-model",
                                  models / "pruned.tlt", "--keep-previous", models / "pruned.tlt"],
         ["print", SAMPLES / "prune.log", "bytes", 5000, models / "pruned.tlt"]),
        ("retrain-model", "train", ["--results-dir", ws / "r2", "--label", "retrained",
                                    "--keep-previous", ws / "r2"],
         ["print", SAMPLES / "train_baseline.log"]),
        ("reevaluate-model", "evaluate", ["--label", "retrained", "--top-k", "3",
                                          "--min-accuracy", gate, "--gate-file",
                                          tmp_path / "gate"], ["print", EVALUATE_24]),
        ("test-infer", "inference", ["--image-dir", images, "--keep-previous",
                                     images / "result.csv"],
         ["subst", "@IMAGE_DIR@", images, "copy", SAMPLES / "inference_result.csv",
          images / "result.csv"]),
    ]
    if gate == "0.5":
        steps.append(("convert-trt", "convert", ["--engine", models / "m.engine", "--precision",
                                                 "int8", "--keep-previous", models / "m.engine"],
                      ["bytes", 4000, models / "m.engine"]))
    names = []
    for step, kind, options, ops in steps:
        result = run_report(kind, "--out-dir", tmp_path / step, *options,
                            command=fake_tao(*ops), env=run_env(tmp_path, step))
        assert result.returncode == 0, result.stdout
        assert kept_result(tmp_path, step)["kind"] == kind
        if (tmp_path / step / "mlpipeline-ui-metadata.json").exists():
            names += list(metric_values(check_outputs(tmp_path / step)[0]))
    # The run's only metrics are still the evaluate steps' two (tests/test_run_list.py).
    assert names == ["accuracy-top1-baseline", "accuracy-top1-retrained"]
    return ws, models, images


def test_a_whole_run_in_one_panel(tmp_path):
    ws, models, images = whole_run(tmp_path)
    (ws / "export").mkdir()
    (ws / "export" / "old.etlt").write_bytes(b"\0" * 2500)  # an earlier run's export
    take_claim(tmp_path)
    artifacts = [("pruned-model", models / "pruned.tlt"), ("predictions", images / "result.csv"),
                 ("fp32-model", ws / "export" / "old.etlt"),
                 ("tensorrt-engine", models / "m.engine"),
                 ("int8-model", ws / "export" / "final_int8_model.etlt"),
                 ("baseline-results", ws / "r1"), ("retrained-model", ws / "r2" / "m.tlt")]
    result, ui, out = run_summary(tmp_path, "Succeeded", NO_FAILURES, artifacts)

    assert result.returncode == 0, result.stdout
    assert claim_released(tmp_path, result)
    metrics, ui = check_outputs(out)  # what KFP accepts
    assert metrics is None  # the run's two metrics are the evaluate steps'
    assert [o["type"] for o in ui["outputs"]] == [
        "markdown", "web-app", "markdown", "table", "markdown"]
    text = markdown(ui)
    assert text.startswith("## Run summary: Succeeded\n\nEvery step succeeded.\n")
    # both accuracies side by side, with the change
    assert "| Top-1 accuracy | 95.28% | 90.10% | -5.18 points |" in text
    assert ("Quality gate: PASSED — retrained top-1 accuracy 90.1% meets min_accuracy 50.0%."
            in text)
    assert ("**Pruning**: ratio (pruned / original model) 0.6354; model file 9.00 kB → "
            "5.00 kB, 44.4% smaller." in text)
    assert ("**Test inference**: 64 images in `data/test`: electric\\_bicycle 47, bicycle 17."
            in text)
    assert "**TensorRT engine**: `models/m.engine`, INT8, 4.00 kB." in text
    # issue 17: the 3.0 image cannot measure the engine itself, and the report says so
    assert ("Its own accuracy was **not measured** in this build: the TAO 3.0 image cannot "
            "run a TensorRT engine over images" in text)
    # both training curves in one picture that fits the panel's 500 px frame
    (curves,) = outputs_of(ui, "web-app")
    assert "Training curves: baseline and retrained model" in curves["source"]
    assert 'height="498"' in curves["source"] and 'width="440"' in curves["source"]
    assert "baseline from training.csv; retrained from the Keras progress lines" in curves["source"]
    # the retrained model: 24 classes, so its most confused pairs (labelled), and per class
    assert "### Most confused classes: retrained model" in text
    pairs = [line for line in text.splitlines() if re.match(r"\| \d\d \|", line)]
    assert len(pairs) == summary.MAX_CONFUSED_PAIRS
    (table,) = outputs_of(ui, "table")
    assert table["header"] == ["class (retrained)", "precision", "recall", "f1-score",
                               "support"]
    assert len(table["source"].splitlines()) == 24
    # the artifacts: produced by this run, not produced, or there from an earlier run
    assert "### Artifacts: 4 of 7 produced by this run" in text
    assert "- **pruned-model** `models/pruned.tlt`: 5.00 kB\n" in text
    assert "- **baseline-results** `r1`: " in text  # the folder train wrote, all it holds
    assert "- **retrained-model** `r2/m.tlt`: **not produced**\n" in text
    assert "- **int8-model** `export/final_int8_model.etlt`: **not produced**\n" in text
    assert ("- **fp32-model** `export/old.etlt`: 2.50 kB, **not from a finished step**\n"
            in text)
    assert too_wide(text) == []
    assert f"tao_step summary: run {RUN}: Succeeded; 7 step results read; failed: none" in (
        result.stdout)


def test_a_failed_step_is_named_with_what_was_produced_before_it(tmp_path):
    """The report of a run whose test-infer failed: Argo's message, the DAG groups holding
    the failure left out, a retried step that recovered said as such."""
    ws, models, images = whole_run(tmp_path)
    kept = ws / claims.FOLDER / "results" / RUN_UID / "test-infer.json"
    kept.unlink()  # test-infer failed: it kept nothing
    take_claim(tmp_path)
    failures = go_quote(go_json([
        {"displayName": RUN, "message": "", "templateName": "tao-iva-classification",
         "phase": "Failed", "podName": RUN, "finishedAt": "2024-05-01T10:09:00Z"},
        {"displayName": "test-infer", "message": "Error (exit code 1)",
         "templateName": "test-infer", "phase": "Failed", "podName": f"{RUN}-123",
         "finishedAt": "2024-05-01T10:08:00Z"},
        {"displayName": "exit-handler-1", "message": "", "templateName": "exit-handler-1",
         "phase": "Failed", "podName": f"{RUN}-456", "finishedAt": "2024-05-01T10:09:00Z"},
        {"displayName": "train-model(0)", "message": "pod deleted", "templateName": "train-model",
         "phase": "Error", "podName": f"{RUN}-789", "finishedAt": "2024-05-01T10:01:00Z"},
    ]))
    result, ui, out = run_summary(tmp_path, "Failed", failures,
                                  [("predictions", images / "result.csv")])

    assert result.returncode == 0, result.stdout  # the run is Failed already
    assert claim_released(tmp_path, result)
    text = markdown(ui)
    assert text.startswith(
        "## Run summary: Failed\n\n"
        "- **train-model** succeeded after 1 failed attempt (pod deleted).\n"
        "- **test-infer** failed: Error (exit code 1)\n\n")
    assert "exit-handler-1" not in text and RUN not in text
    assert "**Test inference**: no result: test-infer failed." in text
    assert "| Top-1 accuracy | 95.28% | 90.10% | -5.18 points |" in text  # made before it
    # its result.csv is the one test-infer wrote before failing, or an earlier run's
    assert re.search(r"- \*\*predictions\*\* `data/test/result.csv`: [\d.]+ kB, "
                     r"\*\*not from a finished step\*\*", text)
    assert "failed: test-infer" in result.stdout


def test_a_failed_gate_fails_the_exit_handler_after_the_report_and_the_release(tmp_path):
    """Argo marks a run whose steps succeeded Failed when its exit handler fails
    (operator.go, ``if main workflow succeeded, but the exit node was unsuccessful``,
    v3.3.8, v3.3.10, v3.4.16, v3.5.14, v3.7.3, v4.0.5)."""
    whole_run(tmp_path, gate="0.99")
    take_claim(tmp_path)
    result, ui, _ = run_summary(tmp_path, "Succeeded", NO_FAILURES)

    assert result.returncode == 1
    assert claim_released(tmp_path, result)
    text = markdown(ui)
    assert text.startswith("## Run summary: Failed\n\n- **The quality gate failed**")
    assert ("Quality gate: **FAILED** — retrained top-1 accuracy 90.1% is below min_accuracy "
            "99.0%; export, INT8 export and TensorRT conversion did not run." in text)
    assert "**TensorRT engine**: not built: the quality gate failed." in text
    assert "ERROR: the quality gate failed: retrained top-1 accuracy 90.1%" in result.stdout


def test_the_claim_is_released_although_the_report_cannot_be_built(tmp_path):
    folder = tmp_path / "ws" / claims.FOLDER / "results" / RUN_UID
    folder.mkdir(parents=True)
    # a result of the right format whose content breaks the report
    (folder / "test-infer.json").write_text(json.dumps(
        {"format": 1, "kind": "inference", "step": "test-infer", "counts": 5, "images": 1}))
    take_claim(tmp_path)
    result, ui, _ = run_summary(tmp_path, "Succeeded", NO_FAILURES)

    assert result.returncode == 1
    assert claim_released(tmp_path, result)
    assert "Traceback" in result.stdout and "the summary could not be built" in result.stdout
    (only,) = ui["outputs"]
    assert only["source"].startswith("## Run summary: Succeeded\n\n**The summary could not be "
                                     "built** (")


def test_a_run_with_nothing_kept_says_what_is_missing(tmp_path):
    """preflight failed: no step kept anything, nothing was claimed."""
    failures = go_quote(go_json([{"displayName": "preflight", "message": "Error (exit code 1)",
                                  "templateName": "preflight", "phase": "Failed",
                                  "podName": "p", "finishedAt": "2024-05-01T10:00:00Z"}]))
    result, ui, _ = run_summary(tmp_path, "Failed", failures)
    assert result.returncode == 0
    assert f"release: run {RUN} (uid {RUN_UID}) holds no claim" in result.stdout
    text = markdown(ui)
    assert "- **preflight** failed: Error (exit code 1)" in text
    assert "| Top-1 accuracy | not evaluated | not evaluated | - |" in text
    assert "Quality gate: not applied — reevaluate-model did not finish." in text
    assert "**Pruning**: no result: prune-model did not run." in text
    assert "Training curve not available for the baseline and retrained model" in text
    assert [o["type"] for o in ui["outputs"]] == ["markdown"]


def test_the_fp_engine_variant_is_named_by_its_task(tmp_path):
    """The FP16/FP32 convert-trt is kfp's task convert-trt-2; its failure is convert-trt's."""
    failures = go_quote(go_json([{"displayName": "convert-trt-2", "message": "OOMKilled",
                                  "templateName": "convert-trt-2", "phase": "Failed",
                                  "podName": "p", "finishedAt": "2024-05-01T10:00:00Z"}]))
    result, ui, _ = run_summary(tmp_path, "Error", failures)
    assert result.returncode == 0
    text = markdown(ui)
    assert text.startswith("## Run summary: Error\n\n- **convert-trt-2** failed: OOMKilled\n")
    assert "**TensorRT engine**: not built: convert-trt failed." in text


@pytest.mark.parametrize("given, expected", [
    (NO_FAILURES, []),
    ("null", []),
    # Argo's own example, Go-quoted as the exit handler receives it
    ('"' + ARGO_FAILURE + '"', [("hook-failures", "Failed", "Pod failed")]),
    (ARGO_FAILURE.replace('\\"', '"'), [("hook-failures", "Failed", "Pod failed")]),
])
def test_workflow_failures_as_argo_passes_them(given, expected):
    failures, problem = summary.parse_failures(given)
    assert problem is None
    assert [(f.name, f.phase, f.message) for f in failures] == expected


@pytest.mark.parametrize("given, problem", [
    ("{{workflow.failures}}", "Argo did not substitute"),
    ('"[{\\"displayName\\": ', "not the JSON list Argo passes"),
    ('"{\\"a\\": 1}"', "not a list of failed nodes"),
    ('"\\q"', "not the JSON list Argo passes"),
])
def test_failures_that_cannot_be_read_are_said_to_be(given, problem):
    failures, found = summary.parse_failures(given)
    assert failures is None and problem in found


@pytest.mark.parametrize("text", [
    "plain", 'quote " and backslash \\', "new\nline\ttab\x07bell\x7f", "é ü 日本",
    "<html> & \u2028", "\U0001f600 astral", "\x00\x1f control",
])
def test_go_quoting_round_trips(text):
    """The rehearsal's Go quoting (what Argo does) and tao_step's unquoting agree."""
    assert summary.go_unquote(go_quote(text)) == text
    nodes = [{"displayName": "s", "message": text}]
    assert json.loads(summary.go_unquote(go_quote(go_json(nodes)))) == nodes


def test_many_classes_stay_readable_in_the_side_panel(tmp_path):
    """40 long class names: the pairs (capped) instead of the matrix, per-class in a paged
    table; every markdown table and word fits 500 px."""
    names = [f"vehicle_category_{i:02d}_long" for i in range(40)]
    matrix = [[(30 if i == j else (3 if j == (i + 1) % 40 else 0)) for j in range(40)]
              for i in range(40)]
    path = tmp_path / "evaluate.txt"
    path.write_text(evaluate_text(names, matrix))
    result = run_report("evaluate", "--out-dir", tmp_path / "e", "--label", "retrained",
                        "--min-accuracy", "0.5", "--gate-file", tmp_path / "gate",
                        command=fake_tao("print", path), env=run_env(tmp_path, "reevaluate-model"))
    assert result.returncode == 0, result.stdout
    result, ui, _ = run_summary(tmp_path, "Succeeded", NO_FAILURES)
    assert result.returncode == 0
    text = markdown(ui)
    assert "### Confusion matrix" not in text
    assert len([line for line in text.splitlines() if re.match(r"\| \d\d \|", line)]) == 30
    assert len(outputs_of(ui, "table")[0]["source"].splitlines()) == 40
    assert too_wide(text) == []


def test_the_width_check_catches_a_wide_table():
    assert too_wide("| a | b |\n| --- | --- |\n| " + "x" * 40 + " | " + "y" * 30 + " |\n")
    assert too_wide("- `" + "p" * 60 + "`\n")
    assert not too_wide("| a | b |\n| --- | --- |\n| short | cells |\n")
