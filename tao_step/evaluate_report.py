"""``report evaluate``: what ``classification evaluate`` printed, published for the KFP UI,
and the quality gate's verdict.

The top-1 accuracy is the run list's one metric per model; the rest goes into markdown laid
out the same every run: the figures, the confusion matrix (a table up to
``MARKDOWN_MATRIX_MAX_CLASSES`` classes, its most confused pairs above), KFP's confusion
matrix viewer where it fits, and the per-class table. The train step's report it was handed
(``train --hand-over``) is published first.
"""

import json
from typing import Callable, List, Optional, Sequence, Tuple

from tao_step import kfp_ui, parse, profiles
from tao_step.console import error, warn
from tao_step.kfp_ui import PERCENTAGE, md_escape, md_table
from tao_step.publish import Outputs, pct, pct_pair, problems_markdown

# What evaluate publishes, capped so a large class count never means megabytes inline:
# the matrix as a markdown table up to this many classes (it fits a 400 px card) ...
MARKDOWN_MATRIX_MAX_CLASSES = 10
# ... above it, the most confused pairs instead;
MAX_CONFUSED_PAIRS = 30
# KFP's confusion_matrix viewer (cells of at least 15 px: 26 fit 400 px) up to this many;
CONFUSION_VIEWER_MAX_CLASSES = 26
# and the per-class table up to this many rows.
MAX_CLASS_ROWS = 1000


def top1_metric(label: str) -> str:
    """The name of a model's top-1 accuracy metric: the only metrics the pipeline publishes.

    KFP 1.8.5's run list shows the first two metric names in the order it meets them over
    the listed runs (frontend ``RunUtils.extractMetricMetadata``, ``RunList.tsx``
    ``slice(0, 2)``), and each run's metrics come in storage order: node id, then name
    (``run_store.go``), where node ids hash the random workflow name. With exactly these
    two names in the whole run, the two columns are the two top-1 accuracies whatever the
    order. Every other figure goes into the steps' markdown, laid out the same every run.
    """
    return "accuracy-top1-" + label


def parse_fraction_option(text: Optional[str], parameter: str, example: str
                          ) -> Tuple[Optional[float], Optional[str]]:
    """A form fraction handed to a report (``min_accuracy``, ``max_engine_accuracy_drop``):
    ``(value, None)``, ``(None, None)`` when not given, or ``(None, problem)``."""
    if text is None:
        return None, None
    value = parse.finite(text.strip())
    if value is None or not 0.0 <= value <= 1.0:
        return None, ("%s must be a fraction between 0 and 1 (e.g. %s), got %r"
                      % (parameter, example, text))
    return value, None


def gate_sentence(label: str, top1: Optional[float], minimum: Optional[float],
                  profile: profiles.Profile) -> str:
    """The quality gate's verdict in words, naming what ``profile``'s build holds back."""
    gated = profiles.gated_work(profile)
    if minimum is None:
        return "Quality gate: not configured."
    if minimum == 0:
        return ("Quality gate: off (min_accuracy 0) — %s run whatever the accuracy."
                % gated)
    if top1 is None:
        return ("Quality gate: UNDECIDED — the %s top-1 accuracy could not be read, and "
                "min_accuracy %s needs it; nothing will be exported." % (label, pct(minimum, 1)))
    shown, threshold = pct_pair(top1, minimum)
    if top1 >= minimum:
        return ("Quality gate: PASSED — %s top-1 accuracy %s meets min_accuracy %s; %s will "
                "run." % (label, shown, threshold, gated))
    return ("Quality gate: FAILED — %s top-1 accuracy %s is below min_accuracy %s; %s will "
            "not run." % (label, shown, threshold, gated))


def confused_pairs(names: Sequence[str], matrix: List[List[int]]) -> List[Tuple[str, str, int,
                                                                                float]]:
    """Off-diagonal cells with images, most images first: (true, predicted, images, share of
    the true class's images); ties by the classes' order."""
    pairs = []
    for i, row in enumerate(matrix):
        support = sum(row)
        for j, count in enumerate(row):
            if i != j and count:
                pairs.append((-count, i, j, names[i], names[j], count, count / support))
    pairs.sort()
    return [p[3:] for p in pairs]


def matrix_markdown(label: str, names: Sequence[str], matrix: List[List[int]]) -> str:
    """The confusion matrix with class names, readable at card size: rows are numbered and
    named, the columns carry the same numbers (names as column heads would not fit)."""
    k = len(names)
    width = len(str(k))
    head = ["true \\ predicted"] + ["%0*d" % (width, j + 1) for j in range(k)]
    rows = [["**%0*d** %s" % (width, i + 1, md_escape(names[i]))]
            + [("**%d**" % n if i == j else str(n)) for j, n in enumerate(row)]
            for i, row in enumerate(matrix)]
    return ("### Confusion matrix: %s model\n\nRows: the true class; columns: the predicted "
            "class, numbered as the rows; the diagonal (bold) is correct.\n\n" % label
            + md_table(head, rows))


