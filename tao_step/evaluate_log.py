"""Reading what ``classification evaluate`` printed: the confusion matrix, scikit-learn's
classification report, and the top-1 accuracy derived from them.

The top-1 accuracy is the matrix's trace over its total, published only when the matrix is
complete and agrees with everything else TAO printed. When numpy abbreviated the matrix
("..."), the report's 2-decimal recalls times the supports still give it exactly where they
determine one count per class (``_top1_from_report``). Classes TAO's matrix leaves out (no
images, never predicted) are put back from the report's supports
(``restore_left_out_classes``). The formats are described in
``shared/reference/tao-classification-cli.md``. Pure functions of text.
"""

import ast
import re
from collections import OrderedDict, namedtuple
from typing import List, Optional, Tuple

from tao_step.logtext import fraction, is_log_line, last_value, lines_of

ClassRow = namedtuple("ClassRow", "name precision recall f1 support")
ClassStats = namedtuple("ClassStats", "name precision recall f1 support")


class ClassificationReport(object):
    """The rows of scikit-learn's ``classification_report`` as TAO printed them."""

    def __init__(self, rows: List[ClassRow], summary: "OrderedDict[str, ClassRow]",
                 accuracy: Optional[float], total: Optional[int]):
        self.rows = rows
        self.summary = summary  # "macro avg", "weighted avg" (and older "avg / total")
        self.accuracy = accuracy  # the "accuracy" row, rounded to 2 decimals
        self.total = total


class Evaluation(object):
    """What ``classification evaluate`` printed, cross-checked.

    ``top1`` is trace / total of the confusion matrix and is set only when the matrix is
    complete and agrees with everything else TAO printed (class count, image count and,
    within rounding, the classification report). ``problems`` says, in plain words, what
    could not be read.
    """

    def __init__(self):
        self.loss = None  # type: Optional[float]
        self.topk = None  # type: Optional[float]
        self.images_found = None  # type: Optional[int]
        self.classes_found = None  # type: Optional[int]
        self.class_names = None  # type: Optional[List[str]]
        self.class_names_source = None  # type: Optional[str]
        self.matrix = None  # type: Optional[List[List[int]]]
        self.report = None  # type: Optional[ClassificationReport]
        self.top1 = None  # type: Optional[float]
        self.correct = None  # type: Optional[int]  # images on the diagonal, when known
        self.top1_source = None  # type: Optional[str]
        self.elided = False  # numpy printed the matrix with '...'
        self.visible_diagonal = {}  # type: dict  # class index -> count, of an elided matrix
        self.class_stats = None  # type: Optional[List[ClassStats]]
        # Classes TAO's matrix left out (no images, never predicted), put back as zeros.
        self.left_out = []  # type: List[str]
        self.macro = None  # type: Optional[Tuple[float, float, float]]
        self.macro_source = None  # type: Optional[str]
        self.problems = []  # type: List[str]

    @property
    def images(self) -> Optional[int]:
        if self.matrix is not None:
            return sum(map(sum, self.matrix))
        if self.report is not None and self.report.total is not None:
            return self.report.total
        return self.images_found


def _index_of(lines: List[str], marker: str, start: int = 0) -> Optional[int]:
    """The first line from ``start`` that is ``marker``, printed (TF1 evaluate) or logged
    after a prefix ending ``: `` (TAO Deploy's evaluate logs its headers)."""
    for i in range(start, len(lines)):
        line = lines[i].strip()
        if line == marker or line.endswith(": " + marker):
            return i
    return None


ELIDED = ("numpy abbreviated the confusion matrix with '...' (it prints at most 1000 cells "
          "in full), so it cannot be read")
_MATRIX_LINE = re.compile(r"^[\[\]\d\s]*\d[\[\]\d\s]*$|^[\[\]\s]*\][\[\]\s]*$")


