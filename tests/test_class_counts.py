"""TAO evaluate logs of 2 to 40 classes, printed by the real numpy and scikit-learn, read
exactly through ``python -m tao_step report evaluate``.

TAO's evaluate (tao_tensorflow1_backend ``nvidia_tao_tf1/cv/makenet/scripts/evaluate.py``)
prints ``confusion_matrix(...)`` with numpy's default print options (more than 1000 cells:
abbreviated with ``...``; rows wrapped at 75 characters) and then
``classification_report(..., target_names=...)``. The logs below are made the same way.
"""

import io
import os
import random
import string
import subprocess
import sys

import numpy as np
import pytest
from report_helpers import PYTHON, ROOT, check_outputs, fake_tao, metric_values, run_report
from sklearn.metrics import classification_report, confusion_matrix

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


def tao_log(names: list[str], y_true: list[int], y_pred: list[int], *, whole: bool) -> str:
    """What evaluate prints, with numpy's default print options or (``whole``) those of
    tao_step's startup hook."""
    k = len(names)
    out = io.StringIO()
    out.write(f"Found {len(y_true)} images belonging to {k} classes.\n"
              "Evaluation Loss: 0.5\nEvaluation Top K accuracy: 0.99\n"
              f"Found {len(y_true)} images belonging to {k} classes.\n")
    options = {"threshold": sys.maxsize, "linewidth": 2 ** 31 - 1} if whole else {}
    with np.printoptions(**options):
        print("Confusion Matrix", file=out)
        print(confusion_matrix(y_true, y_pred, labels=list(range(k))), file=out)
    print("Classification Report", file=out)
    print(classification_report(y_true, y_pred, labels=list(range(k)), target_names=names,
                                zero_division=0), file=out)
    return out.getvalue()


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
    """Supports of at most 100 images per class (a class may have none): the top-1 accuracy
    is exact, from the whole matrix below 32 classes, from the report's recalls above."""
    rng = random.Random(k)
    names = class_names(rng, k)
    supports = [rng.randint(0 if k > 3 else 1, 100) for _ in range(k)]
    supports[0] = max(supports[0], 1)
    y_true, y_pred = predictions(rng, k, supports)
    truth = sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)
    text = tao_log(names, y_true, y_pred, whole=False)
    assert ("..." in text.split("Classification Report")[0]) == (k * k > 1000)

    result, metrics, ui = evaluate(tmp_path, text, "--min-accuracy", "0.01",
                                   "--gate-file", tmp_path / "gate")
    assert result.returncode == 0, result.stdout
    assert metric_values(metrics) == {"accuracy-top1-retrained": truth}
    assert (tmp_path / "gate").read_text() == "pass"
    source = "confusion matrix" if k * k <= 1000 else "classification report recall"
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
