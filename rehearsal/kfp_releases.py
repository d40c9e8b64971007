"""What each Kubeflow Pipelines release line does with a v1 run: one entry per line.

Every rule was read in the source of the release it describes (kubeflow/pipelines, "KFP";
argoproj/argo-workflows, "Argo"; kubeflow/manifests) and carries the file and tag it was
read at. Everything else derives from this module:

- the README's "where to look" table and the table in docs/kfp-releases.md
  (``.venv/bin/python -m rehearsal.kfp_releases --write`` rewrites both, ``--markdown``
  prints one; a test checks both are current);
- the preview's ``--kfp-release`` choices and what its page shows (``rehearsal.kfp_views``,
  ``rehearsal.run_page``);
- the tests that encode each line's rule (tests/test_kfp_releases.py, test_kfp_views.py,
  test_run_list.py).

Standard library only.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Mapping

KFP, ARGO, MANIFESTS = "kubeflow/pipelines", "argoproj/argo-workflows", "kubeflow/manifests"

# Where each rule is read: (repository, path, what in it). The tag is the line's.
FILES = {
    "run_list": (KFP, "frontend/src/pages/RunList.tsx", "setState metrics"),
    "metrics_agent": (KFP, "backend/src/common/util/workflow.go",
                      "readNodeMetricsJSONOrEmpty"),
    "metrics_agent_old": (KFP, "backend/src/agent/persistence/worker/metrics_reporter.go",
                          "readNodeMetricsJSONOrEmpty"),
    "pod_name": (KFP, "backend/src/common/util/workflow.go", "RetrievePodName"),
    "metrics_server": (KFP, "backend/src/common/util/workflow.go",
                       "FindObjectStoreArtifactKeyOrEmpty"),
    "metrics_table": (KFP, "frontend/src/lib/CompareUtils.ts",
                      "singleRunToMetricsCompareProps"),
    "compare": (KFP, "frontend/src/lib/CompareUtils.ts", "multiRunMetricsCompareProps"),
    "run_output": (KFP, "frontend/src/lib/WorkflowParser.ts", "loadNodeOutputPaths"),
    "side_panel": (KFP, "frontend/src/pages/RunDetails.tsx", "VisualizationsTabContent"),
    "markdown": (KFP, "frontend/src/components/viewers/MarkdownViewer.tsx",
                 "disableParsingRawHTML"),
    "graph": (KFP, "frontend/src/lib/WorkflowParser.ts", "isVirtual"),
    "argo_version": (KFP, "manifests/kustomize/third-party/argo", "Argo release"),
    "controller_config": (KFP, "manifests/kustomize/third-party/argo/base/"
                          "workflow-controller-configmap-patch.yaml", "workflowDefaults"),
    "terminate": (KFP, "backend/src/common/util/execution_spec.go", "GetTerminatePatch"),
    "terminate_old": (KFP, "backend/src/apiserver/resource/resource_manager.go",
                      "TerminateWorkflow"),
    "exit_deadline": (ARGO, "workflow/controller/workflowpod.go", "getDeadline"),
    "pod_names": (ARGO, "workflow/util/pod_name.go", "GetPodNameVersion"),
    "retry_node": (ARGO, "workflow/controller/operator.go", "processNodeRetries"),
    "template_defaults": (ARGO, "workflow/controller/operator.go",
                          "mergedTemplateDefaultsInto"),
    "ttl_logs": (KFP, "manifests/kustomize/base/pipeline/ml-pipeline-ui-deployment.yaml",
                 "ARGO_ARCHIVE_LOGS"),
    "block_v1": (KFP, "backend/src/apiserver/resource/resource_manager.go",
                 "CreateRun, CreateJob"),
    "block_v1_config": (KFP, "manifests/kustomize/base/installs/generic/"
                        "pipeline-install-config.yaml", "BLOCK_V1_PIPELINES"),
    "kfp_namespace": (KFP, "manifests/kustomize/cluster-scoped-resources/namespace.yaml",
                      "pod-security label"),
    "kfp_manifests": (KFP, "manifests/kustomize", "no pod-security label"),
    "profiles_pss": (MANIFESTS, "applications/profiles/pss/namespace-labels.yaml",
                     "pod-security label"),
    "profiles_labels": (MANIFESTS, "apps/profiles/upstream/base/namespace-labels.yaml",
                        "no pod-security label"),
}

# Argo's exit-handler pods stop inheriting the workflow deadline (which KFP's Terminate sets
# to 0) in these releases (#13016: workflowpod.go getDeadline, "&& !opts.onExitPod").
EXIT_HANDLER_DEADLINE_FIX = ("v3.5.11", "v3.6.0")

# KFP's words when BLOCK_V1_PIPELINES refuses a run (resource_manager.go@2.16.1, 2.17.0).
V1_BLOCKED_MESSAGE = ("Namespace {namespace} is not allowed to run v1 pipelines. Please "
                      "migrate to using KFP V2 pipelines.")

# Pod names by Argo release: v1 = the node id, v2 = <workflow>-<template>-<fnv32a(node)>.
POD_NAMES_NODE_ID, POD_NAMES_TEMPLATE = "v1", "v2"
# What the persistence agent asks the API server for a node's metrics artifact by.
BY_NODE_ID, BY_POD_NAME = "node id", "pod name"


@dataclasses.dataclass(frozen=True)
class Build:
    """KFP releases of a line that ship the same Argo release."""

    kfp: str  # e.g. "2.3.0–2.4.1"
    minors: tuple[str, ...]  # the values --kfp-release accepts for them
    argo: str  # the Argo tag in manifests/kustomize/third-party/argo at those tags


@dataclasses.dataclass(frozen=True)
class Line:
    """One release line: the rules a v1 run meets there, as read at ``kfp_tag``."""

    key: str
    label: str
    kubeflow: str | None  # the Kubeflow releases that ship it
    kfp_tag: str  # the KFP tag the rules were read at
    argo_tag: str  # the Argo tag read with it
    builds: tuple[Build, ...]
    run_list_metrics: bool
    metrics_request: str  # BY_NODE_ID or BY_POD_NAME
    pod_names: str  # Argo's default pod-name format
    markdown_raw_html: bool
    # The workflow-controller configmap's workflowDefaults.spec the line installs.
    workflow_defaults: Mapping | None = None
    v1_blocking_from: str | None = None
    # Which namespaces are labelled pod-security.kubernetes.io/enforce: baseline, and the
    # rules (FILES) that say so or that show no such label.
    baseline_namespaces: str | None = None
    pod_security: tuple[str, ...] = ("kfp_manifests",)
    # Rule -> the tag it was read at, where it is not kfp_tag / argo_tag.
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def metrics_stored(self) -> bool:
        """The API server finds an artifact only by node id (``metrics_server``)."""
        return self.metrics_request == BY_NODE_ID

    @property
    def template_retry(self) -> Mapping | None:
        """The retryStrategy every template gets from the controller, if any."""
        return ((self.workflow_defaults or {}).get("templateDefaults") or {}).get(
            "retryStrategy")

    @property
    def ttl(self) -> Mapping | None:
        return (self.workflow_defaults or {}).get("ttlStrategy")

    @property
    def minors(self) -> tuple[str, ...]:
        return tuple(m for build in self.builds for m in build.minors)

    def build(self, minor: str) -> Build:
        (found,) = [b for b in self.builds if minor in b.minors]
        return found

    def tag(self, rule: str) -> str:
        repo = FILES[rule][0]
        if repo == MANIFESTS:
            return self.tags[rule]
        return self.tags.get(rule) or (self.argo_tag if repo == ARGO else self.kfp_tag)

    def cite(self, rule: str, *, short: bool = False) -> str:
        repo, path, what = FILES[rule]
        name = path.rsplit("/", 1)[-1]
        shown = name if short and "." in name else path
        return f"`{shown}`@{self.tag(rule)}" + ("" if short else f" ({what})")


def _version(tag: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", tag)[:3])


def exit_handler_keeps_running(argo: str) -> bool:
    """Whether an exit-handler pod created after the workflow deadline runs to its end."""
    fixed_35, fixed = (_version(v) for v in EXIT_HANDLER_DEADLINE_FIX)
    version = _version(argo)
    return version >= fixed or fixed_35 <= version < (3, 6)


def merge_template_defaults(template: Mapping, defaults: Mapping | None) -> dict:
    """A template as Argo runs it under ``spec.templateDefaults``: a strategic merge in
    which the template's own fields win, field by field (operator.go
    ``mergedTemplateDefaultsInto``@v4.0.5). A field cannot be removed this way: Go drops
    nil fields when it marshals the template, so the patch never carries a null."""
    merged = dict(defaults or {})
    for key, value in template.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_template_defaults(value, merged[key])
        else:
            merged[key] = value
    return merged


def has_retry_node(template: Mapping) -> bool:
    """Argo wraps a template in a Retry node whenever it has any retryStrategy, whatever
    its limit (operator.go ``executeTemplate``: ``woc.retryStrategy(processedTmpl) != nil``),
    and copies the last attempt's outputs onto it (``processNodeRetries``)."""
    return template.get("retryStrategy") is not None


