"""``report engine``: what TAO Deploy's ``classification_tf1 evaluate`` printed about a
TensorRT engine, next to the retrained model's top-1 accuracy, and the engine's own gate.

TAO Deploy's evaluate (tao_deploy@a285787 ``nvidia_tao_deploy/cv/classification_tf1/
scripts/evaluate.py``) logs ``Confusion Matrix`` and ``Classification Report`` as log lines
and prints scikit-learn's matrix and report after each, as TF1's evaluate prints them; it
prints no loss and no ``Evaluation Top K accuracy`` line. So the engine's top-1 comes from
the same reader (``tao_step.evaluate_log``): exact (trace / total of a complete matrix, or
the report's recalls where they determine it) or none.

The retrained model's top-1 is the reevaluate step's result in this run's results
(``tao_step.results``). The step fails when the engine loses more than
``--max-drop`` (a fraction; 1 accepts any engine), and when either top-1 cannot be read
while the gate is set. No KFP metric: the run keeps exactly its two top-1 metrics
(``evaluate_report.top1_metric``); the figures go into a markdown card and the result the
summary reads.
"""

import os
from typing import Optional, Tuple

from tao_step import claims, kfp_ui, parse, results
from tao_step.console import error, warn
from tao_step.kfp_ui import md_table
from tao_step.publish import Outputs, md_code, pct, problems_markdown

# What TF1's evaluate prints and TAO Deploy's does not: not a problem for an engine.
_NOT_PRINTED_BY_DEPLOY = ("no 'Evaluation Loss:' line",
                          "no valid 'Evaluation Top K accuracy:' line")
MODEL_LABEL = "retrained"


def model_top1() -> Tuple[Optional[float], str]:
    """The retrained model's top-1 from this run's results, or None and why not."""
    workspace, _, uid = (os.environ.get(name, "") for name in claims.RUN_ENV)
    if not (workspace and uid):
        return None, "this step runs outside a pipeline run (no %s)" % claims.RUN_ENV[0]
    records, _ = results.read_run(workspace, uid)
    found = [r for r in records if r.get("kind") == "evaluate"
             and r.get("label") == MODEL_LABEL]
    if not found:
        return None, "reevaluate-model kept no result in this run"
    top1 = found[-1].get("top1")
    if not isinstance(top1, (int, float)):
        return None, "reevaluate-model could not read the retrained model's top-1 accuracy"
    return float(top1), ""


def verdict(engine: str, engine_top1: Optional[float], model: Optional[float],
            why_no_model: str, max_drop: Optional[float]) -> Tuple[bool, str]:
    """Whether the engine passes, and the one-line reason."""
    if max_drop is None or max_drop >= 1:
        return True, "Engine gate: off (max_engine_accuracy_drop 1 accepts any engine)."
    if engine_top1 is None:
        return False, ("Engine gate: UNDECIDED — the top-1 accuracy of engine %s could not be "
                       "read from TAO Deploy's evaluate output, and max_engine_accuracy_drop "
                       "%s needs it." % (engine, pct(max_drop, 1)))
    if model is None:
        return False, ("Engine gate: UNDECIDED — the retrained model's top-1 accuracy is "
                       "unknown (%s), and max_engine_accuracy_drop %s needs it."
                       % (why_no_model, pct(max_drop, 1)))
    drop = model - engine_top1
    if drop > max_drop + 1e-12:
        return False, ("Engine gate: FAILED — engine %s loses %.2f points of top-1 accuracy "
                       "(%s against the retrained model's %s), more than "
                       "max_engine_accuracy_drop %.2f points; try more calibration batches "
                       "(calibrate_max_batches, export_int8_batches) or "
                       "convert_trt_precision fp16." % (
                           engine, drop * 100, pct(engine_top1), pct(model), max_drop * 100))
    return True, ("Engine gate: PASSED — engine %s loses %.2f points of top-1 accuracy, "
                  "within max_engine_accuracy_drop %.2f points."
                  % (engine, drop * 100, max_drop * 100))


def report_engine(args, output: str, out: Outputs) -> int:
    ev = parse.parse_evaluate(output)
    problems = [p for p in ev.problems if p not in _NOT_PRINTED_BY_DEPLOY]
    for problem in problems:
        warn(problem)
    model, why_no_model = model_top1()
    passed, sentence = verdict(args.engine, ev.top1, model, why_no_model, args.max_drop_value)
    difference = None
    if ev.top1 is not None and model is not None:
        difference = ev.top1 - model
    rows = [
        ("Engine", md_code(args.engine)),
        ("Precision", args.precision.upper()),
        ("Engine top-1 accuracy", "**%s** (%d of %d images; from the %s)" % (
            pct(ev.top1), ev.correct, ev.images, ev.top1_source)
         if ev.top1 is not None else "unknown"),
        ("Retrained model top-1 accuracy", pct(model) if model is not None
         else "unknown: %s" % why_no_model),
        ("Difference", "%+.2f points" % (difference * 100) if difference is not None else "-"),
    ]
    text = ("### TensorRT engine accuracy\n\n" + md_table(("Measure", "Value"), rows)
            + "\n" + sentence + "\n" + problems_markdown(problems))
    out.ui.append(kfp_ui.markdown(text))
    out.result.update(
        engine=args.engine, precision=args.precision, top1=ev.top1, correct=ev.correct,
        images=ev.images, model_top1=model, difference=difference,
        max_drop=args.max_drop_value, verdict="pass" if passed else "fail",
        sentence=sentence, problems=problems)
    if not passed:
        error(sentence)
        return 1
    return 0
