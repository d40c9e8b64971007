"""``python3 -m tao_step report KIND [options] -- COMMAND [ARGS...]``: run a TAO command
and publish what it produced to the KFP v1 UI.

COMMAND runs without a shell; its stdout and stderr are copied line by line to our stdout
as they arrive (the KFP step log) and kept for parsing. Its exit status becomes ours (127
if it cannot be found). Only after it succeeded are its results parsed and written to
``--out-dir``: ``mlpipeline-metrics.json`` (when there are metrics),
``mlpipeline-ui-metadata.json`` and small plain-text files for the pipeline's conditions.
A number that cannot be read with certainty is not published: the UI says so in words
and the log gets a WARNING line. The value after ``-k``/``--key`` (the TAO key) and the key
in ``$TAO_API_KEY`` are never printed: masked in every line we print or stream; with the
latter set, a step whose other arguments hold the key (a path that would name a file after
it) is refused before anything runs.

KINDs (``python3 -m tao_step report KIND --help`` for the options):
  train      after ``classification train``: training curve, final validation metrics
  evaluate   after ``classification evaluate``: accuracy, confusion matrix, per-class
             table, and the quality gate file
  prune      after ``classification prune``: pruning ratio, model sizes
  inference  after ``classification inference -d DIR``: predictions from DIR/result.csv
  convert    after ``converter``: the TensorRT engine's path, precision and size
  engine     after TAO Deploy's ``evaluate -m ENGINE``: the engine's top-1 accuracy next to
             the retrained model's, failing when it loses more than --max-drop

The command runs under ``tao_step.guard`` (required inputs, the claim, the re-run policy,
streaming, status.json and crash detection); this module reads what it produced, per KIND,
and publishes it (``tao_step.publish``; evaluate's in ``tao_step.evaluate_report``).
"""

import argparse
import os
import sys
from collections import Counter, OrderedDict
from typing import Callable, List, Optional, Sequence, Tuple

from tao_step import guard, kfp_ui, parse, profiles, results
from tao_step.chart import training_curves_html
from tao_step.console import KEY_ENV, error, protect_key, warn
from tao_step.engine_report import report_engine
from tao_step.evaluate_report import parse_fraction_option, report_evaluate
from tao_step.kfp_ui import md_escape, md_table
from tao_step.publish import (
    Outputs,
    md_code,
    megabytes,
    path_size,
    pct,
    problems_markdown,
    read_text,
)

LABELS = ("baseline", "retrained")


# --------------------------------------------------------------------------- kinds

def report_train(args, output: str, out: Outputs) -> int:
    curve, notes = _training_curve(args.results_dir, output)
    (acc, acc_source), (loss, loss_source) = _final_validation(output, curve)
    rows = [("Final validation accuracy",
             "%s (from %s)" % (pct(acc), md_escape(acc_source)) if acc is not None else "unknown"),
            ("Final validation loss",
             "%.4f (from %s)" % (loss, md_escape(loss_source)) if loss is not None
             else "unknown")]
    if curve is not None:
        rows.append(("Epochs", "%d (curve from %s)" % (len(curve.epochs), md_escape(curve.source))))
    text = "### Training: %s model\n\n" % args.label + md_table(("Measure", "Value"), rows)
    if curve is not None and curve.epoch_note:
        warn(curve.epoch_note)
        text += "\nNote: %s.\n" % md_escape(curve.epoch_note)
    if curve is None:
        text += "\nTraining curve unavailable: %s.\n" % md_escape("; ".join(notes))
    elif notes:
        text += "\nThe curve comes from the log because %s.\n" % md_escape("; ".join(notes))
    out.ui.append(kfp_ui.markdown(text))
    out.result.update(label=args.label, final_accuracy=acc, final_loss=loss, curve=None if (
        curve is None) else {"epochs": curve.epochs, "source": curve.source, "series": {
            name: curve.series[name] for name in parse.SERIES if name in curve.series}})
    if curve is not None:
        title = "Training curve: %s model" % args.label
        out.ui.append(kfp_ui.web_app(training_curves_html(
            curve, title, "Train (solid) and validation (dashed) per epoch, from %s."
            % curve.source)))
    return 0


