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

Every KIND also keeps what it found for the run's summary (``tao_step.results``).
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, OrderedDict
from typing import Callable, List, Optional, Sequence, Tuple

from tao_step import form, kfp_ui, parse, profiles, results
from tao_step.chart import training_curves_html
from tao_step.kfp_ui import PERCENTAGE, md_escape, md_table

LABELS = ("baseline", "retrained")
MB = 1000.0 * 1000.0
REDACTED = "***"
# What evaluate publishes, capped so a large class count never means megabytes inline:
# the matrix as a markdown table up to this many classes (it fits a 400 px card) ...
MARKDOWN_MATRIX_MAX_CLASSES = 10
# ... above it, the most confused pairs instead;
MAX_CONFUSED_PAIRS = 30
# KFP's confusion_matrix viewer (cells of at least 15 px: 26 fit 400 px) up to this many;
CONFUSION_VIEWER_MAX_CLASSES = 26
# and the per-class table up to this many rows.
MAX_CLASS_ROWS = 1000
KEY_FLAGS = ("-k", "--key")
# The training curve's series the summary draws again.
CURVE_SERIES = ("loss", "val_loss", "acc", "val_acc")


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


# --------------------------------------------------------------------------- output

def _write_out(data: bytes) -> None:
    stream = getattr(sys.stdout, "buffer", None)
    if stream is None:  # a text-only stdout (some test harnesses)
        sys.stdout.write(data.decode("utf-8", "replace"))
        sys.stdout.flush()
        return
    sys.stdout.flush()
    stream.write(data)
    stream.flush()


# Keys to mask in everything we print (set by main from the command and the environment).
_SECRETS = []  # type: List[str]
# Where a --key-secret build puts the TAO key (Kubernetes expands $(TAO_API_KEY) from it).
KEY_ENV = form.KEY_ENV


def mask(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, REDACTED)
    return text


def say(message: str) -> None:
    # Encoded by hand: the TAO image may run with an ASCII locale.
    _write_out(("tao_step report: " + mask(message) + "\n").encode("utf-8", "replace"))


def warn(message: str) -> None:
    say("WARNING: " + message)


def error(message: str) -> None:
    say("ERROR: " + message)


def redact(command: Sequence[str]) -> List[str]:
    """The command with the TAO key replaced, for showing it (``-k K``, ``--key=K``, ``-kK``)."""
    shown, hide_next = [], False
    for arg in command:
        if hide_next:
            shown.append(REDACTED)
            hide_next = False
        elif arg in KEY_FLAGS:
            shown.append(arg)
            hide_next = True
        elif arg.startswith("--key="):
            shown.append("--key=" + REDACTED)
        elif arg.startswith("-k") and not arg.startswith("--"):
            shown.append("-k" + REDACTED)
        else:
            shown.append(arg)
    return shown


def secrets_in(command: Sequence[str]) -> List[str]:
    """The key values in ``command``; masked in the streamed output too, in case TAO echoes them."""
    values = []
    for i, arg in enumerate(command):
        if arg in KEY_FLAGS and i + 1 < len(command):
            values.append(command[i + 1])
        elif arg.startswith("--key="):
            values.append(arg[len("--key="):])
        elif arg.startswith("-k") and not arg.startswith("--") and len(arg) > 2:
            values.append(arg[2:])
    # A very short value would mask ordinary text; such a key is not worth hiding anyway.
    return [v for v in values if len(v) >= 4]


def key_outside_its_flag(argv: Sequence[str], key: str) -> bool:
    """Whether ``key`` appears anywhere in ``argv`` but as the value of ``-k``/``--key``: a
    path or name holding it would carry it into logs and file names."""
    hidden = [i + 1 for i, arg in enumerate(argv) if arg in KEY_FLAGS]
    return any(key in arg for i, arg in enumerate(argv)
               if i not in hidden and arg not in ("-k" + key, "--key=" + key))


def shown_command(command: Sequence[str]) -> str:
    """The command line to log: the key redacted, also where it is part of another argument."""
    line = " ".join(arg if REDACTED in arg else shlex.quote(arg) for arg in redact(command))
    for secret in secrets_in(command):
        line = line.replace(secret, REDACTED)
    return line


