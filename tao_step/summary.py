"""``python3 -m tao_step summary``: the run's report, then the release of its claim.

The pipeline's exit handler (Argo ``onExit``), so it runs however the run ends: after
success, a failed quality gate or a failed step. It cannot read the steps' outputs, so it
reads what they kept on the workspace (``tao_step.results``) and what Argo passes every exit
handler: ``{{workflow.status}}`` (Succeeded, Failed or Error) and ``{{workflow.failures}}``
(docs/tao-step-report.md cites the Argo source for both)::

    python3 -m tao_step summary --out-dir DIR --workspace WS --run NAME --run-uid UID
        --status STATUS --failures FAILURES [--artifact NAME PATH ...]

It writes ``DIR/mlpipeline-ui-metadata.json``: the whole run in the step's Visualizations,
laid out for KFP's side panel (about 500 px wide): the outcome (which steps failed, with
Argo's message; the gate's verdict), both top-1 accuracies and their change, pruning,
inference counts and the engine, both training curves, the retrained model's confusion
matrix and per-class figures, and every artifact: produced by this run, not produced, or
there but not from a finished step of this run. It publishes no metrics (the run's two
are the evaluate steps'). Then it releases the run's claim on the workspace, whatever
happened before, with ``release``'s messages.

Exit status: 1 when the quality gate failed (Argo then marks a run whose steps all
succeeded Failed), when the report could not be built or written, or when the claim could
not be released; else 0. Python 3.6, standard library only.
"""

import argparse
import json
import os
import posixpath
import re
import sys
import traceback
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

from tao_step import claims, kfp_ui, profiles, results
from tao_step.chart import compared_curves_html
from tao_step.evaluate_report import MAX_CONFUSED_PAIRS, matrix_markdown
from tao_step.kfp_ui import md_escape, md_table
from tao_step.publish import md_code, path_size, pct, pct_pair
from tao_step.training_log import TrainingCurve

STATUSES = ("Succeeded", "Failed", "Error")
# Classes named in the inference line; the rest are counted.
MAX_NAMED_CLASSES = 10


def size_text(size: int) -> str:
    """A size in the unit that shows it best (decimal units, as ``megabytes``)."""
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= factor:
            return "%.2f %s" % (size / factor, unit)
    return "%d bytes" % size


def say(message: str) -> None:
    print("tao_step summary: " + message, flush=True)


# --------------------------------------------------------------------------- Argo's input

_GO_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11,
               "\\": 92, '"': 34, "'": 39}


