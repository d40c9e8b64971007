"""TAO evaluate logs of 2 to 40 classes, printed by the real numpy and scikit-learn, read
exactly through ``python -m tao_step report evaluate``.

TAO's evaluate (tao_tensorflow1_backend@d73dcfc ``nvidia_tao_tf1/cv/makenet/scripts/
evaluate.py``) prints ``confusion_matrix(y_true, y_pred)`` (line 321: no ``labels=``, so a
class with no images that is never predicted has no row or column) with numpy's default
print options (more than 1000 cells: abbreviated with ``...``; rows wrapped at 75
characters) and then ``classification_report(..., labels=<every class>,
target_names=...)`` (line 326) of scikit-learn 1.2.2, the version TAO 5's image installs.
The logs below are made the same way; ``report_as_in_tao5`` gives the one row where the
dev venv's newer scikit-learn prints otherwise.
"""

import io
import os
import random
import string
import subprocess
import sys
import warnings

import numpy as np
import pytest
from report_helpers import (
    PYTHON,
    ROOT,
    check_outputs,
    csv_rows,
    fake_tao,
    metric_values,
    run_report,
)
from sklearn.metrics import classification_report, confusion_matrix, precision_recall_fscore_support

# TAO's own process in the hook test: the TAO image's Python when given (TAO_STEP_PYTHON,
# with numpy 1.19 from requirements-py36.txt), as the hook runs inside it.
TAO_PYTHON = PYTHON


def class_names(rng: random.Random, k: int) -> list[str]:
    """k distinct folder names of 1 to 40 characters, with spaces, digits and punctuation,
    in Keras' (sorted) class order."""
    alphabet = string.ascii_letters + string.digits + "_- ,.()"
    names: set[str] = set()
    while len(names) < k:
        length = rng.choice([1, 2, 5, 12, 25, 40])
        name = "".join(rng.choice(alphabet) for _ in range(length)).strip()
        if name and not name[0].isdigit() and name not in (
                "accuracy", "macro avg", "weighted avg", "micro avg"):
            names.add(name)
    return sorted(names)


def predictions(rng: random.Random, k: int, supports: list[int]) -> tuple[list[int], list[int]]:
    y_true, y_pred = [], []
    skill = rng.uniform(0.3, 0.99)
    for c, n in enumerate(supports):
        for _ in range(n):
            y_true.append(c)
            y_pred.append(c if rng.random() < skill else rng.randrange(k))
    return y_true, y_pred


def report_as_in_tao5(y_true: list[int], y_pred: list[int], names: list[str]) -> str:
    """``classification_report(y_true, y_pred, labels=<every class>, target_names=names)``
    as scikit-learn 1.2.2 prints it.

    1.2.2 prints ``micro avg`` in place of ``accuracy`` when a label is found in neither
    y_true nor y_pred: ``micro_is_accuracy`` requires ``set(labels) ==
    set(unique_labels(y_true, y_pred))`` (sklearn/metrics/_classification.py lines
    2320-2322 at 1.2.2), and that row is then written with the class rows' format (lines
    2368, 2375-2378, 2405). scikit-learn 1.9.1 compares with ``>=`` (line 3101) and prints
    ``accuracy``. With one label per image over every class, the micro precision, recall
    and F1 are all the accuracy. ``zero_division=0`` only silences the warnings: the
    values are the default's.
    """
    k = len(names)
    text = classification_report(y_true, y_pred, labels=list(range(k)), target_names=names,
                                 zero_division=0)
    if set(y_true) | set(y_pred) == set(range(k)) or "micro avg" in text:
        return text
    lines = text.split("\n")
    [row] = [i for i, line in enumerate(lines) if line.split()[:1] == ["accuracy"]]
    accuracy = sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)
    width = max(max(len(name) for name in names), len("weighted avg"), 2)
    lines[row] = ("{:>{width}s} " + " {:>9.2f}" * 3 + " {:>9}").format(
        "micro avg", accuracy, accuracy, accuracy, len(y_true), width=width)
    return "\n".join(lines)