def run_streaming(command: Sequence[str], sink, secrets: Sequence[str] = (),
                  extra_env: Optional[dict] = None) -> Tuple[int, str]:
    """Run ``command`` and copy its merged stdout/stderr to ``sink`` (a binary stream) line by
    line as it arrives; return its exit status and the full output as text.

    The copy returned is what was written to ``sink`` except that ``secrets`` are masked
    in ``sink``. ``PYTHONUNBUFFERED`` makes TAO's Python print as it goes rather than in
    blocks. SIGTERM (pod deletion) is passed on to the command: as PID 1 of the container
    we would otherwise ignore it.
    """
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra_env or {})
    process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=env)
    masks = [(s.encode("utf-8"), REDACTED.encode("ascii")) for s in secrets]
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: process.terminate())
    except ValueError:  # not the main thread: nothing to forward from
        pass
    chunks = []
    try:
        for line in iter(process.stdout.readline, b""):
            chunks.append(line)
            for secret, mask in masks:
                line = line.replace(secret, mask)
            sink.write(line)
            sink.flush()
        process.stdout.close()
        status = process.wait()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return status, b"".join(chunks).decode("utf-8", "replace")


# TAO prints its confusion matrix with numpy, which abbreviates arrays of more than 1000
# cells ("..."). This startup hook, on the front of PYTHONPATH of the command evaluate
# runs, makes every Python process of it print arrays whole. It then runs the
# sitecustomize it shadows (Ubuntu's python ships one), so nothing of the image is lost.
NUMPY_HOOK = '''"""Written by tao_step report for one TAO command: numpy prints whole arrays."""
import os
import sys


def _tao_step_numpy_whole():
    try:
        import numpy
        numpy.set_printoptions(threshold=sys.maxsize, linewidth=2 ** 31 - 1)
    except Exception:  # no numpy, or an unexpected one: TAO runs as it would without us
        pass


def _tao_step_next_sitecustomize():
    import importlib.machinery
    import importlib.util
    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    globals().update((k, v) for k, v in vars(module).items() if not k.startswith("__"))


_tao_step_numpy_whole()
_tao_step_next_sitecustomize()
'''


def numpy_hook_env(folder: str) -> dict:
    """Write the hook into ``folder``; the environment that puts it first on PYTHONPATH,
    keeping the image's PYTHONPATH after it."""
    with open(os.path.join(folder, "sitecustomize.py"), "w", encoding="utf-8") as f:
        f.write(NUMPY_HOOK)
    existing = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": folder + (os.pathsep + existing if existing else "")}


class Outputs(object):
    """What one step publishes; written together at the end."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.metrics = []  # type: List[dict]
        self.ui = []  # type: List[dict]
        self.files = OrderedDict()  # type: OrderedDict
        # What the run's summary reads (tao_step.results): what the kind found.
        self.result = OrderedDict()  # type: OrderedDict

    def metric(self, name: str, value: Optional[float], fmt: str) -> None:
        if value is not None:
            self.metrics.append(kfp_ui.metric(name, value, fmt))

    def reset(self) -> None:
        """Remove what an earlier run left and write the pessimistic defaults now, so a
        crash part-way never leaves a stale number or a stale ``pass`` behind."""
        os.makedirs(self.out_dir, exist_ok=True)
        for name in (kfp_ui.METRICS_FILE, kfp_ui.UI_METADATA_FILE):
            path = os.path.join(self.out_dir, name)
            if os.path.exists(path):
                os.remove(path)
        self._write_files()

    def _write_files(self) -> None:
        for path, value in self.files.items():
            folder = os.path.dirname(os.path.abspath(path))
            os.makedirs(folder, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(value)

    def write(self) -> None:
        if self.metrics:
            kfp_ui.write_json(os.path.join(self.out_dir, kfp_ui.METRICS_FILE),
                              kfp_ui.metrics_document(self.metrics))
        kfp_ui.write_json(os.path.join(self.out_dir, kfp_ui.UI_METADATA_FILE),
                          kfp_ui.ui_metadata_document(self.ui))
        self._write_files()


# --------------------------------------------------------------------------- formatting

def pct(value: float, decimals: int = 2) -> str:
    return "%.*f%%" % (decimals, value * 100)


def pct_pair(value: float, threshold: float) -> Tuple[str, str]:
    """Both as percentages with enough decimals that unequal values never look equal."""
    decimals = 1
    while decimals < 6 and value != threshold and pct(value, decimals) == pct(threshold, decimals):
        decimals += 1
    return pct(value, decimals), pct(threshold, decimals)


def megabytes(size: Optional[int]) -> str:
    return "%.2f MB" % (size / MB) if size is not None else "-"


def md_code(text: str) -> str:
    return "`%s`" % text if "`" not in text else md_escape(text)


def problems_markdown(problems: Sequence[str]) -> str:
    if not problems:
        return ""
    return ("\n**Could not be read from the output, so not published:**\n\n"
            + "".join("- %s\n" % md_escape(p) for p in problems))


def path_size(path: str) -> Optional[int]:
    """Size of a file, or of all files under a folder; None if it does not exist."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, name))
                   for root, _, names in os.walk(path) for name in names)
    return None