def go_unquote(text: str) -> str:
    """Go's ``strconv.Unquote`` of a double-quoted string: Argo hands an exit handler
    ``workflow.failures`` as ``strconv.Quote(json)``. ValueError if it is not one."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError("not a quoted string")
    body, out, i = text[1:-1], bytearray(), 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out += char.encode("utf-8")
            i += 1
            continue
        code = body[i + 1:i + 2]
        if code in _GO_ESCAPES:
            out.append(_GO_ESCAPES[code])
            i += 2
        elif code in ("x", "u", "U"):
            digits = {"x": 2, "u": 4, "U": 8}[code]
            if len(body[i + 2:i + 2 + digits]) != digits:
                raise ValueError("short \\%s escape" % code)
            value = int(body[i + 2:i + 2 + digits], 16)  # ValueError if not hex
            out += bytes([value]) if code == "x" else chr(value).encode("utf-8", "replace")
            i += 2 + digits
        elif code in "01234567" and code:
            out.append(int(body[i + 1:i + 4], 8) & 0xFF)
            i += 4
        else:
            raise ValueError("unknown escape \\%s" % code)
    return out.decode("utf-8", "replace")


class Failure(object):
    """One failed step of the run, from ``workflow.failures``, its attempts merged."""

    def __init__(self, name: str, phase: str, message: str, attempts: int, recovered: bool):
        self.name = name
        self.phase = phase
        self.message = message
        self.attempts = attempts  # failed attempts of a retried step
        self.recovered = recovered  # only attempts failed: the step itself succeeded

    def markdown(self) -> str:
        message = md_escape(self.message or "no message")
        if self.recovered:
            return "**%s** succeeded after %d failed attempt%s (%s)." % (
                md_escape(self.name), self.attempts, "s" * (self.attempts > 1), message)
        tried = " (%d attempts)" % self.attempts if self.attempts > 1 else ""
        verb = "failed" if self.phase != "Error" else "ended in error"
        return "**%s** %s%s: %s" % (md_escape(self.name), verb, tried, message)


def parse_failures(text: str) -> Tuple[Optional[List[Failure]], Optional[str]]:
    """The failed steps in ``workflow.failures``, oldest first, or why they cannot be read.

    Argo lists every Failed or Error node, in no particular order: pods, a retried step's
    Retry node (its name) and attempts (``name(0)``, ``name(1)``), and the DAG groups
    holding a failure, which fail without a message. A step whose attempts failed but not
    its Retry node succeeded in the end. Nodes without any message are left out, unless
    no node has one.
    """
    text = text.strip()
    if "{{" in text:
        return None, "Argo did not substitute %s (not run as the exit handler?)" % text
    try:
        if text.startswith('"'):
            text = go_unquote(text)
        nodes = json.loads(text) if text else []
    except ValueError as error:
        return None, "workflow.failures is not the JSON list Argo passes (%s)" % error
    if nodes is None:  # Go's json.Marshal of no failures
        nodes = []
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
        return None, "workflow.failures is not a list of failed nodes"
    groups = OrderedDict()  # type: OrderedDict
    for node in sorted(nodes, key=lambda n: str(n.get("finishedAt") or "")):
        shown = str(node.get("displayName") or node.get("podName") or "?")
        name = re.sub(r"\(\d+\)$", "", shown)
        groups.setdefault(name, []).append((shown != name, node))
    found = []
    for name, entries in groups.items():
        messages = [str(n.get("message") or "").strip() for _, n in entries]
        found.append(Failure(
            name, str(entries[-1][1].get("phase") or "Failed"),
            next((m for m in reversed(messages) if m), ""),
            sum(1 for attempt, _ in entries if attempt),
            all(attempt for attempt, _ in entries)))
    return [f for f in found if f.message] or found, None


# --------------------------------------------------------------------------- the report

class Run(object):
    """What the summary knows about the run."""

    def __init__(self, status: str, failures: Optional[List[Failure]],
                 failures_problem: Optional[str], records: Sequence[dict],
                 record_problems: Sequence[str], artifacts: Sequence[Tuple[str, str]],
                 workspace: str, profile: profiles.Profile = profiles.TAO_3_0):
        self.profile = profile
        self.status = status
        self.failures = failures
        self.failures_problem = failures_problem
        self.records = list(records)
        self.record_problems = list(record_problems)
        self.artifacts = list(artifacts)
        self.workspace = workspace

    def result(self, kind: str, label: Optional[str] = None) -> Optional[dict]:
        """The latest result of that kind (and label)."""
        found = [r for r in self.records if r.get("kind") == kind
                 and (label is None or r.get("label") == label)]
        return found[-1] if found else None

    def shown(self, path: str) -> str:
        """A path as the report shows it: inside the workspace, relative to it (narrow)."""
        relative = posixpath.relpath(posixpath.normpath(path), posixpath.normpath(self.workspace))
        return relative if not relative.startswith("..") else path

    def failed(self, step: str) -> bool:
        """Whether ``step`` failed; kfp names a second op of the same name ``NAME-2`` (the
        FP16/FP32 convert-trt), and Argo's node is named after the task."""
        task = re.compile(re.escape(step) + r"(-\d+)?")
        return any(task.fullmatch(f.name) and not f.recovered for f in self.failures or [])

    def missing(self, step: str) -> str:
        """Why a step's figures are absent."""
        return "%s %s" % (step, "failed" if self.failed(step) else "did not run")

    def gate(self) -> Optional[dict]:
        evaluation = self.result("evaluate", "retrained")
        return evaluation.get("gate") if evaluation else None

    def gate_failed(self) -> bool:
        gate = self.gate()
        return bool(gate) and gate.get("verdict") == "fail"


def gate_line(run: Run) -> str:
    evaluation = run.result("evaluate", "retrained")
    gate = run.gate()
    if gate is None:
        return ("Quality gate: not applied — reevaluate-model did not finish." if evaluation
                is None else "Quality gate: not configured.")
    minimum, top1 = gate.get("min_accuracy"), evaluation.get("top1")
    if minimum == 0:
        return "Quality gate: off (min_accuracy 0); the exports ran whatever the accuracy."
    if top1 is None:
        return ("Quality gate: **UNDECIDED** — the retrained top-1 accuracy could not be read "
                "and min_accuracy %s needs it; nothing was exported." % pct(minimum, 1))
    shown, threshold = pct_pair(top1, minimum)
    if gate.get("verdict") == "pass":
        return ("Quality gate: PASSED — retrained top-1 accuracy %s meets min_accuracy %s."
                % (shown, threshold))
    return ("Quality gate: **FAILED** — retrained top-1 accuracy %s is below min_accuracy %s; "
            "%s did not run." % (shown, threshold, profiles.gated_work(run.profile)))