KFP_2_17_DEFAULTS = {
    # workflow-controller-configmap-patch.yaml@2.17.0, key workflowDefaults
    "ttlStrategy": {"secondsAfterCompletion": 3600, "secondsAfterSuccess": 3600,
                    "secondsAfterFailure": 3600},
    "templateDefaults": {"retryStrategy": {"limit": "2", "retryPolicy": "OnError"}},
}

LINES = (
    Line(key="1.8", label="1.8.x", kubeflow=None, kfp_tag="1.8.5",
         argo_tag="v3.3.8", builds=(Build("1.8.3–1.8.5", ("1.8",), "v3.3.8"),),
         run_list_metrics=True, metrics_request=BY_NODE_ID, pod_names=POD_NAMES_NODE_ID,
         markdown_raw_html=True),
    Line(key="2.0", label="2.0.x", kubeflow="1.8", kfp_tag="2.0.5", argo_tag="v3.3.10",
         builds=(Build("2.0.0–2.0.5", ("2.0",), "v3.3.10"),),
         run_list_metrics=False, metrics_request=BY_NODE_ID, pod_names=POD_NAMES_NODE_ID,
         markdown_raw_html=True, pod_security=("kfp_manifests", "profiles_labels"),
         tags={"profiles_labels": "v1.8.0"}),
    Line(key="2.2", label="2.2–2.14", kubeflow="1.9, 1.10", kfp_tag="2.2.0",
         argo_tag="v3.4.16",
         builds=(Build("2.2.0", ("2.2",), "v3.4.16"),
                 Build("2.3.0–2.4.1", ("2.3", "2.4"), "v3.4.17"),
                 Build("2.5.0", ("2.5",), "v3.5.14"),
                 Build("2.14.x", ("2.14",), "v3.6.7")),
         run_list_metrics=False, metrics_request=BY_POD_NAME, pod_names=POD_NAMES_TEMPLATE,
         markdown_raw_html=False,
         baseline_namespaces=("Kubeflow 1.10.2's profile namespaces (not 1.9 or "
                              "1.10.0–1.10.1)"),
         pod_security=("kfp_manifests", "profiles_labels", "profiles_pss"),
         tags={"metrics_agent": "2.2.0, 2.14.4", "pod_name": "2.2.0, 2.14.4",
               "exit_deadline": "v3.4.16, v3.5.14",
               "profiles_labels": "v1.9.1, v1.10.1", "profiles_pss": "v1.10.2"}),
    Line(key="2.15", label="2.15–2.16", kubeflow="1.11.0", kfp_tag="2.15.0",
         argo_tag="v3.7.3", builds=(Build("2.15.0–2.16.1", ("2.15", "2.16"), "v3.7.3"),),
         run_list_metrics=False, metrics_request=BY_NODE_ID, pod_names=POD_NAMES_TEMPLATE,
         markdown_raw_html=False, v1_blocking_from="2.16.1",
         baseline_namespaces="Kubeflow 1.11's profile namespaces (from 1.10.2), and KFP's own "
                             "from 2.16.0",
         pod_security=("profiles_pss", "kfp_namespace"),
         tags={"block_v1": "2.16.1", "block_v1_config": "2.16.1",
               "kfp_namespace": "2.16.0", "profiles_pss": "v1.11.0"}),
    Line(key="2.17", label="2.17", kubeflow=None, kfp_tag="2.17.0",
         argo_tag="v4.0.5", builds=(Build("2.17.0", ("2.17",), "v4.0.5"),),
         run_list_metrics=False, metrics_request=BY_NODE_ID, pod_names=POD_NAMES_TEMPLATE,
         markdown_raw_html=False, workflow_defaults=KFP_2_17_DEFAULTS,
         v1_blocking_from="2.16.1", baseline_namespaces="KFP's namespace",
         pod_security=("kfp_namespace",)),
)
BY_KEY = {line.key: line for line in LINES}
# What --kfp-release accepts: a KFP minor release, mapped to its line.
MINORS = {minor: line for line in LINES for minor in line.minors}
# The KFP release of the current Kubeflow release (1.11), the preview's default.
DEFAULT_MINOR = "2.15"