def _training_curve(results_dir: str, output: str
                    ) -> Tuple[Optional[parse.TrainingCurve], List[str]]:
    """The curve from ``training.csv``, else from the log's Keras lines; and why it is not
    (or not only) from training.csv."""
    csv_path = os.path.join(results_dir, "training.csv")
    notes = []  # type: List[str]
    curve = None
    if os.path.isfile(csv_path):
        last_epoch = parse.last_keras_epoch(output)
        if last_epoch is None:
            weights = os.path.join(results_dir, "weights")
            last_epoch = parse.last_checkpoint_epoch(
                os.listdir(weights) if os.path.isdir(weights) else [])
        curve, problem = parse.parse_training_csv(read_text(csv_path), last_epoch)
        if curve is not None and not curve.has_points():
            curve, problem = None, "%s has no values" % csv_path
        if problem:
            notes.append(problem)
    else:
        notes.append("there is no %s" % csv_path)
    if curve is None:
        curve, problem = parse.parse_training_log(output)
        if problem:
            notes.append(problem)
    if curve is None:
        warn("training curve unavailable: " + "; ".join(notes))
    return curve, notes


def _final_validation(output: str, curve: Optional[parse.TrainingCurve]) -> List[tuple]:
    """``[(accuracy, its source), (loss, its source)]``: TAO's final lines, else the
    curve's last epoch."""
    final = []
    for key, label, series in (("acc", "Total Val accuracy:", "val_acc"),
                               ("loss", "Total Val Loss:", "val_loss")):
        value = parse.last_value(output, label)
        source = "TAO's '%s'" % label.rstrip(":")
        if value is None and curve is not None:
            value, source = curve.last(series), "the last epoch in " + curve.source
        if key == "acc":
            value = parse.fraction(value)
        final.append((value, source))
        if value is None:
            warn("no final validation %s in the output or the curve"
                 % ("accuracy" if key == "acc" else "loss"))
    return final


def report_prune(args, output: str, out: Outputs) -> int:
    ratio = parse.parse_pruning_ratio(output)
    if ratio is None:
        warn("no 'Pruning ratio (pruned model / original model):' line in the output")
    size_in, size_out = path_size(args.input_model), path_size(args.output_model)
    reduction = 1 - size_out / size_in if size_in and size_out else None
    out.result.update(ratio=ratio, input_model=args.input_model, input_size=size_in,
                      output_model=args.output_model, output_size=size_out)
    rows = [("Pruning ratio (pruned / original model)",
             "%.4f" % ratio if ratio is not None else "unknown"),
            ("Original model", "%s, %s" % (md_code(args.input_model), megabytes(size_in))),
            ("Pruned model", "%s, %s" % (md_code(args.output_model), megabytes(size_out))),
            ("Size reduction", pct(reduction, 1) if reduction is not None else "unknown")]
    text = "### Pruning\n\n" + md_table(("Measure", "Value"), rows)
    status = 0
    if not size_out:
        error("prune reported success but %s is missing or empty" % args.output_model)
        text += "\n**The pruned model was not written**, although prune reported success.\n"
        status = 1
    if ratio is None:
        text += problems_markdown(["the pruning ratio line"])
    out.ui.append(kfp_ui.markdown(text))
    return status


def shown_image_path(path: str, image_dir: str) -> str:
    if os.path.isabs(path):
        relative = os.path.relpath(path, os.path.abspath(image_dir))
        if not relative.startswith(os.pardir):
            return relative
    return path