def parse_confusion_matrix(lines: List[str]) -> Tuple[Optional[List[List[int]]], Optional[str]]:
    """Read numpy's repr of a square integer matrix from the lines that follow its title.

    Rows may be wrapped over several lines and foreign lines may be interleaved; only
    lines made of brackets and integers count. The matrix is accepted only if its
    brackets close and it is square. It may be 1x1 (``[[412]]``): TAO's matrix leaves out
    classes without images (``restore_left_out_classes``).
    """
    tokens = []  # type: List[str]
    balance = 0  # open brackets so far (counted as we go: a matrix can be a million cells)
    for line in lines:
        if "..." in line and _MATRIX_LINE.match(line.replace("...", " 0 ")):
            return None, ELIDED
        if _MATRIX_LINE.match(line):
            found = re.findall(r"\[|\]|\d+", line)
            tokens.extend(found)
            balance += found.count("[") - found.count("]")
        if tokens and balance == 0:
            break
    if not tokens:
        return None, "no confusion matrix was printed"
    depth, rows, row = 0, [], []  # type: int, List[List[int]], List[int]
    for token in tokens:
        if token == "[":
            depth += 1
            row = []
            if depth > 2:
                return None, "the confusion matrix is not a 2-D matrix"
        elif token == "]":
            if depth == 2:
                rows.append(row)
            depth -= 1
        elif depth == 2:
            row.append(int(token))
        else:
            return None, "the confusion matrix has a number outside its rows"
    if depth != 0:
        return None, "the confusion matrix is cut off (the output ends inside it)"
    if not rows or any(len(r) != len(rows) for r in rows):
        return None, "the confusion matrix is not square"
    return rows, None


Restored = namedtuple("Restored", "matrix left_out undecided")


def restore_left_out_classes(matrix: List[List[int]], supports: List[int]
                             ) -> Tuple[Optional[Restored], Optional[str]]:
    """The k x k confusion matrix, from TAO's matrix and the report's k class supports.

    TAO's evaluate prints ``confusion_matrix(y_true, y_pred)`` without ``labels=`` but
    ``classification_report(..., labels=<every class>)`` (tao_tensorflow1_backend@d73dcfc
    ``nvidia_tao_tf1/cv/makenet/scripts/evaluate.py`` lines 321 and 326). scikit-learn's
    matrix then holds only the classes that have images or predictions, in class order: a
    class with neither (an empty class folder the model never predicts) has no row and no
    column. Its true row and column are all zero, so putting it back is exact.

    The report's supports place TAO's rows: the classes with images, one to one and in
    order; a class without images but predicted (a zero row) among the report's classes
    without images between the same two neighbours. Where such a gap has more candidates
    than zero rows, which class was predicted is not determined: ``undecided`` names the
    candidates and the matrix returned puts the predictions on the first of them. Its
    top-1 and every class's precision, recall and F1 are exact either way (a class
    without images scores 0 wherever it sits); only its columns' labels are not.
    Returns the Restored matrix with the indices of the classes put back, or a reason.
    """
    n, k = len(matrix), len(supports)
    totals = [sum(row) for row in matrix]
    with_images = [i for i in range(n) if totals[i]]
    report_with_images = [j for j in range(k) if supports[j]]
    if [totals[i] for i in with_images] != [supports[j] for j in report_with_images]:
        return None, ("the confusion matrix is %dx%d for %d classes and its row totals do not "
                      "match the classification report's supports" % (n, n, k))
    place = [None] * n  # type: List[Optional[int]]
    undecided = []  # type: List[int]
    # Gaps between consecutive classes with images (and before the first, after the last).
    bounds = list(zip([-1] + with_images, with_images + [n]))
    report_bounds = list(zip([-1] + report_with_images, report_with_images + [k]))
    for (low, high), (report_low, report_high) in zip(bounds, report_bounds):
        if high < n:
            place[high] = report_high
        rows = list(range(low + 1, high))
        candidates = list(range(report_low + 1, report_high))
        if len(rows) > len(candidates):
            return None, ("the confusion matrix has more classes without images than the "
                          "classification report")
        if rows and len(rows) < len(candidates):
            undecided.extend(candidates)
        for row, column in zip(rows, candidates):
            place[row] = column
    restored = [[0] * k for _ in range(k)]
    for i in range(n):
        for j in range(n):
            restored[place[i]][place[j]] = matrix[i][j]
    left_out = sorted(set(range(k)) - set(place))
    return Restored(restored, left_out, undecided), None


