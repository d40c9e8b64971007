"""``--dry-run --outputs DIR``: what a Kubeflow Pipelines release would show, kept and
previewed.

The page is checked in a real browser (Debian's ``chromium``, headless; ``.ci/run`` installs
it): a checker page loads ``run-output.html`` in a frame and reports what was rendered.
What each release shows is checked on the same kept files, rendered in-process for each
``--kfp-release``; the rules behind it are tested in test_kfp_views.py and test_run_list.py.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import main_error

from rehearsal import kfp_releases, kfp_viewers, run_page
from rehearsal.kfp_releases import LINES
from rehearsal.workflow_view import CompiledWorkflow

CHROMIUM = shutil.which("chromium")
RUN_LIST_HEAD = ["Run name", "Status", "Duration", "Experiment", "Pipeline Version",
                 "Recurring Run", "Start time", ""]


@pytest.fixture(scope="module")
def gate_failure(gate_failure_dry_run):
    """A dry run whose quality gate fails, into an existing empty DIR, previewed as KFP
    1.8 shows it, its ``python3`` steps run through a wrapper that records them (on the TAO
    image's Python in CI): the session's shared one (conftest.py)."""
    run = gate_failure_dry_run
    return run, run.outputs, run.python_calls


@pytest.mark.e2e
def test_a_gate_failure_keeps_every_steps_kfp_files_failed_ones_included(
        gate_failure, default_workflow: CompiledWorkflow):
    result, out, calls = gate_failure
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"open {out / 'run-output.html'}" in result.stdout
    run = json.loads((out / "run.json").read_text())
    assert run["workflow"]["phase"] == "Failed"
    tasks = {t["name"]: t for t in run["tasks"]}
    # named as the compiled DAG's tasks, and the exit handler as Argo names its node
    assert set(tasks) - {"onExit"} <= set(default_workflow.tasks())
    # the exit handler, template summary, fails on the failed gate: so does the run
    summary = tasks["onExit"]
    assert (summary["template"], summary["status"], summary["exit_code"]) == (
        "summary", "Failed", 1)
    assert summary["message"] == "Error (exit code 1)"
    assert run["workflow"]["message"] == "exit handler failed: Error (exit code 1)"
    # the failed step's UI metadata is what Kubeflow shows: the gate, in words
    ui = json.loads((out / summary["outputs"]["mlpipeline-ui-metadata"]).read_text())
    assert ui["outputs"][0]["source"].startswith(
        "## Run summary: Failed\n\n- **The quality gate failed**")
    assert any("is below min_accuracy 99.0%" in o["source"] for o in ui["outputs"])
    assert summary["outputs"]["mlpipeline-ui-metadata"] == "onExit/mlpipeline-ui-metadata.json"
    for gate in ("condition-gate-fp32-export-2", "condition-gate-int8-export-3"):
        assert tasks[gate]["status"] == "Skipped" and tasks[gate]["exit_code"] is None
    for task in run["tasks"]:
        if task["kind"] == "container":
            assert (out / task["log"]).read_text(), task["name"]
            assert task["exit_code"] == (0 if task["status"] == "Succeeded" else 1)
        for name, relative in task["outputs"].items():
            assert relative == f"{task['name']}/{name}.json"
            json.loads((out / relative).read_text())
    published = {t["name"] for t in run["tasks"] if t["outputs"]}
    assert {"evaluate-model", "reevaluate-model", "onExit"} <= published
    # train hands its report to evaluate: a retried step publishes nothing (test_run_list.py)
    assert not published & {"train-model", "retrain-model"}
    # every step's python3 ran on the interpreter given (TAO_STEP_PYTHON)
    ran = calls.read_text().splitlines()
    assert len(ran) == sum(1 for t in run["tasks"] if t["kind"] == "container")
    assert not list(out.parent.glob(".kfp.partial-*"))


@pytest.mark.e2e
def test_kept_files_name_the_cluster_paths_and_the_summary_finds_the_artifacts(gate_failure):
    _, out, _ = gate_failure
    kept = [path for path in out.rglob("*") if path.is_file()]
    assert [p for p in kept if "tao-dry-run-" in p.read_text()] == []  # the local scratch
    cards = {task: json.loads((out / task / "mlpipeline-ui-metadata.json").read_text())
             for task in ("prune-model", "test-infer", "onExit")}  # onExit: the summary
    assert "`/mnt/workspace/tao-experiments/output-pruned/resnet18_nopool_bn_pruned.tlt`" \
        in cards["prune-model"]["outputs"][0]["source"]
    assert "Inference on `/mnt/workspace/tao-experiments/data/split/test/person`" \
        in cards["test-infer"]["outputs"][0]["source"]
    summary = cards["onExit"]["outputs"][-1]["source"]
    # the gate held back the FP32 and INT8 exports and the engine (the cache goes with INT8)
    assert "### Artifacts: 9 of 13 produced by this run" in summary
    assert "- **pruned-model** `tao-experiments/output-pruned/resnet18_nopool_bn_pruned.tlt`" \
        in summary
    assert summary.count("**not produced**") == 4


@pytest.mark.e2e
def test_a_crash_records_omitted_steps_and_exit_codes(prune_crash_dry_run):
    out = prune_crash_dry_run.outputs  # a new folder, made by the run
    assert prune_crash_dry_run.returncode == 1
    tasks = {t["name"]: t for t in json.loads((out / "run.json").read_text())["tasks"]}
    assert (tasks["prune-model"]["status"], tasks["prune-model"]["exit_code"]) == ("Failed", 1)
    assert "CUDA_ERROR_OUT_OF_MEMORY" in (out / tasks["prune-model"]["log"]).read_text()
    assert tasks["retrain-model"]["status"] == "Omitted"
    assert tasks["retrain-model"]["message"] == "upstream prune-model failed"
    assert tasks["retrain-model"]["log"] is None
    # without --kfp-release, the page shows the KFP of the current Kubeflow release
    assert "Kubeflow Pipelines 2.15–2.16 UI" in (out / "run-output.html").read_text()


@pytest.mark.parametrize("case", ["not empty", "a file", "no parent", "without --dry-run"])
def test_a_bad_outputs_dir_is_one_line_and_touches_nothing(tmp_path, monkeypatch, capsys, case):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # in-process: TMPDIR is cached
    target = tmp_path / "out"
    args = ["--dry-run"]
    if case == "not empty":
        target.mkdir()
        (target / "keep.txt").write_text("mine")
    elif case == "a file":
        target.write_text("mine")
    elif case == "no parent":
        target = tmp_path / "missing" / "out"
    else:
        args = []
    before = sorted(p.name for p in tmp_path.rglob("*"))
    line = main_error(capsys, *args, "--outputs", str(target))  # exit 2, one line
    assert "--outputs" in line
    assert {"not empty": "not empty", "a file": "not a directory",
            "no parent": "does not exist", "without --dry-run": "goes with --dry-run"}[case] in line
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    if case in ("not empty", "a file"):
        assert (target / "keep.txt" if case == "not empty" else target).read_text() == "mine"


def test_an_interrupt_while_writing_leaves_no_partial_folder(tmp_path, monkeypatch):
    from rehearsal import interrupts, outputs
    from rehearsal.run_record import RunResult

    def terminated(folder, release):
        assert list(tmp_path.glob(".out.partial-*")) == [folder]
        raise interrupts.Terminated

    monkeypatch.setattr(run_page, "render_folder", terminated)
    with pytest.raises(interrupts.Terminated):
        outputs.write_outputs(RunResult("w", "Succeeded", "", [], tmp_path), {},
                              tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------
# In a real browser

CHECKER = """<!DOCTYPE html><html><body><pre id="facts">not loaded</pre>
<iframe id="page" src="%s" style="width:1280px;height:4000px"></iframe>
<script>
document.getElementById('page').addEventListener('load', () => {
  const d = document.getElementById('page').contentDocument;
  const all = (sel, root) => Array.from((root || d).querySelectorAll(sel));
  const texts = (sel, root) => all(sel, root).map(e => e.textContent.trim());
  const facts = {
    preview: texts('.preview-banner'),
    where: texts('table.where th'),
    panels: all('.step-panel').map(p => [p.dataset.step, p.dataset.template,
                                         all('.plot-card', p).map(c => c.dataset.type)]),
    nothing: texts('.nothing'),
    runListHead: texts('table.run-list th'),
    runListMetrics: texts('table.run-list td.metric'),
    metricsTable: texts('table.compare-table.metrics thead th'),
    metricsRows: texts('table.compare-table.metrics tbody th'),
    compare: texts('table.compare-table.compare tbody th'),
    markdownViewers: all('.markdown-viewer').length,
    markdownTables: all('.markdown-viewer table').length,
    rawPipes: all('.markdown-viewer').filter(e => /\\|\\s*---/.test(e.textContent)).length,
    small: all('.confusion-matrix.small').map(m => ({
      cells: all('td.cm-cell', m).length, labels: all('.ylabel, .xlabel', m).length,
      width: m.getBoundingClientRect().width, text: m.textContent})),
    full: all('.confusion-matrix.full').map(m => texts('.ylabel', m)),
    tables: all('.paged-table').map(t => ({
      first: all(':scope > table tbody tr', t).map(r => r.cells[0].textContent),
      pagination: t.querySelector('.pagination').textContent})),
    frames: all('iframe.web-app').map(f => ({
      sandbox: f.getAttribute('sandbox'), height: f.getBoundingClientRect().height,
      srcdoc: f.getAttribute('srcdoc').length})),
    rejected: texts('.banner.error'),
    links: all('[src], [href]').map(e => e.getAttribute('src') || e.getAttribute('href')),
  };
  document.getElementById('facts').textContent = JSON.stringify(facts);
});
</script></body></html>
"""


def browser_facts(page: Path, tmp_path: Path) -> dict:
    assert CHROMIUM, "chromium is not installed: .ci/run installs it (apt-get install chromium)"
    checker = tmp_path / "checker.html"
    checker.write_text(CHECKER % page.as_uri())
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--allow-file-access-from-files", "--virtual-time-budget=10000", "--dump-dom",
         checker.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="facts">(.*?)</pre>', result.stdout, re.S)
    assert found and found.group(1) != "not loaded", result.stdout[-500:] + result.stderr[-2000:]
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.e2e
def test_the_page_shows_each_steps_panel_then_what_kfp_1_8_lists(gate_failure, tmp_path):
    _, out, _ = gate_failure
    facts = browser_facts(out / "run-output.html", tmp_path)
    run = json.loads((out / "run.json").read_text())
    uis = {t["name"]: json.loads((out / t["outputs"]["mlpipeline-ui-metadata"]).read_text())
           for t in run["tasks"] if "mlpipeline-ui-metadata" in t["outputs"]}
    metric_names = {m["name"] for t in run["tasks"] if "mlpipeline-metrics" in t["outputs"]
                    for m in json.loads((out / t["outputs"]["mlpipeline-metrics"]).read_text())
                    ["metrics"]}

    assert "Preview, not Kubeflow" in facts["preview"][0]
    assert "Kubeflow Pipelines 1.8.x UI" in facts["preview"][0]
    assert facts["where"] == [dict(kfp_releases.ROWS)[key] for key in run_page.GLANCE]
    # a panel per publishing step, the summary first, each with every output of its file
    assert facts["panels"][0][1] == run_page.SUMMARY_TEMPLATE
    by_name = {t["display_name"]: t["name"] for t in run["tasks"]}
    assert sorted(by_name[step] for step, _, _ in facts["panels"]) == sorted(uis)
    for step, _, types in facts["panels"]:
        assert types == [o["type"] for o in uis[by_name[step]]["outputs"]], step
    assert facts["rejected"] == []
    # run list on 1.8: the fixed columns, the buffer, then two of the run's metrics
    assert facts["runListHead"][:8] == RUN_LIST_HEAD
    assert len(facts["runListHead"]) == 10 and set(facts["runListHead"][8:]) <= metric_names
    assert metric_names == {"accuracy-top1-baseline", "accuracy-top1-retrained"}
    assert all(re.fullmatch(r"-?\d+\.\d{3}%?", m) for m in facts["runListMetrics"])
    # the Run output tab: the Metrics table, a row per evaluate step, and no card
    assert set(facts["metricsTable"]) - {""} == metric_names
    assert sorted(facts["metricsRows"]) == ["evaluate-model", "reevaluate-model"]
    assert set(facts["compare"]) == metric_names
    assert any("Nothing here when the tab opens" in n for n in facts["nothing"])
    # markdown's pipe tables became HTML tables
    markdown = [o["source"] for ui in uis.values() for o in ui["outputs"]
                if o["type"] == "markdown"]
    assert facts["markdownViewers"] == len(markdown)
    assert facts["markdownTables"] >= sum("| --- |" in m for m in markdown) > 0
    assert facts["rawPipes"] == 0
    # matrices in a 500 px panel: no class names; the pop-out has them, last label on top
    matrices = [o for ui in uis.values() for o in ui["outputs"]
                if o["type"] == "confusion_matrix"]
    assert len(facts["small"]) == len(facts["full"]) == len(matrices) > 0
    labels = {label for matrix in matrices for label in matrix["labels"]}
    for small in facts["small"]:
        assert small["labels"] == 0 and small["cells"] in {len(m["labels"]) ** 2
                                                           for m in matrices}
        assert small["width"] <= kfp_viewers.PANEL_DIMENSION
        assert not any(label in small["text"] for label in labels)
    assert all(full in [m["labels"][::-1] for m in matrices] for full in facts["full"])
    # tables: first page only, sorted by the first column in string order
    for table in facts["tables"]:
        assert len(table["first"]) <= kfp_viewers.ROWS_PER_PAGE
        assert table["first"] == sorted(table["first"], key=kfp_viewers.js_sort_key)
        assert re.search(rf"1-{len(table['first'])} of \d+", table["pagination"])
    # web apps in a sandbox, panel-card high; nothing loaded from the network
    assert facts["frames"] and all(f["sandbox"] == "allow-scripts"
                                   and f["height"] == kfp_viewers.PANEL_DIMENSION
                                   and f["srcdoc"] > 0 for f in facts["frames"])
    assert not [link for link in facts["links"] if re.match(r"(https?:)?//", link)]


@pytest.mark.e2e
@pytest.mark.parametrize("line", LINES, ids=lambda line: line.key)
def test_each_release_fills_the_run_output_tab_run_list_and_compare_runs(gate_failure, line):
    """The same kept files, as each line shows them (rendered in-process)."""
    _, out, _ = gate_failure
    page = run_page.render_folder(out, line.minors[0])
    sections = dict(re.findall(r'<h2 id="([a-z-]+)">(.*?)(?=<h2 id=|$)', page, re.S))
    assert f"Where to look on KFP {line.label}" in page
    assert sections["step-panels"].index('data-template="summary"') < \
        sections["step-panels"].index('data-step="evaluate-model"')
    metrics_rows = re.findall(r"<tbody><tr><th>([a-z-]+)</th>",
                              sections["run-output"].replace("</tr><tr>", "</tr><tbody><tr>"))
    if line.metrics_stored:
        assert sorted(metrics_rows) == sorted(["evaluate-model", "reevaluate-model"] * (
            2 if line.template_retry else 1))
        assert ("appears twice" in sections["run-output"]) == bool(line.template_retry)
        assert "accuracy-top1-baseline" in sections["compare"]
    else:
        assert metrics_rows == [] and "stores no metrics" in sections["run-output"]
        assert "The Metrics section is empty" in sections["compare"]
    assert "No output artifacts found for this run." in sections["run-output"]
    assert ("accuracy-top1-baseline</th>" in sections["run-list"]) == line.run_list_metrics
    assert ("No metric columns" in sections["run-list"]) != line.run_list_metrics
    released = "the claim is released by the exit handler" in sections["release"]
    assert released == (line.key in ("2.15", "2.17"))


# ---------------------------------------------------------------------------------------
# The viewers, on small inputs


def test_tables_start_sorted_by_the_first_column_in_string_order_ten_a_page():
    rows = [[str(n), "x"] for n in (9, 10, 100, 2)] + [["B", ""], ["a", ""], ["\u00e9", ""]]
    assert [r[0] for r in kfp_viewers.paged_table_order(rows)] == [
        "10", "100", "2", "9", "B", "a", "\u00e9"]
    page = kfp_viewers.render_table({"labels": ["n", "v"],
                                  "data": [[f"{i:02d}", ""] for i in range(13)]})
    assert "1-10 of 13" in page and "3 more row(s) on later pages" in page


def test_a_matrix_is_transposed_and_unlabelled_on_a_card():
    config = kfp_viewers.load_output({
        "type": "confusion_matrix", "storage": "inline", "format": "csv",
        "labels": ["cat", "dog"], "schema": [{"name": "target"}, {"name": "predicted"},
                                             {"name": "count"}],
        "source": "cat,cat,7\ncat,dog,1\ndog,cat,2\ndog,dog,9\n"})
    assert config["data"] == [[7, 1], [2, 9]] and config["axes"] == ["target", "predicted"]
    card = kfp_viewers._matrix(config, kfp_viewers.CARD_DIMENSION)
    cells = re.findall(r'class="cm-cell"[^>]*>(\d+)<', card)
    # top row: predicted dog (last label), columns: true cat, dog
    assert cells == ["1", "9", "7", "2"]
    assert "cat" not in card and "predicted" not in card
    assert 'class="ylabel">dog' in kfp_viewers._matrix(config, kfp_viewers.POPOUT_DIMENSION)




@pytest.mark.parametrize("output, error", [
    ({"type": "table", "storage": "inline", "format": "csv", "header": ["a"], "source": ""},
     'property "source" is required'),
    ({"type": "table", "storage": "inline", "format": "csv", "source": "a"},
     'property "header" is required'),
    ({"type": "confusion_matrix", "storage": "inline", "format": "csv", "labels": ["a", "b"],
      "schema": [{"name": "t"}, {"name": "p"}, {"name": "c"}], "source": "a,a,1\n"},
     "Data dimensions 1 do not match the number of labels passed 2"),
])
def test_an_output_the_loader_rejects_empties_the_steps_panel(output, error):
    run = {"workflow": {"name": "wf-abcde", "phase": "Succeeded"},
           "tasks": [{"name": "s", "path": "s", "template": "s", "kind": "container",
                      "status": "Succeeded", "retry": False,
                      "outputs": {"mlpipeline-ui-metadata": "s/x"}}]}
    page = run_page.render_page(run, {"s": {run_page.UI_METADATA_FILE: json.dumps(
        {"outputs": [{"type": "markdown", "storage": "inline", "source": "# fine"}, output]})}})
    assert "this panel shows an error and no output at all" in page
    assert html.escape(error) in page


def test_the_docs_show_the_page_for_1_8_and_2_15_and_say_how_to_regenerate_it():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for release in ("1.8", "2.15"):
        picture = f"docs/images/run-output-kfp-{release}.png"
        assert f"]({picture})" in readme
        assert (Path(__file__).resolve().parents[1] / picture).read_bytes()[:8] == \
            b"\x89PNG\r\n\x1a\n"
    assert "`.venv/bin/python docs/render_run_output.py`" in readme


def test_the_page_says_whether_the_run_list_metrics_or_only_their_order_vary():
    tasks = [{"name": step, "path": step, "template": step, "kind": "container",
              "status": "Succeeded", "retry": False,
              "outputs": {"mlpipeline-metrics": f"{step}/mlpipeline-metrics.json"}}
             for step in ("evaluate", "reevaluate")]
    run = {"workflow": {"name": "run-abcde", "phase": "Succeeded"}, "tasks": tasks}

    def metrics_file(*names: str) -> str:
        return json.dumps({"metrics": [{"name": n, "numberValue": 0.5, "format": "RAW"}
                                       for n in names]})

    one_each = {"evaluate": {run_page.METRICS_FILE: metrics_file("top1-baseline")},
                "reevaluate": {run_page.METRICS_FILE: metrics_file("top1-retrained")}}
    assert "only their left-to-right order changes" in run_page.render_page(run, one_each,
                                                                             "1.8")
    more = {**one_each, "evaluate": {run_page.METRICS_FILE: metrics_file("a", "b")}}
    assert "which metrics they are changes from run to run" in run_page.render_page(
        run, more, "1.8")
    assert "No metric columns on KFP 2.15–2.16" in run_page.render_page(run, more)


def test_the_summary_panel_comes_first_also_as_the_exit_handler():
    """Found by its template, whether a DAG task or the workflow's onExit node."""
    def step(name, path, template):
        return {"name": name, "path": path, "template": template, "kind": "container",
                "status": "Succeeded", "retry": False, "display_name": template,
                "outputs": {"mlpipeline-ui-metadata": f"{name}/x"}}

    tasks = [step("evaluate-model", "exit-handler-1.evaluate-model", "evaluate-model"),
             step("onExit", "onExit", "summary")]
    ui = json.dumps({"outputs": [{"type": "markdown", "storage": "inline", "source": "# x"}]})
    page = run_page.render_page({"workflow": {"name": "wf-abcde", "phase": "Failed"},
                                 "tasks": tasks},
                                {t["name"]: {run_page.UI_METADATA_FILE: ui} for t in tasks})
    assert re.findall(r'data-template="([a-z-]+)"', page) == ["summary", "evaluate-model"]


def test_a_link_to_an_empty_folder_is_refused_before_the_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "empty")
    line = main_error(capsys, "--dry-run", "--outputs", str(tmp_path / "out"))
    assert (f"error: --outputs: {tmp_path / 'out'} is a symbolic link (to {tmp_path / 'empty'}"
            "); name a new or empty directory itself") in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "out"]