def report_inference(args, output: str, out: Outputs) -> int:
    """The predictions in ``<image dir>/result.csv``. The re-run policy moved an earlier
    run's file aside, so a missing or empty one means this run classified nothing although
    TAO exited 0: the step fails. TAO 5's inference does exactly that on a SystemExit,
    which its main() catches, and, given -r, on a folder without images (it records
    FAILURE in <r>/status.json and returns: tao_tensorflow1_backend@d73dcfc
    makenet/scripts/inference.py lines 305-311 and 359-364); the pipeline gives it no -r,
    so no status.json says so."""
    path = os.path.join(args.image_dir, "result.csv")
    title = "### Inference on %s\n\n" % md_code(args.image_dir)
    out.result.update(image_dir=args.image_dir, images=0, counts=[])
    if not os.path.isfile(path):
        error("inference exited 0 but wrote no %s: it classified nothing, so this step fails"
              % path)
        out.ui.append(kfp_ui.markdown(title + "**Inference exited 0 but wrote no "
                                      "`result.csv`**: it classified nothing.\n"))
        return 1
    predictions, skipped = parse.parse_inference_csv(read_text(path))
    if skipped:
        warn("skipped %d malformed rows of %s" % (skipped, path))
    if not predictions and not skipped:
        error("inference exited 0 but %s holds no predictions: it classified nothing, so "
              "this step fails" % path)
        out.ui.append(kfp_ui.markdown(title + "**Inference exited 0 but `result.csv` holds "
                                      "no predictions**: it classified nothing.\n"))
        return 1
    if not predictions:
        warn("%s has no readable predictions" % path)
        out.ui.append(kfp_ui.markdown(title + "`result.csv` has no readable predictions.\n"))
        return 0
    total = len(predictions)
    counts = Counter(p.class_name for p in predictions)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    out.result.update(images=total, counts=[list(item) for item in ranked], skipped=skipped)
    text = title + "%d images classified into %d classes (%s).\n" % (
        total, len(counts), ", ".join("%s: %d" % (md_escape(name), n) for name, n in ranked))
    if total > args.max_rows:
        text += ("\nThe predictions table is truncated: it shows the first %d of %d rows of "
                 "`result.csv`.\n" % (args.max_rows, total))
    if skipped:
        text += "\n%d malformed rows of `result.csv` were skipped.\n" % skipped
    out.ui.append(kfp_ui.markdown(text))
    out.ui.append(kfp_ui.table(
        ["image", "predicted class", "confidence"],
        [(shown_image_path(p.image, args.image_dir), p.class_name,
          "%.4f" % p.confidence if p.confidence is not None else "")
         for p in predictions[:args.max_rows]]))
    width = len(str(len(ranked)))
    # PagedTable sorts by the first column as text: a zero-padded rank keeps the ranking.
    out.ui.append(kfp_ui.table(["rank", "predicted class", "images", "share"],
                               [("%0*d" % (width, n + 1), name, count, pct(count / total, 1))
                                for n, (name, count) in enumerate(ranked)]))
    return 0


def report_convert(args, output: str, out: Outputs) -> int:
    size = path_size(args.engine)
    out.result.update(engine=args.engine, precision=args.precision, size=size)
    rows = [("Engine", md_code(args.engine)), ("Precision", args.precision.upper()),
            ("Size", megabytes(size) if size else "not written")]
    text = "### TensorRT engine\n\n" + md_table(("Measure", "Value"), rows)
    if not size:
        error("the converter reported success but wrote no engine at %s" % args.engine)
        out.ui.append(kfp_ui.markdown(
            text + "\n**The converter reported success but wrote no engine.**\n"))
        return 1
    out.ui.append(kfp_ui.markdown(text))
    return 0


# --------------------------------------------------------------------------- command line

class Kind(object):
    """How a KIND reports: its reader, whether it publishes UI files, and whether its command
    runs with numpy printing whole arrays (evaluate's confusion matrix)."""

    def __init__(self, report: Callable[..., int], publishes: bool = True,
                 whole_arrays: bool = False):
        self.report = report
        self.publishes = publishes
        self.whole_arrays = whole_arrays


def report_nothing(args, output: str, out: Outputs) -> int:
    return 0