def line_of(minor: str) -> Line:
    """The line of a ``--kfp-release`` value; ``ValueError`` with one line otherwise."""
    if minor not in MINORS:
        raise ValueError(f"--kfp-release {minor!r}: not a KFP release this pipeline knows; "
                         f"give one of {', '.join(MINORS)}")
    return MINORS[minor]


# ---------------------------------------------------------------------------------------
# The "where to look" table: one row per place or difference, one column per line.

ROWS = (
    ("run_list", "Run list: metric columns"),
    ("metrics_table", "Run details › Run output › Metrics table"),
    ("compare", "Compare runs › Metrics"),
    ("visualizations", "Step side panel › Visualizations"),
    ("run_output", "Run output tab: cards"),
    ("retries", "Retries"),
    ("ttl", "TTL and logs"),
    ("terminate", "Terminate and the claim"),
    ("pod_security", "Pod Security"),
    ("v1_blocking", "v1 blocking"),
)


def cells(line: Line, *, short: bool = False) -> dict[str, str]:
    """The table's cells for ``line``: what a user meets, and the file and tag it is read
    from (``short``: file names only, for the README)."""
    def c(*rules: str) -> str:
        cited = dict.fromkeys(line.cite(r, short=short) for r in rules)
        return " (" + "; ".join(cited) + ")"

    out = {}
    out["run_list"] = (
        "the two top-1 accuracies" if line.run_list_metrics
        else "none: the metrics line is commented out") + c("run_list")
    agent = "metrics_agent_old" if line.key == "1.8" else "metrics_agent"
    if not line.metrics_stored:
        out["metrics_table"] = ("empty, \"No metrics found\": the agent asks for each node's "
                                "artifact by pod name, the server looks up node ids "
                                "(#10988)") + c("pod_name", "metrics_server")
        out["compare"] = "empty: no metrics stored" + c("compare")
    else:
        twice = line.template_retry is not None
        out["metrics_table"] = (
            "both top-1, " + ("each step's row twice (its Retry node carries a copy)"
                              if twice else "one row per evaluate step")) + c(
            agent, "metrics_table", *(("retry_node",) if twice else ()))
        out["compare"] = "both top-1 per run" + c("compare")
    out["visualizations"] = (
        "every output of the step, at 500 px; raw HTML in markdown "
        + ("rendered" if line.markdown_raw_html else "shown as text")
        + " (the pipeline writes none)" + c("side_panel", "markdown"))
    out["run_output"] = ("none when opened (Argo records artifacts by key, the filter wants "
                         "a bucket); after Refresh, the open step's" + c("run_output"))
    if line.template_retry:
        retry = line.template_retry
        out["retries"] = (f"{retry['retryPolicy']}, limit {retry['limit']}, on every "
                          "template without its own; a Retry node wraps every step and "
                          "group" + c("controller_config", "template_defaults"))
    else:
        out["retries"] = ("as compiled: none on the steps that publish, OnError twice on "
                          "TAO steps" + c("controller_config"))
    if line.ttl:
        hours = line.ttl["secondsAfterCompletion"] / 3600
        out["ttl"] = (f"run's workflow and pods deleted {hours:g} h after it ends; logs "
                      "then from the artifact store" + c("controller_config", "ttl_logs"))
    else:
        out["ttl"] = "no TTL: pods stay, `kubectl logs` works" + c("controller_config")
    kept = [b for b in line.builds if exit_handler_keeps_running(b.argo)]
    terminate = "terminate" if line.key not in ("1.8", "2.0") else "terminate_old"
    if len(kept) == len(line.builds):
        verdict = "released: exit-handler pods ignore the deadline Terminate sets"
    elif not kept:
        verdict = ("may stay: Terminate's deadline also kills the exit handler; release "
                   "it by hand")
    else:
        verdict = ("may stay on " + ", ".join(b.kfp for b in line.builds if b not in kept)
                   + " (Argo " + ", ".join(b.argo for b in line.builds if b not in kept)
                   + "), released on " + ", ".join(b.kfp for b in kept))
    out["terminate"] = verdict + c(terminate, "exit_deadline")
    if line.baseline_namespaces:
        out["pod_security"] = (f"enforce: baseline on {line.baseline_namespaces}: hostPath "
                               "refused, use `--pvc`" + c(*line.pod_security))
    else:
        out["pod_security"] = "no enforce label on the namespaces" + c(*line.pod_security)
    if line.v1_blocking_from:
        out["v1_blocking"] = (f"from {line.v1_blocking_from}: `BLOCK_V1_PIPELINES` (default "
                              "false) refuses runs" + c("block_v1", "block_v1_config"))
    else:
        out["v1_blocking"] = "none: runs are not checked" + c("block_v1")
    return out


