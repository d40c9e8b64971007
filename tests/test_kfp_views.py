"""rehearsal/kfp_views.py on small hand-made runs: node names, ids and pod names as each
Argo release forms them, what each KFP release's backend stores and what its UI lists.

Expected values are computed here by hand from the formulas at the tags cited
(kfp_releases.FILES): Argo ``Workflow.NodeID`` and ``GeneratePodName``
(v3.3.8: POD_NAMES v1 by default; v3.4.16 onwards: v2), KFP ``RetrievePodName``
(2.2.0 to 2.14.4), ``FindObjectStoreArtifactKeyOrEmpty`` (every 2.x tag).
"""

from __future__ import annotations

import json

import pytest

from rehearsal import kfp_views
from rehearsal.dag_scheduler import fnv32a
from rehearsal.kfp_releases import BY_KEY, LINES

WF = "run-abcde"


def metrics_file(*names: str) -> str:
    return json.dumps({"metrics": [{"name": n, "numberValue": 0.5, "format": "RAW"}
                                   for n in names]})


def task(path: str, template: str | None = None, retry: bool = False, ui: bool = False,
         metrics: bool = True) -> dict:
    name = path.rsplit(".", 1)[-1]
    outputs = {}
    if metrics:
        outputs["mlpipeline-metrics"] = f"{name}/mlpipeline-metrics.json"
    if ui:
        outputs["mlpipeline-ui-metadata"] = f"{name}/mlpipeline-ui-metadata.json"
    return {"name": name, "path": path, "template": template or name, "kind": "container",
            "status": "Succeeded", "retry": retry, "outputs": outputs, "display_name": name}


GROUP = {"name": "exit-handler-1", "path": "exit-handler-1", "template": "exit-handler-1",
         "kind": "dag", "status": "Succeeded", "retry": False, "outputs": {}}


def test_node_and_pod_names_as_each_argo_release_forms_them():
    tasks = [GROUP, task("exit-handler-1.evaluate", "evaluate-model", ui=True),
             task("onExit", "summary", metrics=False, ui=True)]
    old = kfp_views.status_nodes(WF, tasks, BY_KEY["1.8"])
    name = f"{WF}.exit-handler-1.evaluate"
    assert [(n.id, n.name, n.display_name, n.type) for n in old] == [
        (f"{WF}-{fnv32a(name)}", name, "evaluate", "Pod"),
        (f"{WF}-{fnv32a(WF + '.onExit')}", f"{WF}.onExit", f"{WF}.onExit", "Pod")]
    # Argo 3.3 names a pod by its node id; the artifact key follows the pod name
    assert old[0].artifacts[0] == {"name": "mlpipeline-metrics", "s3": {
        "key": f"artifacts/{WF}/{WF}-{fnv32a(name)}/mlpipeline-metrics.tgz"}}
    new = kfp_views.status_nodes(WF, tasks, BY_KEY["2.15"])
    assert [n.id for n in new] == [n.id for n in old]
    assert kfp_views.pod_name(WF, new[0], BY_KEY["2.15"]) == \
        f"{WF}-evaluate-model-{fnv32a(name)}"
    # KFP 2.2 asks for that same name, which is not a node id
    assert kfp_views.retrieve_pod_name(WF, new[0]) == f"{WF}-evaluate-model-{fnv32a(name)}"


def test_on_2_17_every_template_is_a_retry_node_the_root_and_groups_included():
    tasks = [GROUP, task("exit-handler-1.evaluate", "evaluate-model")]
    nodes = kfp_views.status_nodes(WF, tasks, BY_KEY["2.17"])
    attempt = f"{WF}(0).exit-handler-1(0).evaluate(0)"
    assert [(n.name, n.display_name, n.type) for n in nodes] == [
        (attempt, "evaluate(0)", "Pod"), (attempt[:-3], "evaluate", "Retry")]
    assert nodes[1].artifacts == nodes[0].artifacts  # processNodeRetries' copy
    assert [n.name for n in kfp_views.side_panels(nodes)] == []  # no ui-metadata here


@pytest.mark.parametrize("key, rows", [("1.8", 2), ("2.0", 2), ("2.2", 0), ("2.15", 2),
                                       ("2.17", 4)])