def tao_log(names: list[str], y_true: list[int], y_pred: list[int], *, whole: bool) -> str:
    """What evaluate prints, with numpy's default print options or (``whole``) those of
    tao_step's startup hook."""
    k = len(names)
    out = io.StringIO()
    out.write(f"Found {len(y_true)} images belonging to {k} classes.\n"
              "Evaluation Loss: 0.5\nEvaluation Top K accuracy: 0.99\n"
              f"Found {len(y_true)} images belonging to {k} classes.\n")
    options = {"threshold": sys.maxsize, "linewidth": 2 ** 31 - 1} if whole else {}
    with np.printoptions(**options), warnings.catch_warnings():
        # scikit-learn 1.9 warns about a 1x1 matrix; 1.2.2 does not (and a warning goes to
        # stderr, apart from what TAO prints).
        warnings.simplefilter("ignore")
        print("Confusion Matrix", file=out)
        print(confusion_matrix(y_true, y_pred), file=out)
    print("Classification Report", file=out)
    print(report_as_in_tao5(y_true, y_pred, names), file=out)
    return out.getvalue()


def shown_classes(y_true: list[int], y_pred: list[int]) -> int:
    """How many classes TAO's matrix has: those with images or predictions."""
    return len(set(y_true) | set(y_pred))


def evaluate(tmp_path, text: str, *extra: str) -> tuple[subprocess.CompletedProcess, dict, dict]:
    log = tmp_path / "evaluate.txt"
    log.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    result = run_report("evaluate", "--out-dir", out, "--label", "retrained", *extra,
                        command=fake_tao("print", log))
    metrics, ui = check_outputs(out) if result.returncode == 0 else (None, {})
    return result, metrics, ui


@pytest.mark.parametrize("k", range(2, 41))
def test_every_class_count_is_read_exactly(tmp_path, k):
    """Supports of at most 100 images per class (a class may have none, and TAO's matrix
    then may leave it out): the top-1 accuracy is exact, from the whole matrix up to 31
    classes in it, from the report's recalls above."""
    rng = random.Random(k)
    names = class_names(rng, k)
    supports = [rng.randint(0 if k > 3 else 1, 100) for _ in range(k)]
    supports[0] = max(supports[0], 1)
    y_true, y_pred = predictions(rng, k, supports)
    truth = sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)
    text = tao_log(names, y_true, y_pred, whole=False)
    n = shown_classes(y_true, y_pred)
    assert ("..." in text.split("Classification Report")[0]) == (n * n > 1000)

    result, metrics, ui = evaluate(tmp_path, text, "--min-accuracy", "0.01",
                                   "--gate-file", tmp_path / "gate")
    assert result.returncode == 0, result.stdout
    assert metric_values(metrics) == {"accuracy-top1-retrained": truth}
    assert (tmp_path / "gate").read_text() == "pass"
    source = "confusion matrix" if n * n <= 1000 else "classification report recall"
    assert source in "\n".join(o["source"] for o in ui["outputs"] if o["type"] == "markdown")


@pytest.mark.parametrize("k", [32, 35, 40])
def test_the_whole_matrix_with_the_hook_options(tmp_path, k):
    rng = random.Random(100 + k)
    names = class_names(rng, k)
    y_true, y_pred = predictions(rng, k, [rng.randint(150, 400) for _ in range(k)])
    truth = sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)
    result, metrics, ui = evaluate(tmp_path, tao_log(names, y_true, y_pred, whole=True))
    assert result.returncode == 0 and "WARNING" not in result.stdout, result.stdout
    assert metric_values(metrics) == {"accuracy-top1-retrained": truth}
    # Above 26 classes no confusion_matrix viewer; the pairs table and the per-class table.
    assert [o["type"] for o in ui["outputs"]] == ["markdown", "table", "table"]


def test_an_elided_matrix_with_large_classes_is_not_guessed(tmp_path):
    """300 images per class: a 2-decimal recall fits several counts; nothing is published
    and the gate fails, saying why."""
    rng = random.Random(7)
    names = class_names(rng, 40)
    y_true, y_pred = predictions(rng, 40, [300] * 40)
    result, metrics, ui = evaluate(tmp_path, tao_log(names, y_true, y_pred, whole=False),
                                   "--min-accuracy", "0.5", "--gate-file", tmp_path / "gate")
    assert result.returncode == 1
    assert metrics is None and (tmp_path / "gate").read_text() == "fail"
    assert "the top-1 accuracy is not determined" in result.stdout
    assert "more than 100 images" in result.stdout