def header(line: Line) -> str:
    argo = "Argo " + ", ".join(sorted({b.argo for b in line.builds}, key=_version))
    kubeflow = f"Kubeflow {line.kubeflow}; " if line.kubeflow else ""
    return f"KFP {line.label} ({kubeflow}{argo})"


def markdown_table(*, short: bool) -> str:
    table = [cells(line, short=short) for line in LINES]
    lines = ["| | " + " | ".join(header(line) for line in LINES) + " |",
             "|---" * (len(LINES) + 1) + "|"]
    for key, title in ROWS:
        lines.append(f"| **{title}** | " + " | ".join(row[key] for row in table) + " |")
    return "\n".join(lines) + "\n"


# The generated part of each document sits between these two lines.
BEGIN = ("<!-- BEGIN kfp-releases table: .venv/bin/python -m rehearsal.kfp_releases "
         "--write -->")
END = "<!-- END kfp-releases table -->"
DOCUMENTS = {"README.md": True, "docs/kfp-releases.md": False}  # file -> short citations


def replace_table(text: str, table: str, name: str) -> str:
    """``text`` with its generated table replaced; ValueError if the markers are missing."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{name}: the lines {BEGIN!r} and {END!r} are missing")
    return text[:start + len(BEGIN)] + "\n" + table + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=".venv/bin/python -m rehearsal.kfp_releases",
        description="Print or rewrite the 'where to look' table of each KFP release line.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown", choices=("README", "docs"),
                       help="print the table as README.md (file names) or "
                       "docs/kfp-releases.md (full paths) has it")
    group.add_argument("--write", action="store_true",
                       help="rewrite the table in README.md and docs/kfp-releases.md")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown_table(short=args.markdown == "README"))
        return 0
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for name, short in DOCUMENTS.items():
        path = root / name
        try:
            text = replace_table(path.read_text(encoding="utf-8"),
                                 markdown_table(short=short), name)
        except ValueError as error:
            parser.error(str(error))
        path.write_text(text, encoding="utf-8")
        print(f"wrote the table in {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