def outcome_markdown(run: Run) -> Tuple[str, bool]:
    """The heading and why the run failed; whether it failed."""
    failed = run.status != "Succeeded" or run.gate_failed()
    steps = [f for f in run.failures or [] if not f.recovered]
    lines = []
    if run.status not in STATUSES:
        lines.append("Argo passed no run status (%s)." % md_code(run.status))
    for failure in run.failures or []:
        lines.append(failure.markdown())
    if run.failures_problem:
        lines.append("Which steps failed could not be read: %s." % md_escape(
            run.failures_problem))
    elif run.status in ("Failed", "Error") and not steps:
        lines.append("Argo reports the run %s but lists no failed step (stopped, or its "
                     "deadline passed)." % run.status)
    if run.gate_failed():
        lines.append("**The quality gate failed**: nothing was exported (see below).")
    engine = run.result("engine")
    if engine is not None and engine.get("verdict") == "fail":
        lines.append("**The engine's accuracy gate failed**: %s" % md_escape(
            str(engine.get("sentence", ""))))
    # Argo's own word for a run that did not succeed; Failed for a failed gate too
    heading = run.status if run.status in ("Failed", "Error") else (
        "Failed" if failed else "Succeeded")
    text = "## Run summary: %s\n\n" % heading
    text += "".join("- %s\n" % line for line in lines) if lines else (
        "Every step succeeded.\n")
    return text, failed


def accuracy_markdown(run: Run) -> str:
    def top1(label: str) -> Tuple[Optional[float], str]:
        record = run.result("evaluate", label)
        if record is None:
            return None, "not evaluated"
        value = record.get("top1")
        return value, pct(value) if value is not None else "unknown"

    (baseline, base_text), (retrained, re_text) = top1("baseline"), top1("retrained")
    change = ("%+.2f points" % ((retrained - baseline) * 100)
              if baseline is not None and retrained is not None else "-")
    return ("\n" + md_table(("", "Baseline", "Retrained (pruned)", "Change"),
                            [("Top-1 accuracy", base_text, re_text, change)])
            + "\n" + gate_line(run) + "\n")


def steps_markdown(run: Run) -> str:
    """Pruning, inference and the engine, one paragraph each (paths wrap in a list)."""
    parts = []
    prune = run.result("prune")
    if prune is None:
        parts.append("**Pruning**: no result: %s." % run.missing("prune-model"))
    else:
        ratio = prune.get("ratio")
        text = "**Pruning**: ratio (pruned / original model) %s" % (
            "%.4f" % ratio if ratio is not None else "unknown")
        before, after = prune.get("input_size"), prune.get("output_size")
        if before and after:
            text += "; model file %s → %s, %s smaller" % (
                size_text(before), size_text(after), pct(1 - after / before, 1))
        parts.append(text + ".")
    inference = run.result("inference")
    if inference is None:
        parts.append("**Test inference**: no result: %s." % run.missing("test-infer"))
    else:
        counts = inference.get("counts") or []
        named = ", ".join("%s %d" % (md_escape(name), n)
                          for name, n in counts[:MAX_NAMED_CLASSES])
        if len(counts) > MAX_NAMED_CLASSES:
            named += " and %d more classes" % (len(counts) - MAX_NAMED_CLASSES)
        where = md_code(run.shown(str(inference.get("image_dir", ""))))
        parts.append("**Test inference**: %d images in %s%s." % (
            inference.get("images") or 0, where,
            ": " + named if named else " (no readable predictions)"))
    engines = [r for r in run.records if r.get("kind") == "convert"]
    for engine in engines:
        size = engine.get("size")
        parts.append("**TensorRT engine**: %s, %s, %s." % (
            md_code(run.shown(str(engine.get("engine", "")))),
            str(engine.get("precision", "")).upper(),
            size_text(size) if size else "**not written**"))
    if engines and "evaluate-engine" in run.profile.engine.steps:
        parts.append(engine_accuracy_text(run))
    if engines and run.profile.engine.unmeasured:
        parts.append("Its own accuracy was **not measured** in this build: %s; the README's "
                     "\"The engine's own accuracy\" says how to measure it on the GPU model "
                     "that built it." % run.profile.engine.unmeasured)
    if not engines:
        parts.append("**TensorRT engine**: not built: %s." % (
            "the quality gate failed" if run.gate_failed() else run.missing("convert-trt")))
    return "\n" + "\n\n".join(parts) + "\n"


