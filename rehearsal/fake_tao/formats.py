"""numpy's and scikit-learn's text formats, as TAO's evaluate prints them (the pipeline
parses these; ``tests/test_fake_tao.py`` compares them with the real libraries' output)."""


def shown_matrix(matrix):
    """The matrix TAO prints: ``confusion_matrix(y_true, y_pred)`` without ``labels=``
    (tao_tensorflow1_backend@d73dcfc ``makenet/scripts/evaluate.py`` line 321) keeps only
    the classes that have images or predictions, so an empty class folder the model never
    predicts has no row or column."""
    kept = [i for i in range(len(matrix)) if sum(matrix[i]) or any(row[i] for row in matrix)]
    return [[matrix[i][j] for j in kept] for i in kept]



def _extend_line(text, line, word, line_width, next_line_prefix):
    # numpy.core.arrayprint._extendLine (numpy >= 1.14)
    needs_wrap = len(line) + len(word) > line_width and len(line) > len(next_line_prefix)
    if needs_wrap:
        text += line.rstrip() + "\n"
        line = next_line_prefix
    return text, line + word


def numpy_str(matrix, line_width=75, threshold=1000, edge_items=3):
    """``str(numpy.array(matrix))`` for a 2-D integer matrix, wrapping and summarising like
    numpy (rows wider than ``line_width`` continue on the next line; more than ``threshold``
    numbers show only ``edge_items`` at each edge with ``...``)."""
    rows, columns = len(matrix), len(matrix[0])
    summary = rows * columns > threshold

    def kept(length):
        if summary and length > 2 * edge_items:
            return list(range(edge_items)) + list(range(length - edge_items, length))
        return list(range(length))

    shown = [matrix[i][j] for i in kept(rows) for j in kept(columns)]
    width = max(len(str(max(shown))), len(str(min(shown))))

    def row_text(row):
        indent, element_width = "  ", line_width - 1 - 1
        words = [str(row[j]).rjust(width) for j in kept(columns)]
        if summary and columns > 2 * edge_items:
            words.insert(edge_items, "...")
        text, line = "", indent
        for word in words[:-1]:
            text, line = _extend_line(text, line, word, element_width, indent)
            line += " "
        text, line = _extend_line(text, line, words[-1], element_width, indent)
        return "[" + (text + line)[len(indent):] + "]"

    lines = [" " + row_text(matrix[i]) for i in kept(rows)]
    if summary and rows > 2 * edge_items:
        lines.insert(edge_items, " ...")
    return "[" + "\n".join(lines)[1:] + "]"


def classification_report(classes, matrix, digits=2):
    """scikit-learn's ``classification_report`` text for a confusion matrix.

    F1 is 2PR/(P+R) as in the scikit-learn of TAO 3.0's era; scikit-learn 1.x computes
    2TP/(2TP+FP+FN), which can round the last digit the other way. When a class has no
    images and no predictions, scikit-learn 0.22 to 1.2.x (1.2.2 in TAO 5's image) prints
    the accuracy as a ``micro avg`` row (``micro_is_accuracy`` in ``classification_report``).
    """
    total = sum(sum(row) for row in matrix)
    rows = []
    for index, name in enumerate(classes):
        true_positive = matrix[index][index]
        predicted = sum(row[index] for row in matrix)
        support = sum(matrix[index])
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append((name, precision, recall, f1, support))
    width = max(max(len(name) for name in classes), len("weighted avg"), digits)
    headers = ("precision", "recall", "f1-score", "support")
    report = f"{'':>{width}s} " + "".join(f" {header:>9}" for header in headers) + "\n\n"
    row_format = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
    for row in rows:
        report += row_format.format(*row, width=width, digits=digits)
    report += "\n"
    accuracy = sum(matrix[i][i] for i in range(len(classes))) / total
    if len(shown_matrix(matrix)) < len(classes):
        report += row_format.format("micro avg", accuracy, accuracy, accuracy, total,
                                    width=width, digits=digits)
    else:
        report += ("{:>{width}s} " + " {:>9.{digits}}" * 2 + " {:>9.{digits}f} {:>9}\n").format(
            "accuracy", "", "", accuracy, total, width=width, digits=digits)
    averages = [sum(row[k] for row in rows) / len(rows) for k in (1, 2, 3)]
    report += row_format.format("macro avg", *averages, total, width=width, digits=digits)
    weighted = [sum(row[k] * row[4] for row in rows) / total for k in (1, 2, 3)]
    report += row_format.format("weighted avg", *weighted, total, width=width, digits=digits)
    return report