def elided_diagonal(lines: List[str], supports: List[int]) -> dict:
    """The diagonal cells an abbreviated matrix still shows, by the report's class index:
    numpy keeps 3 rows and columns at each edge (``edgeitems``). TAO's matrix may leave out
    classes without images (see ``restore_left_out_classes``), so a shown cell is placed
    only where that cannot have shifted it: leading cell i when classes 0..i all have
    images, trailing ones likewise from the end. Empty if the layout is not exactly that
    (the cross-check is then skipped, never guessed)."""
    rows = []  # type: List[Tuple[List[int], List[int]]]
    for line in lines:
        if "..." not in line or not _MATRIX_LINE.match(line.replace("...", " 0 ")):
            continue  # a foreign line
        left, _, right = line.partition("...")
        left_numbers = [int(t) for t in re.findall(r"\d+", left)]
        right_numbers = [int(t) for t in re.findall(r"\d+", right)]
        if left_numbers or right_numbers:
            if len(left_numbers) != 3 or len(right_numbers) != 3:
                return {}
            rows.append((left_numbers, right_numbers))
        if line.rstrip().endswith("]]"):
            break
    k = len(supports)
    if len(rows) != 6 or k < 7:
        return {}
    diagonal = {}
    for i in range(3):
        if all(supports[:i + 1]):
            diagonal[i] = rows[i][0][i]
    for j in range(3):
        if all(supports[k - 3 + j:]):
            diagonal[k - 3 + j] = rows[3 + j][1][j]
    return diagonal


def _two_decimals(value: float) -> str:
    # scikit-learn formats the report with "{:.2f}" (digits=2): the same rounding as here.
    return "%.2f" % value


def correct_counts_from_report(report: "ClassificationReport") -> Tuple[List[Optional[int]],
                                                                         List[str]]:
    """Each class's correctly classified images, where the report determines it.

    A class's recall is correct / support, printed with 2 decimals. Of the counts 0..support
    exactly those whose recall prints the same are possible; with a support of at most 100
    there is always exactly one (neighbouring counts differ by at least 0.01). Returns, per
    class, the count or None, and the names of the classes left undetermined.
    """
    counts, undetermined = [], []  # type: List[Optional[int]], List[str]
    for row in report.rows:
        shown = _two_decimals(row.recall)
        if row.support == 0:
            fits = [0]
        else:
            fits = [c for c in range(row.support + 1)
                    if _two_decimals(c / row.support) == shown]
        counts.append(fits[0] if len(fits) == 1 else None)
        if len(fits) != 1:
            undetermined.append(row.name)
    return counts, undetermined


_REPORT_ROW = re.compile(
    r"^\s*(?P<name>\S.*?)\s+(?P<p>\d+\.\d+)\s+(?P<r>\d+\.\d+)\s+(?P<f1>\d+\.\d+)"
    r"\s+(?P<support>\d+)\s*$")
_ACCURACY_ROW = re.compile(r"^\s*accuracy\s+(?P<acc>\d+\.\d+)\s+(?P<support>\d+)\s*$")
_SUMMARY_ROWS = ("micro avg", "macro avg", "weighted avg", "samples avg", "avg / total")
_LAST_SUMMARY_ROWS = ("weighted avg", "avg / total", "samples avg")