def handed_over(path: str) -> Tuple[List[dict], Optional[str]]:
    """The UI outputs a train step wrote with ``--hand-over``, or why there are none."""
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except FileNotFoundError:
        return [], "the train step wrote no report at %s" % path
    except (OSError, ValueError) as exc:
        return [], "the train step's report %s cannot be read (%s)" % (path, exc)
    outputs = document.get("outputs") if isinstance(document, dict) else None
    if not isinstance(outputs, list) or not all(
            isinstance(o, dict) and o.get("type") in ("markdown", "web-app")
            and o.get("storage") == "inline" and isinstance(o.get("source"), str)
            and o["source"].strip() for o in outputs):
        return [], "the train step's report %s is not one tao_step wrote" % path
    return outputs, None


def left_out_sentence(names: Sequence[str], quote: Callable[[str], str] = md_escape) -> str:
    """Which classes had no images and no predictions, so TAO's matrix left them out."""
    one = len(names) == 1
    shown = ", ".join(quote(n) for n in names[:10]) + (
        " and %d more" % (len(names) - 10) if len(names) > 10 else "")
    return ("No images of %s in the evaluation set, and the model never predicted %s: TAO's "
            "confusion matrix leaves %s out, so %s put back as %s of zeros (%s precision, "
            "recall and F1 count as 0 in the macro averages)." % (
                shown, "it" if one else "them", "it" if one else "them",
                "it is" if one else "they are", "a row and column" if one else "rows and "
                "columns", "its" if one else "their"))


def spec_top_k(path: str) -> Optional[int]:
    """eval_config.top_k of the spec, or None when the spec cannot be read."""
    try:
        from tao_step.specs import check_spec_file
        spec, _ = check_spec_file(path)
    except Exception:  # naming a metric must never fail the step
        return None
    if spec is None or not spec.has("eval_config.top_k"):
        return None
    value = spec.field("eval_config.top_k")[0]
    return value if isinstance(value, int) and value > 0 else None


def report_evaluate(args, output: str, out: Outputs) -> int:
    if args.top_k is None and args.spec:
        args.top_k = spec_top_k(args.spec)
    if args.training_report:
        out.ui.extend(_training_report(args.training_report, args.label))
    ev = parse.parse_evaluate(output)
    for problem in ev.problems:
        warn(problem)
    if ev.left_out:
        warn(left_out_sentence(ev.left_out, quote=repr))
    out.metric(top1_metric(args.label), ev.top1, PERCENTAGE)
    status = _apply_gate(args, ev, out)
    pairs = []  # type: list
    if ev.matrix is not None and ev.class_names is not None:
        pairs = confused_pairs(ev.class_names, ev.matrix)
    out.ui.append(kfp_ui.markdown(_evaluation_markdown(args, ev, pairs)))
    if ev.matrix is not None and ev.class_names is not None:
        out.ui.extend(_matrix_outputs(args.label, ev.class_names, ev.matrix, pairs))
    _keep_result(args, ev, pairs, out)
    if ev.class_stats and ev.class_names is not None:
        out.ui.append(_class_table(args.label, ev))
    return status


def _training_report(path: str, label: str) -> List[dict]:
    training, problem = handed_over(path)
    if problem:
        warn(problem)
        training = [kfp_ui.markdown("### Training: %s model\n\nNot shown: %s.\n"
                                    % (label, md_escape(problem)))]
    return training


def _apply_gate(args, ev: parse.Evaluation, out: Outputs) -> int:
    """Write the gate file's verdict; 1 when the gate cannot decide, else 0."""
    if not args.gate_file:
        return 0
    minimum = args.min_accuracy_value
    status = 0
    if ev.top1 is not None:
        passed = ev.top1 >= minimum
    elif minimum == 0:
        passed = True
        warn("top-1 accuracy unknown; min_accuracy is 0, so the quality gate passes")
    else:
        passed = False
        error("the quality gate needs the %s top-1 accuracy (min_accuracy %s) but it could "
              "not be read from the evaluate output; failing this step" % (args.label, minimum))
        status = 1
    out.files[args.gate_file] = "pass" if passed else "fail"
    return status


def _exact(ev: parse.Evaluation) -> bool:
    """Whether the per-class figures come from the matrix (else the 2-decimal report)."""
    return ev.macro_source == "confusion matrix"


def _class_count(ev: parse.Evaluation) -> Optional[int]:
    return len(ev.class_names) if ev.class_names else ev.classes_found