def engine_accuracy_text(run: Run) -> str:
    """The engine's own top-1 next to the retrained model's (evaluate-engine's result)."""
    measured = run.result("engine")
    if measured is None:
        return "Its own accuracy: not measured: %s." % run.missing("evaluate-engine")
    top1, model = measured.get("top1"), measured.get("model_top1")
    difference = measured.get("difference")
    text = "Its own accuracy: top-1 %s (%s images) against the retrained model's %s%s." % (
        pct(top1) if top1 is not None else "unknown", measured.get("images") or "?",
        pct(model) if model is not None else "unknown",
        ", %+.2f points" % (difference * 100) if difference is not None else "")
    sentence = md_escape(str(measured.get("sentence", "")))
    if measured.get("verdict") == "fail":
        sentence = sentence.replace("FAILED", "**FAILED**").replace("UNDECIDED",
                                                                    "**UNDECIDED**")
    return text + " " + sentence


def curves_output(run: Run) -> Tuple[Optional[dict], str]:
    """Both training curves in one picture (a web-app), or a line saying why not."""
    curves, sources, missing = [], [], []
    for label in ("baseline", "retrained"):
        record = run.result("train", label)
        curve = record.get("curve") if record else None
        if not curve or not curve.get("epochs"):
            missing.append(label)
            continue
        series = {k: [v if isinstance(v, (int, float)) else None for v in values]
                  for k, values in (curve.get("series") or {}).items()}
        curves.append((label, TrainingCurve(list(curve["epochs"]), series,
                                            str(curve.get("source", "")))))
        sources.append("%s from %s" % (label, curve.get("source", "?")))
    note = ""
    if missing:
        note = "\nTraining curve not available for the %s model (%s).\n" % (
            " and ".join(missing), "its training did not finish or wrote none")
    if not curves:
        return None, note
    title = "Training curves: " + " and ".join(label for label, _ in curves) + " model"
    html = compared_curves_html(curves, title, "Per epoch; " + "; ".join(sources) + ".")
    return kfp_ui.web_app(html), note


def per_class_outputs(run: Run) -> List[dict]:
    """The retrained model's confusion matrix (with names) and per-class figures."""
    record = run.result("evaluate", "retrained")
    if record is None:
        return []
    found = []
    names, matrix = record.get("class_names"), record.get("matrix")
    pairs = record.get("confused_pairs")
    if names and matrix:
        found.append(kfp_ui.markdown(matrix_markdown("retrained", names, matrix)))
    elif pairs:
        width = len(str(len(pairs)))
        found.append(kfp_ui.markdown(
            "### Most confused classes: retrained model\n\nThe %d largest off-diagonal "
            "cells of the confusion matrix (at most %d); share: of the true class's images."
            "\n\n" % (len(pairs), MAX_CONFUSED_PAIRS)
            + md_table(("#", "true class → predicted as", "images", "share"), [
                ("%0*d" % (width, n + 1), "%s → %s" % (md_escape(true), md_escape(predicted)),
                 count, pct(share, 1))
                for n, (true, predicted, count, share) in enumerate(pairs)])))
    stats = record.get("class_stats")
    if stats:
        digits = record.get("class_digits", 4)
        found.append(kfp_ui.table(
            ["class (retrained)", "precision", "recall", "f1-score", "support"],
            [(name, "%.*f" % (digits, p), "%.*f" % (digits, r), "%.*f" % (digits, f1), n)
             for name, p, r, f1, n in stats]))
    return found


def written_paths(run: Run) -> List[str]:
    return [posixpath.normpath(str(p)) for r in run.records for p in r.get("wrote") or []]


def artifacts_markdown(run: Run) -> str:
    if not run.artifacts:
        return ""
    written = written_paths(run)
    rows, produced, unconfirmed = [], 0, False
    for name, path in run.artifacts:
        size = path_size(path)
        normal = posixpath.normpath(path)
        mine = any(claims.overlaps(normal, w) for w in written)
        if size is None:
            status = "**not produced**"
        elif mine:
            status, produced = size_text(size), produced + 1
        else:
            status, unconfirmed = "%s, **not from a finished step**" % size_text(size), True
        rows.append("- **%s** %s: %s\n" % (md_escape(name), md_code(run.shown(path)), status))
    text = "\n### Artifacts: %d of %d produced by this run\n\n" % (produced, len(run.artifacts))
    text += "".join(rows)
    if unconfirmed:
        text += ("\n*Not from a finished step*: the path exists, but no step of this run "
                 "finished writing it (an earlier run's file, or a failed step's partial "
                 "output).\n")
    return text


