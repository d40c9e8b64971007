"""Draw the pipeline's DAG from the compiled workflow, not by hand.

    .venv/bin/python docs/render_dag.py   # docs/images/pipeline-dag{,-tao5}.gv and .svg

The SVG needs Graphviz's `dot` (Debian/Ubuntu: apt-get install graphviz); the .gv source
is written either way, and the tests check it matches what the pipeline compiles to. One
picture per build: the default (TAO 3.0) and ``--tao-version 5.0``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import graphviz
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rehearsal.workflow_view import CompiledWorkflow  # noqa: E402

IMAGES = REPO / "docs" / "images"
# Picture file stem -> the compile options of the build it shows.
PICTURES = {"pipeline-dag": (), "pipeline-dag-tao5": ("--tao-version", "5.0")}


def compiled_workflow(*options: str) -> CompiledWorkflow:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pipeline.yaml"
        subprocess.run(
            [sys.executable, str(REPO / "tao_iva_classification_pipeline.py"), "-o", str(out),
             *options],
            check=True, capture_output=True,
        )
        return CompiledWorkflow(yaml.safe_load(out.read_text()))


def command_words(template: dict) -> list:
    """The CLI and its subcommands, e.g. ``classification train``, past the ``tao_step``
    runner's ``--``; for the runner's own commands, ``tao_step preflight`` and the like."""
    argv = template["container"]["command"] + template["container"].get("args", [])
    if "--" in argv:
        argv = argv[argv.index("--") + 1:]
    elif argv[:2] == ["python3", "-c"]:
        argv = ["tao_step", *argv[5:]]  # past the bootstrap and --require-runtime N
    words = []
    for word in argv:
        if word.startswith("-") or "{{" in word or "$(" in word:
            break
        words.append(word)
    return words


def gpu_label(template: dict) -> str:
    limits = template["container"].get("resources", {}).get("limits", {})
    patch = json.loads(template.get("podSpecPatch", "{}"))
    if patch:
        return "GPUs: train_num_gpus"
    return "GPU: 1" if "nvidia.com/gpu" in limits else "no GPU"


def build_graph(workflow: CompiledWorkflow) -> graphviz.Digraph:
    graph = graphviz.Digraph("tao_iva_classification", format="svg")
    graph.attr(rankdir="TB", fontname="Helvetica", label="TAO classification pipeline "
               "(an edge: a step reads what the other writes; dashed: the quality gate;\\n"
               "dotted: the exit handler, after the last steps however they end)",
               labelloc="t")
    graph.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="11")
    graph.attr("edge", fontname="Helvetica")
    steps = {}
    for template in workflow.container_templates:
        steps.setdefault(workflow.display_name(template), []).append(template)
    for name in sorted(steps):
        template = steps[name][0]
        detail = " ".join(command_words(template))
        if len(steps[name]) > 1:
            detail += "\\n(INT8 with calibration; FP16/FP32 without)"
        if template["name"] == workflow.doc["spec"].get("onExit"):
            detail += "\\n(exit handler: runs last,\\nhowever the run ends)"
        gpu = gpu_label(template)
        graph.node(name, f"{name}\\n{detail}\\n{gpu}",
                   fillcolor="#d5f5d5" if gpu != "no GPU" else "#e8eef7")
    gates = workflow.gates()
    edges = reduced(workflow.step_edges())
    for upstream, downstream in sorted(edges):
        if gates.get(downstream, (None,))[0] == upstream:
            graph.edge(upstream, downstream, style="dashed", label="if top-1 ≥\\nmin_accuracy",
                       fontsize="9")
        else:
            graph.edge(upstream, downstream)
    on_exit = workflow.doc["spec"].get("onExit")
    if on_exit:
        handler = workflow.display_name(workflow.templates[on_exit])
        for last in sorted(set(steps) - {a for a, _ in edges} - {handler}):
            graph.edge(last, handler, style="dotted")
    return graph


def reduced(edges: set) -> set:
    """Without the edges another path already implies (condition groups add such edges)."""
    def reachable(start: str, skip: tuple) -> set:
        seen, pending = set(), [b for a, b in edges if a == start and (a, b) != skip]
        while pending:
            node = pending.pop()
            if node not in seen:
                seen.add(node)
                pending.extend(b for a, b in edges if a == node)
        return seen

    return {(a, b) for a, b in edges if b not in reachable(a, (a, b))}


def main() -> int:
    IMAGES.mkdir(parents=True, exist_ok=True)
    for stem, options in PICTURES.items():
        graph = build_graph(compiled_workflow(*options))
        (IMAGES / f"{stem}.gv").write_text(graph.source)
        try:
            svg = graph.pipe(format="svg")
        except graphviz.ExecutableNotFound:
            print(f"wrote {stem}.gv; install Graphviz (dot) to render the SVG", file=sys.stderr)
            return 1
        (IMAGES / f"{stem}.svg").write_bytes(svg)
        print(f"wrote {IMAGES / f'{stem}.gv'} and {IMAGES / f'{stem}.svg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
