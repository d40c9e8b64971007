"""Regenerate the wide evaluate sample and its ground truth (run on purpose only).

    python tests/data/tao_output/make_samples.py

Writes ``evaluate_24class.txt`` (what TAO 3.x ``classification evaluate`` prints for 24
classes: numpy wraps each 3-digit matrix row over two lines, sklearn pads class names
that contain spaces, digits, underscores and a comma), ``evaluate_24class.expected.json``
(the matrix and names the text was made from, which the tests compare the parser with)
and ``evaluate_truncated.txt`` (the same output cut off inside the matrix, as when the
pod is killed). numpy and sklearn are not needed: their print formats are reproduced
below (numpy ``str()`` with linewidth 75, ``classification_report`` with 2 digits).
"""

import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))

# Folder names as a user might have them; Keras orders classes with sorted().
CLASSES = sorted([
    "Cessna 172", "airbus_a320", "airbus_a380", "atr 72", "boeing 737", "boeing 747-400",
    "boeing_777", "bombardier crj200", "cessna_208", "dash 8", "embraer e190",
    "embraer_175", "fokker 100", "gulfstream g650", "helicopter, light", "learjet_45",
    "mcdonnell douglas md-80", "pilatus pc-12", "saab 340", "sukhoi superjet 100",
    "tupolev_tu-154", "type 2 glider", "type_10 glider", "zeppelin nt",
])


def numpy_str(matrix, linewidth=75):
    """``str(np.array(matrix))`` for a 2-D integer array (numpy >= 1.14 layout)."""
    width = max(len(str(v)) for row in matrix for v in row)
    rows = []
    for row in matrix:
        words = [str(v).rjust(width) for v in row]
        text, line = "", "  "
        for word in words:
            if len(line) + len(word) > linewidth - 2 and len(line) > 2:
                text += line.rstrip() + "\n"
                line = "  "
            line += word + " "
        text += line[:-1]
        rows.append("[" + text[2:] + "]")
    return "[" + "\n ".join(rows) + "]"


def sklearn_report(names, matrix):
    """``classification_report(..., target_names=names)`` with 2 digits."""
    k = len(names)
    stats = []
    for i in range(k):
        tp = matrix[i][i]
        support = sum(matrix[i])
        predicted = sum(matrix[r][i] for r in range(k))
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        stats.append((p, r, f, support))
    total = sum(s[3] for s in stats)
    width = max(max(len(n) for n in names), len("weighted avg"), 2)
    out = "{:>{w}s} ".format("", w=width) + "".join(
        f" {h:>9}" for h in ("precision", "recall", "f1-score", "support")) + "\n\n"
    row = "{:>{w}s}  {:>9.2f} {:>9.2f} {:>9.2f} {:>9}\n"
    for name, (p, r, f, s) in zip(names, stats, strict=True):
        out += row.format(name, p, r, f, s, w=width)
    out += "\n"
    accuracy = sum(matrix[i][i] for i in range(k)) / total
    out += "{:>{w}s}  {:>9} {:>9} {:>9.2f} {:>9}\n".format("accuracy", "", "", accuracy, total,
                                                             w=width)
    macro = [sum(s[j] for s in stats) / k for j in range(3)]
    weighted = [sum(s[j] * s[3] for s in stats) / total for j in range(3)]
    out += row.format("macro avg", macro[0], macro[1], macro[2], total, w=width)
    out += row.format("weighted avg", weighted[0], weighted[1], weighted[2], total, w=width)
    return out


def main():
    rng = random.Random(20220308)
    k = len(CLASSES)
    matrix = []
    for i in range(k):
        row = [0] * k
        for _ in range(rng.randint(100, 140)):
            j = i if rng.random() < 0.9 else rng.randrange(k)
            row[j] += 1
        matrix.append(row)
    total = sum(map(sum, matrix))
    with open(os.path.join(HERE, "evaluate_2class.txt"), encoding="utf-8") as f:
        head = f.read()
    head = head[:head.index("Found 318 images")]
    matrix_lines = numpy_str(matrix).split("\n")
    # stderr from the loader thread lands in the middle of stdout, as it does in a pod log
    matrix_lines.insert(9, "2022-03-09 11:02:41,118 [INFO] iva.makenet.utils.helper: "
                           "Pre-fetch queue drained (24 batches)")
    report_lines = sklearn_report(CLASSES, matrix).rstrip("\n").split("\n")
    report_lines.insert(14, "2022-03-09 11:02:41,240 [INFO] __main__: Writing report")
    text = (
        head
        + f"Found {total} images belonging to {k} classes.\n"
        + "2022-03-09 11:02:13,374 [INFO] __main__: Processing dataset (evaluation): "
          "/workspace/tao-experiments/data/split/test\n"
        + "Evaluation Loss: 0.4127703392505646\n"
        + "Evaluation Top K accuracy: 0.9874213933944702\n"
        + f"Found {total} images belonging to {k} classes.\n"
        + "2022-03-09 11:02:19,005 [INFO] __main__: Calculating per-class P/R and confusion "
          "matrix. It may take a while...\n"
        + "Confusion Matrix\n" + "\n".join(matrix_lines) + "\n"
        + "Classification Report\n" + "\n".join(report_lines) + "\n\n"
    )
    with open(os.path.join(HERE, "evaluate_24class.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(HERE, "evaluate_24class.expected.json"), "w", encoding="utf-8") as f:
        json.dump({"class_names": CLASSES, "matrix": matrix, "loss": 0.4127703392505646,
                   "topk_accuracy": 0.9874213933944702}, f, indent=1)
        f.write("\n")
    cut = text.index("Confusion Matrix")
    cut = text.index("\n", text.index("\n", cut) + 400)  # a few rows into the matrix
    with open(os.path.join(HERE, "evaluate_truncated.txt"), "w", encoding="utf-8") as f:
        f.write(text[:cut + 1])


if __name__ == "__main__":
    main()