def test_what_each_release_stores(key, rows):
    tasks = [task("evaluate"), task("reevaluate")]
    by_task = {"evaluate": kfp_views.read_metrics(metrics_file("top1-baseline"))[0],
               "reevaluate": kfp_views.read_metrics(metrics_file("top1-retrained"))[0]}
    stored = kfp_views.stored_metrics(WF, tasks, by_task, BY_KEY[key])
    assert len(stored.rows) == rows
    assert stored.unread == (2 if key == "2.2" else 0)
    _, table = kfp_views.metrics_table(stored.rows)
    assert len(table) == rows  # a row per node id: on 2.17 each step twice
    # Compare runs takes the first metric of each name: once, even on 2.17
    assert len(kfp_views.compare_metrics(stored.rows)) == (0 if key == "2.2" else 2)
    assert kfp_views.run_list_columns(stored.rows, BY_KEY[key]) == (
        [m["name"] for m in stored.rows] if key == "1.8" else [])


def test_run_list_columns_follow_node_ids_of_the_workflow_name():
    line = BY_KEY["1.8"]
    tasks = [task("evaluate"), task("reevaluate")]
    by_task = {"evaluate": kfp_views.read_metrics(metrics_file("b-first", "z-last"))[0],
               "reevaluate": kfp_views.read_metrics(metrics_file("a-retrained"))[0]}
    # node ids by hand: <workflow name>-<FNV-1a 32 of "<workflow name>.<task>">
    orders = {}
    for workflow in ("run-abcde", "run-fghij", "run-klmno", "run-pqrst"):
        ids = {t: f"{workflow}-{fnv32a(f'{workflow}.{t}')}" for t in ("evaluate", "reevaluate")}
        first = min(ids, key=ids.get)
        expected = (["b-first", "z-last"] if first == "evaluate" else ["a-retrained", "b-first"])
        stored = kfp_views.stored_metrics(workflow, tasks, by_task, line)
        assert stored.reported == 3 and kfp_views.run_list_columns(stored.rows, line) == expected
        orders[workflow] = first
    assert len(set(orders.values())) == 2, orders  # both orders occur among these names
    assert len(kfp_views.simulate_columns(tasks, by_task, "run-", line)) == 2


def test_a_retried_step_is_two_nodes_and_fifty_metrics_is_the_cap():
    tasks = [task("evaluate", retry=True), task("reevaluate", retry=True)]
    names = [f"m{i:02d}" for i in range(13)]
    by_task = {t["name"]: kfp_views.read_metrics(metrics_file(*names))[0] for t in tasks}
    stored = kfp_views.stored_metrics("wf", tasks, by_task, BY_KEY["1.8"])
    assert stored.reported == 52 and len(stored.rows) == kfp_views.MAX_RUN_METRICS
    assert len({m["nodeId"] for m in stored.rows}) == 4


@pytest.mark.parametrize("line", LINES, ids=lambda line: line.key)
def test_the_run_output_tab_lists_nothing_until_a_panel_was_opened(line):
    tasks = [task("evaluate", ui=True, retry=True), task("summary", ui=True)]
    nodes = kfp_views.status_nodes(WF, tasks, line)
    assert kfp_views.run_output_cards(nodes) == []  # key-only artifacts: no bucket
    panels = kfp_views.side_panels(nodes)
    assert [p.task["name"] for p in panels] == ["evaluate", "summary"]  # Retry nodes hidden
    assert [n.id for n in kfp_views.run_output_cards(nodes, opened=panels[1])] == [panels[1].id]


def test_metric_files_are_read_as_the_agent_and_api_server_do():
    metrics, problem = kfp_views.read_metrics(metrics_file("ok", "Bad name", "x" * 65))
    assert [m["name"] for m in metrics] == ["ok"] and "Bad name" in problem
    assert kfp_views.read_metrics('{"metrics": [{"name": "a", "value": 1}]}')[0] == []
    assert kfp_views.read_metrics("not json")[0] == []


def test_numbers_are_formatted_like_javascript_to_fixed():
    assert kfp_views.js_to_fixed(0.0625) == "0.063"  # Python's '%.3f' gives 0.062
    assert kfp_views.js_to_fixed(-0.0625) == "-0.063"
    assert kfp_views.metric_display({"numberValue": 0.8333333333333334,
                                     "format": "PERCENTAGE"}) == "83.333%"
    assert kfp_views.metric_display({"numberValue": 2, "format": "RAW"}) == "2.000"