def parse_classification_report(
        lines: List[str]) -> Tuple[Optional[ClassificationReport], Optional[str]]:
    """Read scikit-learn's text report from the lines after ``Classification Report``.

    Class names may contain spaces, digits and punctuation: a row is a name followed by
    exactly three decimals and an integer. The report counts only if it reaches its last
    summary row (``weighted avg``), so a cut-off report is never mistaken for a short one.
    """
    header_seen = False
    rows = []  # type: List[ClassRow]
    summary = OrderedDict()  # type: OrderedDict
    accuracy, total = None, None
    for line in lines:
        if not header_seen:
            words = line.split()
            if words[:4] == ["precision", "recall", "f1-score", "support"]:
                header_seen = True
            continue
        if not line.strip() or is_log_line(line):
            continue
        m = _ACCURACY_ROW.match(line)
        if m:
            accuracy, total = float(m.group("acc")), int(m.group("support"))
            continue
        m = _REPORT_ROW.match(line)
        if not m:
            continue
        row = ClassRow(m.group("name"), float(m.group("p")), float(m.group("r")),
                       float(m.group("f1")), int(m.group("support")))
        if row.name in _SUMMARY_ROWS:
            summary[row.name] = row
            if row.name in _LAST_SUMMARY_ROWS:
                return ClassificationReport(rows, summary, accuracy, total or row.support), None
        elif not summary and accuracy is None:
            rows.append(row)
    if not header_seen:
        return None, "the classification report has no header line"
    return None, "the classification report is cut off (no 'weighted avg' row)"


def parse_class_name_line(text: str) -> Optional[List[str]]:
    """The class list from ``Class name = [...]`` (printed first when ``-cm`` is given)."""
    found = re.findall(r"Class name\s*=\s*(\[.*\]|\{.*\})", text)
    if not found:
        return None
    try:
        value = ast.literal_eval(found[-1])
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, dict):  # {"class": index}
        value = [name for name, _ in sorted(value.items(), key=lambda item: item[1])]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    return None


def stats_from_matrix(names: List[str], matrix: List[List[int]]) -> List[ClassStats]:
    """Per-class precision, recall and F1 exactly as scikit-learn defines them (0 if undefined)."""
    k = len(matrix)
    stats = []
    for i in range(k):
        tp = matrix[i][i]
        support = sum(matrix[i])
        predicted = sum(matrix[r][i] for r in range(k))
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        stats.append(ClassStats(names[i], p, r, f1, support))
    return stats


# The report prints "%.2f": a true value differs from the printed one by at most 0.005.
_ROUNDING = 0.005 + 1e-9


def _matrix_disagreement(ev: Evaluation, names: Optional[List[str]]) -> Optional[str]:
    matrix = ev.matrix
    assert matrix is not None
    k, total = len(matrix), sum(map(sum, matrix))
    # Only the report's supports can put back classes TAO's matrix left out.
    why = (" (TAO's matrix leaves out classes without images that are never predicted, and "
           "without the classification report they cannot be put back)")
    if names is not None and len(names) != k:
        return "the confusion matrix is %dx%d but there are %d class names%s" % (
            k, k, len(names), why if len(names) > k and ev.report is None else "")
    if ev.classes_found is not None and ev.classes_found != k:
        return "the confusion matrix is %dx%d but TAO found %d classes%s" % (
            k, k, ev.classes_found, why if ev.classes_found > k and ev.report is None else "")
    if ev.images_found is not None and ev.images_found != total:
        return "the confusion matrix counts %d images but TAO found %d" % (total, ev.images_found)
    report = ev.report
    if report is None:
        return None
    if report.total is not None and report.total != total:
        return ("the confusion matrix counts %d images but the classification report %d"
                % (total, report.total))
    stats = stats_from_matrix([r.name for r in report.rows], matrix)
    for i, row in enumerate(report.rows):
        stat = stats[i]
        if row.support != stat.support or any(
                abs(printed - exact) > _ROUNDING for printed, exact in
                ((row.precision, stat.precision), (row.recall, stat.recall), (row.f1, stat.f1))):
            return "the confusion matrix and the classification report disagree on %r" % row.name
    accuracy = report_accuracy(report)
    trace = sum(matrix[i][i] for i in range(k))
    if accuracy is not None and total and abs(accuracy - trace / total) > _ROUNDING:
        return ("the confusion matrix gives a top-1 accuracy of %.4f but the classification "
                "report %.2f" % (trace / total, accuracy))
    return None