def read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def parse_min_accuracy(text: Optional[str]) -> Tuple[Optional[float], Optional[str]]:
    if text is None:
        return None, None
    value = parse.finite(text.strip())
    if value is None or not 0.0 <= value <= 1.0:
        return None, ("min_accuracy must be a fraction between 0 and 1 (e.g. 0.9 for 90%%), "
                      "got %r" % text)
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


# --------------------------------------------------------------------------- kinds

def report_train(args, output: str, out: Outputs) -> int:
    csv_path = os.path.join(args.results_dir, "training.csv")
    notes = []  # why the curve is not (or not only) from training.csv
    curve = None
    if os.path.isfile(csv_path):
        last_epoch = parse.last_keras_epoch(output)
        if last_epoch is None:
            weights = os.path.join(args.results_dir, "weights")
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

    final = OrderedDict()  # type: OrderedDict
    for key, label, series in (("acc", "Total Val accuracy:", "val_acc"),
                               ("loss", "Total Val Loss:", "val_loss")):
        value = parse.last_value(output, label)
        source = "TAO's '%s'" % label.rstrip(":")
        if value is None and curve is not None:
            value, source = curve.last(series), "the last epoch in " + curve.source
        if key == "acc":
            value = parse.fraction(value)
        final[key] = (value, source)
        if value is None:
            warn("no final validation %s in the output or the curve"
                 % ("accuracy" if key == "acc" else "loss"))

    acc, acc_source = final["acc"]
    loss, loss_source = final["loss"]
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
            name: curve.series[name] for name in CURVE_SERIES if name in curve.series}})
    if curve is not None:
        title = "Training curve: %s model" % args.label
        out.ui.append(kfp_ui.web_app(training_curves_html(
            curve, title, "Train (solid) and validation (dashed) per epoch, from %s."
            % curve.source)))
    return 0


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