def test_the_report_disagreeing_with_the_visible_diagonal_is_not_used(tmp_path):
    rng = random.Random(8)
    names = class_names(rng, 33)
    y_true, y_pred = predictions(rng, 33, [50] * 33)
    text = tao_log(names, y_true, y_pred, whole=False)
    matrix, report = text.split("Classification Report")
    first_row = matrix.split("Confusion Matrix\n")[1].splitlines()[0]
    corrupted = first_row.replace("[[", "[[9", 1)  # class 0's diagonal cell, changed
    result, metrics, _ = evaluate(tmp_path, text.replace(first_row, corrupted, 1))
    assert result.returncode == 0
    assert metrics is None and "the matrix shows" in result.stdout


# An empty class folder is the usual way past evaluate's check that the data set has the
# model's number of classes (evaluate.py line 296); TAO's matrix then leaves the class out.

def outputs_of(ui: dict, kind: str) -> list[dict]:
    return [o for o in ui["outputs"] if o["type"] == kind]


def per_class_rows(y_true: list[int], y_pred: list[int], names: list[str]) -> list[list[str]]:
    """scikit-learn's per-class figures over every class, as the per-class table shows them."""
    k = len(names)
    figures = precision_recall_fscore_support(y_true, y_pred, labels=list(range(k)),
                                              zero_division=0)
    return [[name, *(f"{figures[m][i]:.4f}" for m in range(3)), str(figures[3][i])]
            for i, name in enumerate(names)]


def test_two_classes_one_without_images_print_a_1x1_matrix_and_pass_the_gate(tmp_path):
    names, y_true, y_pred = ["cat", "dog"], [0] * 412, [0] * 412
    text = tao_log(names, y_true, y_pred, whole=False)
    assert "Confusion Matrix\n[[412]]\n" in text and "micro avg" in text
    assert "accuracy" not in text.split("Classification Report")[1]

    result, metrics, ui = evaluate(tmp_path, text, "--min-accuracy", "0.95",
                                   "--gate-file", tmp_path / "gate")
    assert result.returncode == 0, result.stdout
    assert metric_values(metrics) == {"accuracy-top1-retrained": 1.0}
    assert (tmp_path / "gate").read_text() == "pass"
    assert "No images of 'dog' in the evaluation set" in result.stdout
    [card, matrix_card] = [o["source"] for o in outputs_of(ui, "markdown")]
    assert "**100.00%** (412 of 412 images; from the confusion matrix)" in card
    assert "No images of dog in the evaluation set" in card
    [viewer] = outputs_of(ui, "confusion_matrix")
    assert viewer["labels"] == names
    assert csv_rows(viewer["source"]) == [["cat", "cat", "412"], ["cat", "dog", "0"],
                                          ["dog", "cat", "0"], ["dog", "dog", "0"]]
    [per_class] = outputs_of(ui, "table")
    assert csv_rows(per_class["source"]) == per_class_rows(y_true, y_pred, names)


def test_an_empty_class_left_out_of_the_matrix_is_put_back_as_zeros(tmp_path):
    rng = random.Random(5)
    names = ["ant", "bee", "cicada", "dragonfly", "earwig"]
    y_true, y_pred = [], []
    for c, n in enumerate([30, 25, 0, 40, 20]):  # no cicada images, never predicted
        for _ in range(n):
            y_true.append(c)
            y_pred.append(c if rng.random() < 0.8 else rng.choice([0, 1, 3, 4]))
    text = tao_log(names, y_true, y_pred, whole=False)
    assert shown_classes(y_true, y_pred) == 4 and "micro avg" in text

    result, metrics, ui = evaluate(tmp_path, text)
    assert result.returncode == 0, result.stdout
    truth = sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)
    assert metric_values(metrics) == {"accuracy-top1-retrained": truth}
    [viewer] = outputs_of(ui, "confusion_matrix")
    whole = confusion_matrix(y_true, y_pred, labels=list(range(5)))
    assert csv_rows(viewer["source"]) == [[names[i], names[j], str(whole[i][j])]
                                          for i in range(5) for j in range(5)]
    [per_class] = outputs_of(ui, "table")
    assert csv_rows(per_class["source"]) == per_class_rows(y_true, y_pred, names)