def _evaluation_markdown(args, ev: parse.Evaluation, pairs: list) -> str:
    """The figures, the same rows in the same order every run so runs compare line by line."""
    label, images, classes = args.label, ev.images, _class_count(ev)
    k_title = "Top-%d" % args.top_k if args.top_k else "Top-k"
    top1 = "unknown"
    if ev.top1 is not None:
        top1 = "**%s** (%d of %d images; from the %s)" % (
            pct(ev.top1), ev.correct, images, md_escape(ev.top1_source))
    macro = ["unknown"] * 3
    if ev.macro is not None:
        macro = ["%.4f" % v if _exact(ev) else "%.2f (2-decimal classification report)" % v
                 for v in ev.macro]
    rows = [("Top-1 accuracy", top1),
            ("%s accuracy (TAO's 'Evaluation Top K accuracy')" % k_title,
             pct(ev.topk) if ev.topk is not None else "unknown"),
            ("Loss", "%.4f" % ev.loss if ev.loss is not None else "unknown"),
            ("Macro precision", macro[0]), ("Macro recall", macro[1]), ("Macro F1", macro[2]),
            ("Classes", str(classes) if classes else "unknown"),
            ("Images", str(images) if images is not None else "unknown")]
    text = "### Evaluation: %s model\n\n" % label + md_table(("Measure", "Value"), rows)
    if args.gate_file:
        text += "\n" + gate_sentence(label, ev.top1, args.min_accuracy_value, args.profile) + "\n"
    if ev.left_out:
        text += "\n" + left_out_sentence(ev.left_out) + "\n"
    text += problems_markdown(ev.problems)
    names = ev.class_names
    if ev.matrix is not None and names is not None and len(names) > MARKDOWN_MATRIX_MAX_CLASSES:
        if pairs:
            text += ("\nWith %d classes the matrix is summarised by its most confused pairs "
                     "(table, at most %d).\n" % (len(names), MAX_CONFUSED_PAIRS))
        else:
            text += "\nEvery image was classified correctly: no class was confused.\n"
    return text


def _matrix_outputs(label: str, names: List[str], matrix: List[List[int]],
                    pairs: list) -> List[dict]:
    """The matrix as markdown, or its most confused pairs; and KFP's viewer where it fits."""
    outputs = []
    if len(names) <= MARKDOWN_MATRIX_MAX_CLASSES:
        outputs.append(kfp_ui.markdown(matrix_markdown(label, names, matrix)))
    elif pairs:
        shown = pairs[:MAX_CONFUSED_PAIRS]
        width = len(str(len(shown)))
        # PagedTable sorts by the first column as text: a zero-padded rank keeps the order.
        outputs.append(kfp_ui.table(
            ["rank (%s)" % label, "true class", "predicted as", "images",
             "share of the true class"],
            [("%0*d" % (width, n + 1), true, predicted, count, pct(share, 1))
             for n, (true, predicted, count, share) in enumerate(shown)]))
    # The UI looks labels up trimmed; duplicates or padded names would mislabel cells.
    # 15 px is the viewer's smallest cell: up to this many classes it fits a 400 px card.
    if len(names) > CONFUSION_VIEWER_MAX_CLASSES:
        pass
    elif len(set(names)) == len(names) and all(n == n.strip() for n in names):
        outputs.append(kfp_ui.confusion_matrix(names, matrix))
    else:
        warn("class names are not unique or have surrounding spaces; confusion matrix "
             "viewer not used")
    return outputs


def _keep_result(args, ev: parse.Evaluation, pairs: list, out: Outputs) -> None:
    """What the run's summary reads of this evaluation (``tao_step.results``)."""
    label, minimum, names = args.label, args.min_accuracy_value, ev.class_names
    out.result.update(
        label=label, top1=ev.top1, correct=ev.correct, images=ev.images,
        top1_source=ev.top1_source, top_k=args.top_k, topk=ev.topk, loss=ev.loss,
        classes=_class_count(ev) or None, problems=list(ev.problems),
        gate=None if not args.gate_file
        else {"min_accuracy": minimum, "verdict": out.files[args.gate_file],
              "sentence": gate_sentence(label, ev.top1, minimum, args.profile)})
    if ev.matrix is not None and names is not None:
        if len(names) <= MARKDOWN_MATRIX_MAX_CLASSES:
            out.result.update(class_names=names, matrix=ev.matrix)
        else:
            out.result["confused_pairs"] = [list(p) for p in pairs[:MAX_CONFUSED_PAIRS]]
    if ev.class_stats and names is not None:
        out.result.update(class_digits=4 if _exact(ev) else 2, class_stats=[
            [s.name, s.precision, s.recall, s.f1, s.support]
            for s in ev.class_stats[:MAX_CLASS_ROWS]])


def _class_table(label: str, ev: parse.Evaluation) -> dict:
    digits = 4 if _exact(ev) else 2
    # First column: the class name, in TAO's (sorted) class order, so the UI's sort by
    # the first column keeps it.
    return kfp_ui.table(
        ["class (%s)" % label, "precision", "recall", "f1-score", "support"],
        [(s.name, "%.*f" % (digits, s.precision), "%.*f" % (digits, s.recall),
          "%.*f" % (digits, s.f1), s.support) for s in ev.class_stats[:MAX_CLASS_ROWS]])