def build(run: Run) -> Tuple[List[dict], bool]:
    """The UI outputs, and whether the run failed."""
    head, failed = outcome_markdown(run)
    text = head + accuracy_markdown(run) + steps_markdown(run)
    curves, note = curves_output(run)
    text += note
    if run.record_problems:
        text += "\n**Step results that could not be read:**\n\n" + "".join(
            "- %s\n" % md_escape(p) for p in run.record_problems)
    outputs = [kfp_ui.markdown(text)]
    if curves is not None:
        outputs.append(curves)
    outputs += per_class_outputs(run)
    artifacts = artifacts_markdown(run)
    if artifacts:
        outputs.append(kfp_ui.markdown(artifacts.lstrip("\n")))
    return outputs, failed


def fallback(status: str, failures: str, problem: str) -> dict:
    """What is shown when the report itself failed: the run's status and Argo's list."""
    return kfp_ui.markdown(
        "## Run summary: %s\n\n**The summary could not be built** (%s); this step's log has "
        "the details. Argo's list of failed steps:\n\n%s\n" % (
            md_escape(status), md_escape(problem), md_code(failures[:2000])))


# --------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m tao_step summary",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", required=True, help="where mlpipeline-ui-metadata.json goes")
    parser.add_argument("--workspace", required=True, help="the workspace folder")
    parser.add_argument("--run", required=True, metavar="WORKFLOW_NAME",
                        help="the run's workflow name ({{workflow.name}})")
    parser.add_argument("--run-uid", required=True, metavar="UID",
                        help="the run's workflow uid ({{workflow.uid}}): its results and claim")
    parser.add_argument("--status", required=True, help="{{workflow.status}}")
    parser.add_argument("--failures", required=True, help="{{workflow.failures}}")
    parser.add_argument("--tao-version", choices=tuple(profiles.PROFILES),
                        default=profiles.DEFAULT_VERSION,
                        help="the TAO release of the build (default: %(default)s)")
    parser.add_argument("--artifact", action="append", default=[], nargs=2,
                        metavar=("NAME", "PATH"),
                        help="a file or folder the run should have produced (repeatable)")
    return parser


def report(args) -> int:
    """Write the report; 1 if the run failed at the gate or the report failed."""
    artifacts = [(name, path) for name, path in args.artifact]
    records, unreadable = [], []
    if claims.UID.match(args.run_uid):
        records, unreadable = results.read_run(args.workspace, args.run_uid)
    else:
        unreadable.append("--run-uid %r is not a workflow uid" % args.run_uid)
    failures, failures_problem = parse_failures(args.failures)
    run = Run(args.status.strip(), failures, failures_problem, records, unreadable,
              artifacts, args.workspace, profiles.get(args.tao_version))
    outputs, failed = build(run)
    os.makedirs(args.out_dir, exist_ok=True)
    kfp_ui.write_json(os.path.join(args.out_dir, kfp_ui.UI_METADATA_FILE),
                      kfp_ui.ui_metadata_document(outputs))
    say("run %s: %s; %d step results read; failed: %s" % (
        args.run, "Failed" if failed else "Succeeded", len(records),
        ", ".join(f.name for f in failures or [] if not f.recovered) or "none"))
    for problem in run.record_problems + ([failures_problem] if failures_problem else []):
        say("WARNING: " + problem)
    if run.gate_failed():
        say("ERROR: the quality gate failed: " + gate_line(run).split("— ", 1)[-1])
        return 1
    return 0


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exit_:  # bad options (2) or --help (0)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        status = report(args)
    except Exception as error:  # the report must never keep the claim from being released
        traceback.print_exc(file=sys.stdout)
        say("ERROR: the summary could not be built: %s" % error)
        status = 1
        try:
            os.makedirs(args.out_dir, exist_ok=True)
            kfp_ui.write_json(os.path.join(args.out_dir, kfp_ui.UI_METADATA_FILE),
                              kfp_ui.ui_metadata_document([fallback(
                                  args.status, args.failures, str(error))]))
        except Exception as again:  # nothing more to show; the release still runs
            say("ERROR: not even the short report could be written: %s" % again)
    released = claims.release_and_say(args.workspace, args.run, args.run_uid)
    return max(status, released)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