def report_evaluate(args, output: str, out: Outputs) -> int:
    if args.training_report:
        training, problem = handed_over(args.training_report)
        if problem:
            warn(problem)
            training = [kfp_ui.markdown("### Training: %s model\n\nNot shown: %s.\n"
                                        % (args.label, md_escape(problem)))]
        out.ui.extend(training)
    ev = parse.parse_evaluate(output)
    label = args.label
    k_title = "Top-%d" % args.top_k if args.top_k else "Top-k"
    for problem in ev.problems:
        warn(problem)
    if ev.left_out:
        warn(left_out_sentence(ev.left_out, quote=repr))

    out.metric(top1_metric(label), ev.top1, PERCENTAGE)

    status = 0
    minimum = args.min_accuracy_value
    if args.gate_file:
        if ev.top1 is not None:
            passed = ev.top1 >= minimum
        elif minimum == 0:
            passed = True
            warn("top-1 accuracy unknown; min_accuracy is 0, so the quality gate passes")
        else:
            passed = False
            error("the quality gate needs the %s top-1 accuracy (min_accuracy %s) but it could "
                  "not be read from the evaluate output; failing this step" % (label, minimum))
            status = 1
        out.files[args.gate_file] = "pass" if passed else "fail"

    images = ev.images
    top1 = "unknown"
    if ev.top1 is not None:
        top1 = "**%s** (%d of %d images; from the %s)" % (
            pct(ev.top1), ev.correct, images, md_escape(ev.top1_source))
    exact = ev.macro_source == "confusion matrix"
    macro = ["unknown"] * 3
    if ev.macro is not None:
        macro = ["%.4f" % v if exact else "%.2f (2-decimal classification report)" % v
                 for v in ev.macro]
    classes = len(ev.class_names) if ev.class_names else ev.classes_found
    # The same rows in the same order every run, so runs compare line by line.
    rows = [("Top-1 accuracy", top1),
            ("%s accuracy (TAO's 'Evaluation Top K accuracy')" % k_title,
             pct(ev.topk) if ev.topk is not None else "unknown"),
            ("Loss", "%.4f" % ev.loss if ev.loss is not None else "unknown"),
            ("Macro precision", macro[0]), ("Macro recall", macro[1]), ("Macro F1", macro[2]),
            ("Classes", str(classes) if classes else "unknown"),
            ("Images", str(images) if images is not None else "unknown")]
    text = "### Evaluation: %s model\n\n" % label + md_table(("Measure", "Value"), rows)
    if args.gate_file:
        text += "\n" + gate_sentence(label, ev.top1, minimum, args.profile) + "\n"
    if ev.left_out:
        text += "\n" + left_out_sentence(ev.left_out) + "\n"
    text += problems_markdown(ev.problems)
    names = ev.class_names
    pairs = []  # type: list
    if ev.matrix is not None and names is not None:
        pairs = confused_pairs(names, ev.matrix)
        if len(names) <= MARKDOWN_MATRIX_MAX_CLASSES:
            pass
        elif pairs:
            text += ("\nWith %d classes the matrix is summarised by its most confused pairs "
                     "(table, at most %d).\n" % (len(names), MAX_CONFUSED_PAIRS))
        else:
            text += "\nEvery image was classified correctly: no class was confused.\n"
    out.ui.append(kfp_ui.markdown(text))

    if ev.matrix is not None and names is not None:
        if len(names) <= MARKDOWN_MATRIX_MAX_CLASSES:
            out.ui.append(kfp_ui.markdown(matrix_markdown(label, names, ev.matrix)))
        elif pairs:
            shown = pairs[:MAX_CONFUSED_PAIRS]
            width = len(str(len(shown)))
            # PagedTable sorts by the first column as text: a zero-padded rank keeps the order.
            out.ui.append(kfp_ui.table(
                ["rank (%s)" % label, "true class", "predicted as", "images",
                 "share of the true class"],
                [("%0*d" % (width, n + 1), true, predicted, count, pct(share, 1))
                 for n, (true, predicted, count, share) in enumerate(shown)]))
        # The UI looks labels up trimmed; duplicates or padded names would mislabel cells.
        # 15 px is the viewer's smallest cell: up to this many classes it fits a 400 px card.
        if len(names) > CONFUSION_VIEWER_MAX_CLASSES:
            pass
        elif len(set(names)) == len(names) and all(n == n.strip() for n in names):
            out.ui.append(kfp_ui.confusion_matrix(names, ev.matrix))
        else:
            warn("class names are not unique or have surrounding spaces; confusion matrix "
                 "viewer not used")
    out.result.update(
        label=label, top1=ev.top1, correct=ev.correct, images=images,
        top1_source=ev.top1_source, top_k=args.top_k, topk=ev.topk, loss=ev.loss,
        classes=classes or None, problems=list(ev.problems), gate=None if not args.gate_file
        else {"min_accuracy": minimum, "verdict": out.files[args.gate_file],
              "sentence": gate_sentence(label, ev.top1, minimum, args.profile)})
    if ev.matrix is not None and names is not None:
        if len(names) <= MARKDOWN_MATRIX_MAX_CLASSES:
            out.result.update(class_names=names, matrix=ev.matrix)
        else:
            out.result["confused_pairs"] = [list(p) for p in pairs[:MAX_CONFUSED_PAIRS]]
    if ev.class_stats and ev.class_names is not None:
        digits = 4 if exact else 2
        stats = ev.class_stats[:MAX_CLASS_ROWS]
        out.result.update(class_digits=digits, class_stats=[
            [s.name, s.precision, s.recall, s.f1, s.support] for s in stats])
        # First column: the class name, in TAO's (sorted) class order, so the UI's sort by
        # the first column keeps it.
        out.ui.append(kfp_ui.table(
            ["class (%s)" % label, "precision", "recall", "f1-score", "support"],
            [(s.name, "%.*f" % (digits, s.precision), "%.*f" % (digits, s.recall),
              "%.*f" % (digits, s.f1), s.support) for s in stats]))
    return status


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
    def __init__(self, report: Callable[..., int], publishes: bool = True):
        self.report = report
        self.publishes = publishes