KINDS = OrderedDict([
    ("run", Kind(report_nothing, publishes=False)),
    ("train", Kind(report_train)),
    ("evaluate", Kind(report_evaluate, whole_arrays=True)),
    ("prune", Kind(report_prune)),
    ("inference", Kind(report_inference)),
    ("convert", Kind(report_convert)),
    ("engine", Kind(report_engine, whole_arrays=True)),
])


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def release_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tao-version", choices=tuple(profiles.PROFILES),
                        default=profiles.DEFAULT_VERSION,
                        help="the TAO release the pipeline runs (what its quality gate "
                             "holds back)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m tao_step report", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest="kind", metavar="KIND")

    def kind(name: str, summary: str) -> argparse.ArgumentParser:
        usage = "python3 -m tao_step report %s [options] -- COMMAND [ARGS...]" % name
        sub = kinds.add_parser(name, help=summary, description=summary, usage=usage)
        sub.add_argument("--out-dir", required=True,
                         help="where the mlpipeline-*.json files and plain-text outputs go")
        sub.add_argument("--keep-previous", action="append", default=[], metavar="PATH",
                         help="before running, move what an earlier run left at PATH to "
                              "PATH.previous-<UTC time> (repeatable); nothing is deleted")
        sub.add_argument("--require", action="append", default=[], metavar="PATH",
                         help="refuse to run the command unless PATH exists (repeatable): "
                              "an input whose absence TAO would not report")
        sub.add_argument("--status-json", metavar="PATH",
                         help="the status.json TAO 5 appends to: the step fails if the "
                              "command recorded a FAILURE there, even when it exited 0")
        sub.add_argument("--switch", action="append", default=[], metavar="FLAG=VALUE",
                         help="add --FLAG to the command after its subtask when VALUE is "
                              "'true' (a form switch; 'false' adds nothing; repeatable)")
        return sub

    sub = kind("run", "run a command with the re-run policy, publishing nothing")
    sub.add_argument("--ngc-model", help="with --ngc-dest: keep the folder ngc will download "
                                         "this model into (org/team/model:version)")
    sub.add_argument("--ngc-dest", help="ngc's --dest")

    sub = kind("train", "report a classification train run")
    sub.add_argument("--results-dir", required=True, help="train's -r folder (has training.csv)")
    sub.add_argument("--label", required=True, choices=LABELS)
    sub.add_argument("--hand-over", metavar="FILE",
                     help="also write the UI outputs to FILE, for the evaluate step to "
                          "publish (evaluate --training-report)")

    sub = kind("evaluate", "report a classification evaluate run and apply the quality gate")
    sub.add_argument("--label", required=True, choices=LABELS)
    sub.add_argument("--top-k", type=_positive_int, help="eval_config.top_k, to name top-k")
    sub.add_argument("--spec", help="the spec evaluate reads; its eval_config.top_k names "
                                    "top-k when --top-k is not given")
    sub.add_argument("--min-accuracy", help="quality gate threshold, a fraction in [0, 1]")
    release_option(sub)
    sub.add_argument("--gate-file", help="write 'pass' or 'fail' here (needs --min-accuracy)")
    sub.add_argument("--training-report", metavar="FILE",
                     help="publish first the train step's report it wrote to FILE "
                          "(train --hand-over)")

    sub = kind("prune", "report a classification prune run")
    sub.add_argument("--input-model", required=True, help="prune's -m")
    sub.add_argument("--output-model", required=True, help="prune's -o")

    sub = kind("inference", "report a classification inference run over a folder")
    sub.add_argument("--image-dir", required=True, help="inference's -d (has result.csv)")
    sub.add_argument("--max-rows", type=_positive_int, default=50,
                     help="predictions shown in the table (default 50)")

    sub = kind("convert", "report a TensorRT converter run")
    sub.add_argument("--engine", required=True, help="converter's -e")
    sub.add_argument("--precision", required=True, type=str.lower,
                     choices=("fp32", "fp16", "int8"), help="converter's -t")

    sub = kind("engine", "report TAO Deploy's evaluate of a TensorRT engine and apply the "
                         "engine's accuracy gate")
    sub.add_argument("--engine", required=True, help="evaluate's -m (the engine)")
    sub.add_argument("--precision", required=True, type=str.lower,
                     choices=("fp32", "fp16", "int8"), help="the engine's precision")
    sub.add_argument("--max-drop", help="the top-1 accuracy the engine may lose against the "
                                        "retrained model, a fraction in [0, 1]")

    return parser