def report_accuracy(report: ClassificationReport) -> Optional[float]:
    """The report's overall accuracy (2 decimals): its ``accuracy`` row, or the ``micro
    avg`` row printed in its place. scikit-learn before 0.22 always printed micro avg;
    from 0.22 to 1.2.x it does whenever ``labels=`` names a class found in neither y_true
    nor y_pred (``micro_is_accuracy`` in ``classification_report``, scikit-learn 1.2.2
    ``sklearn/metrics/_classification.py``), which is TAO 5's case for an empty class.
    For single-label classes over every class, micro precision = recall = accuracy."""
    if report.accuracy is not None:
        return report.accuracy
    micro = report.summary.get("micro avg")
    return micro.recall if micro is not None else None


def _check_matrix(ev: Evaluation) -> List[int]:
    """Put back the classes TAO's matrix left out, then drop the matrix (saying why) unless
    it agrees with everything else TAO printed. Returns the report indices of classes whose
    columns could not be told apart (``restore_left_out_classes``)."""
    undecided = []  # type: List[int]
    if ev.matrix is not None and ev.report is not None and len(ev.matrix) < len(ev.report.rows):
        restored, problem = restore_left_out_classes(
            ev.matrix, [row.support for row in ev.report.rows])
        if restored is None:
            ev.problems.append("%s; not using the confusion matrix" % problem)
            ev.matrix = None
        else:
            ev.matrix, undecided = restored.matrix, restored.undecided
            ev.left_out = [ev.report.rows[j].name for j in restored.left_out]
    if ev.matrix is not None:
        problem = _matrix_disagreement(ev, ev.class_names)
        if problem:
            ev.problems.append(problem + "; not using the confusion matrix")
            ev.matrix, ev.left_out, undecided = None, [], []
    return undecided


def parse_evaluate(text: str) -> Evaluation:
    """Everything ``classification evaluate`` printed, with the top-1 accuracy derived."""
    ev = Evaluation()
    lines = lines_of(text)
    ev.loss = last_value(text, "Evaluation Loss:")
    if ev.loss is None:
        ev.problems.append("no 'Evaluation Loss:' line")
    ev.topk = fraction(last_value(text, "Evaluation Top K accuracy:"))
    if ev.topk is None:
        ev.problems.append("no valid 'Evaluation Top K accuracy:' line")
    found = re.findall(r"Found (\d+) images belonging to (\d+) classes", text)
    if found:
        ev.images_found, ev.classes_found = int(found[-1][0]), int(found[-1][1])

    start = _index_of(lines, "Confusion Matrix")
    end = _index_of(lines, "Classification Report", start or 0)
    if start is None:
        ev.problems.append("no 'Confusion Matrix' in the output")
    else:
        ev.matrix, problem = parse_confusion_matrix(lines[start + 1:end])
        ev.elided = problem == ELIDED
        if problem and not ev.elided:
            ev.problems.append(problem)
    if end is None:
        ev.problems.append("no 'Classification Report' in the output")
    else:
        ev.report, problem = parse_classification_report(lines[end + 1:])
        if problem:
            ev.problems.append(problem)

    if ev.report is not None and ev.report.rows:
        ev.class_names, ev.class_names_source = [r.name for r in ev.report.rows], "report"
    else:
        ev.class_names = parse_class_name_line(text)
        ev.class_names_source = "class name line" if ev.class_names else None
    if ev.class_names is None:
        ev.problems.append("the class names are unknown (no classification report and no "
                           "'Class name = [...]' line)")

    undecided = _check_matrix(ev)
    if ev.matrix is not None:
        total = sum(map(sum, ev.matrix))
        if total:
            ev.correct = sum(ev.matrix[i][i] for i in range(len(ev.matrix)))
            ev.top1 = ev.correct / total
            ev.top1_source = "confusion matrix"
        names = ev.class_names or ["class %d" % i for i in range(len(ev.matrix))]
        ev.class_stats = stats_from_matrix(names, ev.matrix)
        k = len(ev.class_stats)
        ev.macro = tuple(sum(s[j] for s in ev.class_stats) / k for j in (1, 2, 3))
        ev.macro_source = "confusion matrix"
        if undecided:
            ev.problems.append(_undecided_problem(ev, undecided))
            ev.matrix, ev.left_out = None, []
    elif ev.report is not None and "macro avg" in ev.report.summary:
        row = ev.report.summary["macro avg"]
        ev.class_stats = [ClassStats(*r) for r in ev.report.rows]
        ev.macro = (row.precision, row.recall, row.f1)
        ev.macro_source = "classification report (2 decimals)"
    if ev.matrix is None and ev.elided and ev.report is not None and ev.report.rows:
        ev.visible_diagonal = elided_diagonal(lines[start + 1:end],
                                              [row.support for row in ev.report.rows])
        problem = _top1_from_report(ev)
        if problem:
            ev.problems.append(ELIDED)
            ev.problems.append(problem)
    elif ev.elided:
        ev.problems.append(ELIDED)
    if ev.top1 is None and not ev.elided:
        ev.problems.append("the top-1 accuracy cannot be computed without a complete, "
                           "consistent confusion matrix")
    return ev


