"""``--dry-run --outputs DIR``: what Kubeflow 1.8.5 would show, kept and previewed.

The page is checked in a real browser (Debian's ``chromium``, headless; ``.ci/run`` installs
it): a checker page loads ``run-output.html`` in a frame and reports what was rendered.
The rules the page mirrors are checked in-process on small hand-made inputs.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import run_compiler
from in_container import PYTHON

from rehearsal import run_page
from rehearsal.workflow_view import CompiledWorkflow

CHROMIUM = shutil.which("chromium")
RUN_LIST_HEAD = ["Run name", "Status", "Duration", "Experiment", "Pipeline Version",
                 "Recurring Run", "Start time", ""]


@pytest.fixture(scope="module")
def gate_failure(tmp_path_factory):
    """A dry run whose quality gate fails, into an existing empty DIR, its ``python3``
    steps run through a wrapper that records them (on the TAO image's Python in CI)."""
    root = tmp_path_factory.mktemp("outputs")
    wrapper = root / "python3"
    calls = root / "python3-calls.txt"
    wrapper.write_text(f'#!/bin/sh\necho ran >> "{calls}"\nexec "{PYTHON}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    out = root / "kfp"
    out.mkdir()
    result = run_compiler("--dry-run", "--param", "min_accuracy=0.99", "--outputs", str(out),
                          env={"TMPDIR": str(root), "TAO_STEP_PYTHON": str(wrapper)})
    return result, out, calls


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


def test_a_crash_records_omitted_steps_and_exit_codes(tmp_path):
    out = tmp_path / "new"
    result = run_compiler("--dry-run", "--outputs", str(out),
                          env={"TMPDIR": str(tmp_path), "FAKE_TAO_FAIL": "prune"})
    assert result.returncode == 1
    tasks = {t["name"]: t for t in json.loads((out / "run.json").read_text())["tasks"]}
    assert (tasks["prune-model"]["status"], tasks["prune-model"]["exit_code"]) == ("Failed", 1)
    assert "CUDA_ERROR_OUT_OF_MEMORY" in (out / tasks["prune-model"]["log"]).read_text()
    assert tasks["retrain-model"]["status"] == "Omitted"
    assert tasks["retrain-model"]["message"] == "upstream prune-model failed"
    assert tasks["retrain-model"]["log"] is None
    assert (out / "run-output.html").is_file()


@pytest.mark.parametrize("case", ["not empty", "a file", "no parent", "without --dry-run"])
def test_a_bad_outputs_dir_is_one_line_and_touches_nothing(tmp_path, case):
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
    result = run_compiler(*args, "--outputs", str(target), env={"TMPDIR": str(tmp_path)})
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert "--outputs" in line and "Traceback" not in result.stderr
    assert {"not empty": "not empty", "a file": "not a directory",
            "no parent": "does not exist", "without --dry-run": "goes with --dry-run"}[case] in line
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    if case in ("not empty", "a file"):
        assert (target / "keep.txt" if case == "not empty" else target).read_text() == "mine"


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
    runListHead: texts('table.run-list th'),
    runListMetrics: texts('table.run-list td.metric'),
    metricsTable: texts('table.compare-table.metrics thead th'),
    markdownViewers: all('.markdown-viewer').length,
    markdownTables: all('.markdown-viewer table').length,
    rawPipes: all('.markdown-viewer').filter(e => /\\|\\s*---/.test(e.textContent)).length,
    cards: all('.plot-card').map(c => [c.dataset.step, c.dataset.type]),
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


def test_the_page_shows_what_the_run_list_and_run_output_tab_would(gate_failure, tmp_path):
    _, out, _ = gate_failure
    facts = browser_facts(out / "run-output.html", tmp_path)
    run = json.loads((out / "run.json").read_text())
    uis = {t["name"]: json.loads((out / t["outputs"]["mlpipeline-ui-metadata"]).read_text())
           for t in run["tasks"] if "mlpipeline-ui-metadata" in t["outputs"]}
    # Argo nodes per task: a retried task is the Retry node and its attempt "(0)"; the exit
    # handler's node shows its whole name, "<workflow>.onExit" (run_page.output_nodes)
    nodes = {t["name"]: [t["name"]] + ([f"{t['name']}(0)"] if t["retry"] else [])
             for t in run["tasks"]}
    nodes["onExit"] = [f"{run['workflow']['name']}.onExit"]
    metric_names = {m["name"] for t in run["tasks"] if "mlpipeline-metrics" in t["outputs"]
                    for m in json.loads((out / t["outputs"]["mlpipeline-metrics"]).read_text())
                    ["metrics"]}

    assert "Preview, not Kubeflow" in facts["preview"][0]
    # run list: the fixed columns, the buffer, then two of the run's metrics, formatted
    assert facts["runListHead"][:8] == RUN_LIST_HEAD
    assert len(facts["runListHead"]) == 10 and set(facts["runListHead"][8:]) <= metric_names
    assert metric_names == {"accuracy-top1-baseline", "accuracy-top1-retrained"}
    assert all(re.fullmatch(r"-?\d+\.\d{3}%?", m) for m in facts["runListMetrics"])
    assert set(facts["metricsTable"]) - {""} == metric_names
    # every output of every node that carries a step's outputs: one node per step, as no
    # step that publishes is retried (a Retry node would carry a copy: test_run_list.py)
    assert all(len(nodes[name]) == 1 for name in uis), nodes
    expected = sorted([step, o["type"]] for name, ui in uis.items()
                      for step in nodes[name] for o in ui["outputs"])
    assert sorted(facts["cards"]) == expected
    assert facts["rejected"] == []
    # markdown's pipe tables became HTML tables
    markdown = [o["source"] for name, ui in uis.items() for o in ui["outputs"]
                for _ in nodes[name] if o["type"] == "markdown"]
    assert facts["markdownViewers"] == len(markdown)
    assert facts["markdownTables"] >= sum("| --- |" in m for m in markdown) > 0
    assert facts["rawPipes"] == 0
    # matrices at card size: no class names; the pop-out has them, last label on top
    matrices = [o for name, ui in uis.items() for o in ui["outputs"] for _ in nodes[name]
                if o["type"] == "confusion_matrix"]
    assert len(facts["small"]) == len(facts["full"]) == len(matrices) > 0
    labels = {label for matrix in matrices for label in matrix["labels"]}
    for small in facts["small"]:
        assert small["labels"] == 0 and small["cells"] in {len(m["labels"]) ** 2
                                                           for m in matrices}
        assert small["width"] <= run_page.CARD_DIMENSION
        assert not any(label in small["text"] for label in labels)
    assert all(full in [m["labels"][::-1] for m in matrices] for full in facts["full"])
    # tables: first page only, sorted by the first column in string order
    for table in facts["tables"]:
        assert len(table["first"]) <= run_page.ROWS_PER_PAGE
        assert table["first"] == sorted(table["first"], key=run_page.js_sort_key)
        assert re.search(rf"1-{len(table['first'])} of \d+", table["pagination"])
    # web apps in a sandbox, card high; nothing loaded from the network
    assert facts["frames"] and all(f["sandbox"] == "allow-scripts" and f["height"] == 400
                                   and f["srcdoc"] > 0 for f in facts["frames"])
    assert not [link for link in facts["links"] if re.match(r"(https?:)?//", link)]


# ---------------------------------------------------------------------------------------
# The rules, on small inputs


def metrics_file(*names: str) -> str:
    return json.dumps({"metrics": [{"name": n, "numberValue": 0.5, "format": "RAW"}
                                   for n in names]})


def two_steps(retry: bool = False) -> list[dict]:
    return [{"name": step, "path": step, "status": "Succeeded", "retry": retry,
             "outputs": {"mlpipeline-metrics": f"{step}/mlpipeline-metrics.json"}}
            for step in ("evaluate", "reevaluate")]


def test_run_list_columns_follow_node_ids_of_the_workflow_name():
    tasks = two_steps()
    by_task = {"evaluate": run_page.read_metrics(metrics_file("b-first", "z-last"))[0],
               "reevaluate": run_page.read_metrics(metrics_file("a-retrained"))[0]}
    # node ids by hand: <workflow name>-<FNV-1a 32 of "<workflow name>.<task>">
    orders = {}
    for workflow in ("run-abcde", "run-fghij", "run-klmno", "run-pqrst"):
        ids = {t: f"{workflow}-{run_page.fnv32a(f'{workflow}.{t}')}"
               for t in ("evaluate", "reevaluate")}
        first = min(ids, key=ids.get)
        expected = (["b-first", "z-last"] if first == "evaluate" else ["a-retrained", "b-first"])
        metrics, reported = run_page.stored_metrics(workflow, tasks, by_task)
        assert reported == 3 and run_page.run_list_columns(metrics) == expected
        orders[workflow] = first
    assert len(set(orders.values())) == 2, orders  # both orders occur among these names
    assert len(run_page.simulate_columns(tasks, by_task, "run-")) == 2


def test_a_retried_step_is_two_nodes_and_fifty_metrics_is_the_cap():
    tasks = two_steps(retry=True)
    names = [f"m{i:02d}" for i in range(13)]
    by_task = {"evaluate": run_page.read_metrics(metrics_file(*names))[0],
               "reevaluate": run_page.read_metrics(metrics_file(*names))[0]}
    metrics, reported = run_page.stored_metrics("wf", tasks, by_task)
    assert reported == 52 and len(metrics) == run_page.MAX_RUN_METRICS
    assert len({m["nodeId"] for m in metrics}) == 4


def test_metric_files_are_read_as_the_agent_and_api_server_do():
    metrics, problem = run_page.read_metrics(metrics_file("ok", "Bad name", "x" * 65))
    assert [m["name"] for m in metrics] == ["ok"] and "Bad name" in problem
    assert run_page.read_metrics('{"metrics": [{"name": "a", "value": 1}]}')[0] == []
    assert run_page.read_metrics("not json")[0] == []


def test_numbers_are_formatted_like_javascript_to_fixed():
    assert run_page.js_to_fixed(0.0625) == "0.063"  # Python's '%.3f' gives 0.062
    assert run_page.js_to_fixed(-0.0625) == "-0.063"
    assert run_page.metric_display({"numberValue": 0.8333333333333334,
                                    "format": "PERCENTAGE"}) == "83.333%"
    assert run_page.metric_display({"numberValue": 2, "format": "RAW"}) == "2.000"


def test_tables_start_sorted_by_the_first_column_in_string_order_ten_a_page():
    rows = [[str(n), "x"] for n in (9, 10, 100, 2)] + [["B", ""], ["a", ""], ["\u00e9", ""]]
    assert [r[0] for r in run_page.paged_table_order(rows)] == [
        "10", "100", "2", "9", "B", "a", "\u00e9"]
    page = run_page.render_table({"labels": ["n", "v"],
                                  "data": [[f"{i:02d}", ""] for i in range(13)]})
    assert "1-10 of 13" in page and "3 more row(s) on later pages" in page


def test_a_matrix_is_transposed_and_unlabelled_on_a_card():
    config = run_page.load_output({
        "type": "confusion_matrix", "storage": "inline", "format": "csv",
        "labels": ["cat", "dog"], "schema": [{"name": "target"}, {"name": "predicted"},
                                             {"name": "count"}],
        "source": "cat,cat,7\ncat,dog,1\ndog,cat,2\ndog,dog,9\n"})
    assert config["data"] == [[7, 1], [2, 9]] and config["axes"] == ["target", "predicted"]
    card = run_page._matrix(config, run_page.CARD_DIMENSION)
    cells = re.findall(r'class="cm-cell"[^>]*>(\d+)<', card)
    # top row: predicted dog (last label), columns: true cat, dog
    assert cells == ["1", "9", "7", "2"]
    assert "cat" not in card and "predicted" not in card
    assert 'class="ylabel">dog' in run_page._matrix(config, run_page.POPOUT_DIMENSION)


@pytest.mark.parametrize("output, error", [
    ({"type": "table", "storage": "inline", "format": "csv", "header": ["a"], "source": ""},
     'property "source" is required'),
    ({"type": "table", "storage": "inline", "format": "csv", "source": "a"},
     'property "header" is required'),
    ({"type": "confusion_matrix", "storage": "inline", "format": "csv", "labels": ["a", "b"],
      "schema": [{"name": "t"}, {"name": "p"}, {"name": "c"}], "source": "a,a,1\n"},
     "Data dimensions 1 do not match the number of labels passed 2"),
])
def test_an_output_the_loader_rejects_empties_the_whole_tab(output, error):
    run = {"workflow": {"name": "wf-abcde", "phase": "Succeeded"},
           "tasks": [{"name": "s", "path": "s", "status": "Succeeded", "retry": False,
                      "outputs": {"mlpipeline-ui-metadata": "s/x"}}]}
    page = run_page.render_page(run, {"s": {run_page.UI_METADATA_FILE: json.dumps(
        {"outputs": [{"type": "markdown", "storage": "inline", "source": "# fine"}, output]})}})
    assert "would show no output at all" in page and html.escape(error) in page



def test_the_docs_show_the_page_and_say_how_to_regenerate_it():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    picture = Path(__file__).resolve().parents[1] / "docs" / "images" / "run-output-preview.png"
    assert "](docs/images/run-output-preview.png)" in readme
    assert "`.venv/bin/python docs/render_run_output.py`" in readme
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nodes_are_named_as_argo_names_them_inside_an_exit_handler():
    tasks = [{"name": "summary", "path": "exit-handler-1.summary", "retry": True,
              "outputs": {"mlpipeline-ui-metadata": "summary/x"}},
             {"name": "onExit", "path": "onExit", "retry": False,
              "outputs": {"mlpipeline-ui-metadata": "onExit/x"}}]
    nodes = run_page.output_nodes("wf-abcde", tasks)
    assert [(nid, display) for nid, display, _ in nodes] == [
        (f"wf-abcde-{run_page.fnv32a('wf-abcde.exit-handler-1.summary')}", "summary"),
        (f"wf-abcde-{run_page.fnv32a('wf-abcde.exit-handler-1.summary(0)')}", "summary(0)"),
        (f"wf-abcde-{run_page.fnv32a('wf-abcde.onExit')}", "wf-abcde.onExit")]


def test_the_page_says_whether_the_run_list_metrics_or_only_their_order_vary():
    run = {"workflow": {"name": "run-abcde", "phase": "Succeeded"}, "tasks": two_steps()}
    one_each = {"evaluate": {run_page.METRICS_FILE: metrics_file("top1-baseline")},
                "reevaluate": {run_page.METRICS_FILE: metrics_file("top1-retrained")}}
    assert "only their left-to-right order changes" in run_page.render_page(run, one_each)
    more = {**one_each, "evaluate": {run_page.METRICS_FILE: metrics_file("a", "b")}}
    assert "which metrics they are changes from run to run" in run_page.render_page(run, more)