def _check(args) -> Optional[str]:
    """Problems with the options that must stop us before TAO spends any GPU time."""
    args.profile = profiles.get(getattr(args, "tao_version", profiles.DEFAULT_VERSION))
    args.min_accuracy_value, problem = parse_fraction_option(
        getattr(args, "min_accuracy", None), "min_accuracy", "0.9 for 90%")
    if problem:
        return problem
    args.max_drop_value, problem = parse_fraction_option(
        getattr(args, "max_drop", None), "max_engine_accuracy_drop", "0.01 for one point")
    if problem:
        return problem
    if args.kind == "evaluate" and bool(args.gate_file) != (args.min_accuracy is not None):
        return "--gate-file and --min-accuracy go together"
    return None


def main(argv: Sequence[str]) -> int:
    args, command, status = _command_line(argv)
    if args is None:
        return status
    kind = KINDS[args.kind]
    command, problem = guard.with_switches(command, args.switch)
    if problem:
        error(problem)
        return 2
    out = _fresh_outputs(args)
    outputs = args.keep_previous + guard.ngc_model_folder(args)
    status, output = guard.run_guarded(
        command, require=args.require, outputs=outputs, status_json=args.status_json,
        env=guard.ngc_org_env(args), whole_arrays=kind.whole_arrays)
    if status != 0:
        return status
    status = kind.report(args, output, out)
    _publish(args, kind, out, status, outputs)
    return status


def _command_line(argv: Sequence[str]) -> Tuple[Optional[argparse.Namespace], List[str], int]:
    """``(options, command, 0)``, or ``(None, [], exit status)`` once they were refused: a
    usage error (2), or ``--help`` (0)."""
    argv = list(argv)
    command = []  # type: List[str]
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1:]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # bad options (2) or --help (0)
        return None, [], exit_.code if isinstance(exit_.code, int) else 2
    if args.kind is None:
        parser.print_usage(sys.stderr)
        return None, [], 2
    problem = protect_key(argv, command, os.environ.get(KEY_ENV, ""))
    if problem is None:
        problem = _check(args)
        if problem is None and not command:
            problem = "%s needs the TAO command after --" % args.kind
    if problem:
        error(problem)
        return None, [], 2
    return args, command, 0


def _fresh_outputs(args) -> Outputs:
    """The step's outputs, reset to the pessimistic defaults before anything runs, and the
    results an earlier run kept forgotten."""
    out = Outputs(args.out_dir)
    if getattr(args, "gate_file", None):
        out.files[args.gate_file] = "fail"
    out.reset()
    forgotten = results.forget()
    if forgotten:
        warn(forgotten)
    if getattr(args, "hand_over", None) and os.path.exists(args.hand_over):
        os.remove(args.hand_over)  # ours, from an earlier run: never shown as this run's
    return out


def _publish(args, kind: Kind, out: Outputs, status: int, outputs: List[str]) -> None:
    """Write what the kind found: the UI files, what the summary reads, the hand-over."""
    if kind.publishes:
        out.write()
    wrote = outputs + ([args.status_json] if args.status_json else [])
    kept = results.keep(dict(out.result, kind=args.kind, status=status, wrote=wrote))
    if kept:
        warn(kept)
    if getattr(args, "hand_over", None):
        os.makedirs(os.path.dirname(os.path.abspath(args.hand_over)), exist_ok=True)
        kfp_ui.write_json(args.hand_over, kfp_ui.ui_metadata_document(out.ui))