def _undecided_problem(ev: Evaluation, undecided: List[int]) -> str:
    assert ev.report is not None
    names = [ev.report.rows[j].name for j in undecided]
    shown = ", ".join(repr(n) for n in names[:5]) + (
        " and %d more" % (len(names) - 5) if len(names) > 5 else "")
    return ("the confusion matrix leaves out classes without images, and which of %s the "
            "model predicted cannot be told from it, so it is not shown (the top-1 accuracy "
            "and the per-class figures are exact)" % shown)


def _top1_from_report(ev: Evaluation) -> Optional[str]:
    """Set the top-1 accuracy from the report's recalls when they determine it exactly and
    everything else TAO printed agrees; else return why it is not determined."""
    report = ev.report
    assert report is not None
    k = len(report.rows)
    total = sum(r.support for r in report.rows)
    for what, value in (("classes", ev.classes_found), ("images", ev.images_found)):
        expected = k if what == "classes" else total
        if value is not None and value != expected:
            return ("the top-1 accuracy is not determined: the classification report has %d "
                    "%s but TAO found %d" % (expected, what, value))
    if report.total is not None and report.total != total:
        return ("the top-1 accuracy is not determined: the report's supports add up to %d "
                "images but its total is %d" % (total, report.total))
    counts, undetermined = correct_counts_from_report(report)
    if undetermined:
        shown = ", ".join(repr(n) for n in undetermined[:5])
        more = " and %d more" % (len(undetermined) - 5) if len(undetermined) > 5 else ""
        return ("the top-1 accuracy is not determined: the report's 2-decimal recall fits "
                "more than one count of correct images for %d class(es) with more than 100 "
                "images (%s%s)" % (len(undetermined), shown, more))
    for i, seen in sorted(ev.visible_diagonal.items()):
        if counts[i] != seen:
            return ("the top-1 accuracy is not determined: the report's recall of %r gives "
                    "%d correct images but the matrix shows %d" % (report.rows[i].name,
                                                                   counts[i], seen))
    correct = sum(c for c in counts if c is not None)
    if not total:
        return "the top-1 accuracy is not determined: the report counts no images"
    accuracy = report_accuracy(report)
    if accuracy is not None and _two_decimals(correct / total) != _two_decimals(accuracy):
        return ("the top-1 accuracy is not determined: the per-class recalls give %d of %d "
                "correct but the report's accuracy is %.2f" % (correct, total, accuracy))
    ev.correct, ev.top1 = correct, correct / total
    ev.top1_source = "classification report recall x support (exact)"
    return None