def test_which_empty_class_was_predicted_cannot_be_told_but_the_figures_are_exact(tmp_path):
    """Two classes without images, one of them predicted: TAO's matrix has a row of zeros
    for it, but either class could be that row. Top-1 and per-class figures are the same
    either way; the matrix is not shown."""
    names = ["airliner", "balloon", "blimp", "glider"]
    y_true = [0] * 30 + [3] * 20
    y_pred = [0] * 26 + [2] * 4 + [3] * 18 + [0] * 2  # "blimp" predicted, never true
    text = tao_log(names, y_true, y_pred, whole=False)
    assert shown_classes(y_true, y_pred) == 3

    result, metrics, ui = evaluate(tmp_path, text)
    assert result.returncode == 0, result.stdout
    assert metric_values(metrics) == {"accuracy-top1-retrained": 44 / 50}
    assert "which of 'balloon', 'blimp' the model predicted cannot be told" in result.stdout
    assert outputs_of(ui, "confusion_matrix") == []
    [per_class] = outputs_of(ui, "table")
    assert csv_rows(per_class["source"]) == per_class_rows(y_true, y_pred, names)


def test_an_abbreviated_matrix_without_two_empty_classes_is_read_exactly(tmp_path):
    """40 classes, two without images: numpy still abbreviates TAO's 38x38 matrix, and the
    report's recalls (supports up to 100) give the exact top-1 over the remaining ones."""
    rng = random.Random(40)
    names = class_names(rng, 40)
    supports = [rng.randint(1, 100) for _ in range(40)]
    supports[1] = supports[38] = 0
    y_true, y_pred = [], []
    for c, n in enumerate(supports):
        for _ in range(n):
            y_true.append(c)
            y_pred.append(c if rng.random() < 0.7 else rng.choice(
                [j for j in range(40) if supports[j]]))
    text = tao_log(names, y_true, y_pred, whole=False)
    assert shown_classes(y_true, y_pred) == 38 and "..." in text and "micro avg" in text

    result, metrics, ui = evaluate(tmp_path, text, "--min-accuracy", "0.5",
                                   "--gate-file", tmp_path / "gate")
    assert result.returncode == 0, result.stdout
    truth = sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)
    assert metric_values(metrics) == {"accuracy-top1-retrained": truth}
    assert (tmp_path / "gate").read_text() == "pass"
    assert "classification report recall" in outputs_of(ui, "markdown")[0]["source"]


def write_fake_evaluate(tmp_path, k: int) -> str:
    """A stand-in for TAO's evaluate that builds and prints the matrix with numpy itself."""
    script = tmp_path / "evaluate.py"
    script.write_text(f"""
import os, sys
import numpy as np
k = {k}
m = np.zeros((k, k), dtype=np.int64)
for i in range(k):
    m[i, i] = 30
    m[i, (i + 1) % k] = 3
print("Found %d images belonging to %d classes." % (m.sum(), k))
print("Confusion Matrix")
print(m)
print("Classification Report")
print("PYTHONPATH=" + os.environ.get("PYTHONPATH", ""))
""", encoding="utf-8")
    return str(script)


def test_tao_prints_the_whole_matrix_through_the_startup_hook(tmp_path):
    """The command's own numpy prints all 1,600 cells; the image's PYTHONPATH and its
    sitecustomize still apply."""
    image_dir = tmp_path / "image-site"
    image_dir.mkdir()
    (image_dir / "sitecustomize.py").write_text(
        "import os\nos.environ['IMAGE_SITECUSTOMIZE'] = 'ran'\n", encoding="utf-8")
    (image_dir / "image_module.py").write_text("VALUE = 'from the image path'\n")
    script = write_fake_evaluate(tmp_path, 40)
    (tmp_path / "check.py").write_text(
        "import os, image_module\nprint('hook check:', os.environ.get('IMAGE_SITECUSTOMIZE'),"
        " image_module.VALUE)\n", encoding="utf-8")
    out = tmp_path / "out"
    command = [PYTHON, "-m", "tao_step", "report", "evaluate", "--out-dir", str(out),
               "--label", "baseline", "--", TAO_PYTHON, "-c",
               f"exec(open({str(tmp_path / 'check.py')!r}).read());"
               f"exec(open({script!r}).read())"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(image_dir)]))
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hook check: ran from the image path" in result.stdout
    matrix = result.stdout.split("Confusion Matrix\n")[1].split("Classification Report")[0]
    assert "..." not in matrix and len(matrix.strip().splitlines()) == 40  # whole rows
    pythonpath = result.stdout.split("PYTHONPATH=")[1].splitlines()[0].split(os.pathsep)
    assert pythonpath[1:] == [str(ROOT), str(image_dir)]  # the image's path kept, after ours
    assert not os.path.exists(pythonpath[0])  # the hook's folder is removed afterwards
    metrics, _ = check_outputs(out)  # read whole: the exact top-1
    assert metric_values(metrics) == {"accuracy-top1-baseline": 30 * 40 / (33 * 40)}