def report_nothing(args, output: str, out: Outputs) -> int:
    return 0


KINDS = OrderedDict([
    ("run", Kind(report_nothing, publishes=False)),
    ("train", Kind(report_train)),
    ("evaluate", Kind(report_evaluate)),
    ("prune", Kind(report_prune)),
    ("inference", Kind(report_inference)),
    ("convert", Kind(report_convert)),
])


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def keep_previous(paths: Sequence[str]) -> Optional[str]:
    """The re-run policy: TAO refuses to overwrite some outputs and silently overwrites
    others, so what an earlier run left at a step's output paths is renamed, on the same
    filesystem, to ``<path>.previous-<UTC time>`` before the step runs. Returns a problem."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for path in paths:
        path = path.rstrip("/")
        if not os.path.lexists(path):
            continue
        target, n = "%s.previous-%s" % (path, stamp), 1
        while os.path.lexists(target):
            n += 1
            target = "%s.previous-%s-%d" % (path, stamp, n)
        try:
            os.rename(path, target)
        except OSError as exc:
            return ("cannot move the earlier run's %s aside (%s): free it or point the "
                    "output parameter elsewhere" % (path, exc.strerror))
        say("kept the earlier run's %s as %s" % (path, target))
    return None


def status_json_size(path: Optional[str]) -> int:
    """Bytes already in a status.json before the command runs (TAO 5 appends to it)."""
    try:
        return os.path.getsize(path) if path else 0
    except OSError:
        return 0


def recorded_failure(path: Optional[str], start: int) -> Optional[str]:
    """The message of the first FAILURE line the command appended to ``path`` (TAO 5's
    status.json: JSON lines with "status" and "message"), or None.

    Some TAO 5 scripts catch their own exit, record FAILURE and end with "Execution
    status: PASS" and status 0, so the exit status alone would call them a success.
    """
    if not path or not os.path.isfile(path):
        return None
    with open(path, "rb") as handle:
        handle.seek(start if start <= os.path.getsize(path) else 0)
        lines = handle.read().decode("utf-8", "replace").splitlines()
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("status") == "FAILURE":
            return str(record.get("message") or "no message")
    return None


def claim_outputs(paths: Sequence[str]) -> Optional[str]:
    """Re-take the run's claim on what this step writes (a KFP Retry resumes a run whose
    first attempt released it); the refusal when another run holds any of it, else None."""
    from tao_step import claims
    workspace, run, uid = (os.environ.get(name, "") for name in claims.RUN_ENV)
    if not (workspace and run and uid):
        return None
    relative = [os.path.relpath(path.rstrip("/"), workspace) for path in paths]
    relative = [path for path in relative if not path.startswith("..")]
    if not relative:
        return None
    try:
        conflicts, damaged = claims.take(workspace, run, uid, relative)
    except claims.ClaimError as exc:
        return str(exc)
    for item in damaged:
        warn(item.describe())
    if not conflicts:
        return None
    mine, other, theirs = conflicts[0]
    return ("%s is being written by %s (its output %s); nothing was run or moved: wait for "
            "that run, or if it no longer exists release its claim: python3 -m tao_step "
            "release --workspace %s --run %s" % (mine, other.describe(), theirs, workspace,
                                                 other.workflow))


def ngc_model_folder(args) -> List[str]:
    if getattr(args, "ngc_model", None) and getattr(args, "ngc_dest", None):
        from tao_step.preflight import ngc_download_dir
        folder = ngc_download_dir(args.ngc_dest, args.ngc_model)
        return [folder] if folder else []
    return []


def ngc_org_env(args) -> dict:
    """With an NGC API key but no NGC_CLI_ORG, the NGC CLI authenticates against no org and
    cannot see a private model: use the model's own org (org/[team/]model:version)."""
    model = getattr(args, "ngc_model", None)
    if not model or not os.environ.get("NGC_CLI_API_KEY") or os.environ.get("NGC_CLI_ORG"):
        return {}
    return {"NGC_CLI_ORG": model.split("/", 1)[0]} if "/" in model else {}


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

    return parser


