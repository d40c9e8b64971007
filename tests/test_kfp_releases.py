"""rehearsal/kfp_releases.py: each release line's rules, and the tables derived from them.

The rules were read at the tags each line names (kubeflow/pipelines 1.8.5, 2.0.5, 2.2.0,
2.5.0, 2.14.4, 2.15.0, 2.16.1, 2.17.0; argo-workflows v3.3.8, v3.3.10, v3.4.16, v3.5.10,
v3.5.11, v3.5.14, v3.6.0, v3.7.3, v4.0.5); each test says where.
"""

from __future__ import annotations

import pytest
from conftest import REPO

import tao_iva_classification_cli as cli
from rehearsal import kfp_releases
from rehearsal.kfp_releases import BY_KEY, LINES


@pytest.mark.parametrize("name, short", sorted(kfp_releases.DOCUMENTS.items()))
def test_the_documents_tables_are_generated_from_the_module(name, short):
    text = (REPO / name).read_text(encoding="utf-8")
    start, end = text.index(kfp_releases.BEGIN), text.index(kfp_releases.END)
    assert text[start + len(kfp_releases.BEGIN):end] == \
        "\n" + kfp_releases.markdown_table(short=short), \
        f"{name} is stale: run .venv/bin/python -m rehearsal.kfp_releases --write"


def test_every_cell_cites_a_file_at_a_tag():
    for line in LINES:
        for short in (True, False):
            cells = kfp_releases.cells(line, short=short)
            assert list(cells) == [key for key, _ in kfp_releases.ROWS]
            for key, text in cells.items():
                assert "`@" in text and "|" not in text, (line.key, key, text)


@pytest.mark.parametrize("argo, runs", [
    # workflowpod.go getDeadline: "woc.workflowDeadline != nil && !opts.onExitPod" from
    # v3.5.11 and v3.6.0 (#13016); before, the exit handler's pod gets the past deadline.
    ("v3.3.8", False), ("v3.3.10", False), ("v3.4.16", False), ("v3.4.17", False),
    ("v3.5.10", False), ("v3.5.11", True), ("v3.5.14", True), ("v3.6.0", True),
    ("v3.6.7", True), ("v3.7.3", True), ("v4.0.5", True),
])
def test_exit_handlers_outlive_terminate_from_argo_3_5_11(argo, runs):
    assert kfp_releases.exit_handler_keeps_running(argo) is runs


def test_terminate_releases_the_claim_from_kfp_2_5():
    verdicts = {line.key: kfp_releases.cells(line)["terminate"] for line in LINES}
    assert verdicts["1.8"].startswith("may stay") and verdicts["2.0"].startswith("may stay")
    assert verdicts["2.2"].startswith("may stay on 2.2.0, 2.3.0–2.4.1 (Argo v3.4.16, v3.4.17)"
                                      ", released on 2.5.0, 2.14.x")
    assert verdicts["2.15"].startswith("released") and verdicts["2.17"].startswith("released")


def test_only_kfp_2_17_installs_template_defaults_and_a_ttl():
    # workflow-controller-configmap-patch.yaml: no workflowDefaults before 2.17.0
    assert [line.key for line in LINES if line.workflow_defaults] == ["2.17"]
    line = BY_KEY["2.17"]
    assert line.template_retry == {"limit": "2", "retryPolicy": "OnError"}
    assert line.ttl["secondsAfterCompletion"] == 3600


def test_any_retry_strategy_means_a_retry_node_so_2_17_wraps_every_template(default_workflow):
    """operator.go@v4.0.5: mergedTemplateDefaultsInto patches each template over the
    defaults (its own fields win one by one), and executeTemplate makes a Retry node for
    any retryStrategy. So no template-level setting keeps a step out of a Retry node."""
    defaults = BY_KEY["2.17"].workflow_defaults["templateDefaults"]
    for template in default_workflow.doc["spec"]["templates"]:
        merged = kfp_releases.merge_template_defaults(template, defaults)
        assert kfp_releases.has_retry_node(merged), template["name"]
        own = template.get("retryStrategy")
        if own:  # the template's fields are kept, the defaults fill the gaps
            assert {k: merged["retryStrategy"][k] for k in own} == own
    download = kfp_releases.merge_template_defaults(
        default_workflow.step("download-model"), defaults)["retryStrategy"]
    assert (download["retryPolicy"], download["limit"]) == ("Always", 3)
    # the most a template can say: retry zero times; still a Retry node
    zero = kfp_releases.merge_template_defaults({"retryStrategy": {"limit": 0}}, defaults)
    assert zero["retryStrategy"] == {"limit": 0, "retryPolicy": "OnError"}
    assert kfp_releases.has_retry_node(zero)
    assert not kfp_releases.has_retry_node(default_workflow.step("summary"))


def test_metrics_are_stored_except_on_2_2_to_2_14():
    # workflow.go: NodeId nodeStatus.ID (2.0.5, 2.15.0, 2.17.0; metrics_reporter.go 1.8.5)
    # or RetrievePodName (2.2.0 to 2.14.4); the server looks up Status.Nodes[nodeID].
    assert {line.key: line.metrics_stored for line in LINES} == {
        "1.8": True, "2.0": True, "2.2": False, "2.15": True, "2.17": True}
    # RunList.tsx: extractMetricMetadata at 1.8.5, commented out from 2.0.5
    assert [line.key for line in LINES if line.run_list_metrics] == ["1.8"]


def test_v1_blocking_from_2_16_1_with_kfps_own_words():
    assert {line.key: line.v1_blocking_from for line in LINES} == {
        "1.8": None, "2.0": None, "2.2": None, "2.15": "2.16.1", "2.17": "2.16.1"}
    # resource_manager.go CreateRun@2.16.1 and 2.17.0
    assert kfp_releases.V1_BLOCKED_MESSAGE.format(namespace="team-a") == (
        "Namespace team-a is not allowed to run v1 pipelines. Please migrate to using KFP "
        "V2 pipelines.")


def test_the_kfp_release_option_takes_a_known_minor_release(capsys):
    assert kfp_releases.line_of(kfp_releases.DEFAULT_MINOR).key == "2.15"
    assert kfp_releases.line_of("2.5").key == "2.2"
    assert kfp_releases.line_of("2.5").build("2.5").argo == "v3.5.14"
    for argv, problem in ((["--dry-run", "--outputs", "x", "--kfp-release", "3.1"],
                           "not a KFP release this pipeline knows; give one of 1.8, 2.0"),
                          (["--kfp-release", "2.15"], "goes with --dry-run --outputs DIR")):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "--kfp-release" in line and problem in line, line