def _check(args) -> Optional[str]:
    """Problems with the options that must stop us before TAO spends any GPU time."""
    args.profile = profiles.get(getattr(args, "tao_version", profiles.DEFAULT_VERSION))
    args.min_accuracy_value, problem = parse_min_accuracy(getattr(args, "min_accuracy", None))
    if problem:
        return problem
    if args.kind == "evaluate" and bool(args.gate_file) != (args.min_accuracy is not None):
        return "--gate-file and --min-accuracy go together"
    return None


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    command = None  # type: Optional[List[str]]
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1:]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # bad options (2) or --help (0)
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.kind is None:
        parser.print_usage(sys.stderr)
        return 2
    kind = KINDS[args.kind]
    key = os.environ.get(KEY_ENV, "")
    _SECRETS[:] = sorted(set(secrets_in(command or []) + ([key] if key else [])),
                         key=len, reverse=True)
    if key and key_outside_its_flag(argv + (command or []), key):
        error("an argument other than the TAO key itself contains the key (from the Secret, "
              "expanded by Kubernetes); nothing was run: take the key out of the Create Run "
              "values (preflight refuses them)")
        return 2
    problem = _check(args)
    if problem is None and not command:
        problem = "%s needs the TAO command after --" % args.kind
    if problem:
        error(problem)
        return 2

    out = Outputs(args.out_dir)
    if getattr(args, "gate_file", None):
        out.files[args.gate_file] = "fail"
    out.reset()
    forgotten = results.forget()
    if forgotten:
        warn(forgotten)
    if getattr(args, "hand_over", None) and os.path.exists(args.hand_over):
        os.remove(args.hand_over)  # ours, from an earlier run: never shown as this run's

    missing = [path for path in args.require if not os.path.exists(path)]
    if missing:
        error("%s does not exist; this step needs it and TAO would carry on without it "
              "(e.g. INT8 calibration on random data): run the step that writes it first"
              % missing[0])
        return 1
    refused = claim_outputs(args.keep_previous + ngc_model_folder(args))
    if refused is not None:
        error(refused)
        return 1
    kept = keep_previous(args.keep_previous + ngc_model_folder(args))
    if kept is not None:
        error(kept)
        return 1
    status_start = status_json_size(args.status_json)
    if args.kind == "evaluate" and args.top_k is None and args.spec:
        args.top_k = spec_top_k(args.spec)

    say("running: " + shown_command(command))
    env = ngc_org_env(args)
    hook_dir = None
    if args.kind == "evaluate":
        hook_dir = tempfile.mkdtemp(prefix="tao_step-numpy-")
        env.update(numpy_hook_env(hook_dir))
    try:
        status, output = run_streaming(command, getattr(sys.stdout, "buffer", sys.stdout),
                                       _SECRETS, extra_env=env)
    except OSError as exc:
        missing = isinstance(exc, FileNotFoundError)
        error("%s: %s" % ("command not found" if missing else "cannot run",
                          shlex.quote(command[0])))
        return 127 if missing else 126
    finally:
        if hook_dir:
            shutil.rmtree(hook_dir, ignore_errors=True)
    if status != 0:
        code = status if status > 0 else 128 - status  # killed by a signal: 128 + N
        error("%s exited with status %d; nothing is published"
              % (shlex.quote(command[0]), code))
        return code
    failure = recorded_failure(args.status_json, status_start)
    if failure is not None:
        error("%s exited 0 but recorded a failure in %s: %s; nothing is published"
              % (shlex.quote(command[0]), args.status_json, failure))
        return 1
    crash = parse.crash_line(output)
    if crash:
        error("%s exited with status 0 but printed %r: it failed, so this step fails "
              "and nothing read from its output is published"
              % (shlex.quote(command[0]), crash))
        return 1
    status = kind.report(args, output, out)
    if kind.publishes:
        out.write()
    wrote = args.keep_previous + ngc_model_folder(args) + (
        [args.status_json] if args.status_json else [])
    kept = results.keep(dict(out.result, kind=args.kind, status=status, wrote=wrote))
    if kept:
        warn(kept)
    if getattr(args, "hand_over", None):
        os.makedirs(os.path.dirname(os.path.abspath(args.hand_over)), exist_ok=True)
        kfp_ui.write_json(args.hand_over, kfp_ui.ui_metadata_document(out.ui))
    return status
