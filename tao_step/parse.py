"""Pure parsers for what TAO 3.x image classification prints and writes.

Every function takes text and returns plain values; nothing here reads files or prints.
A value that cannot be read with certainty is ``None`` together with a one-line reason:
callers publish nothing rather than a guess. The formats are described in
``shared/reference/tao-classification-cli.md``: TAO's own prints (``Evaluation Loss:``),
Keras progress lines, numpy's repr of the confusion matrix (rows wrapped at 75
characters) and scikit-learn's ``classification_report`` (2 decimals). Log lines from
other threads or from stderr can land between any two lines and are skipped.

The readers live by the output they read and are imported from here:
``tao_step.logtext`` (lines, log records, numbers), ``tao_step.evaluate_log`` (evaluate's
matrix and classification report), ``tao_step.training_log`` (the training curve); prune's
ratio and inference's ``result.csv`` are read below.
"""

import csv
from collections import namedtuple
from typing import List, Optional, Tuple

from tao_step.evaluate_log import (
    ELIDED,
    ClassificationReport,
    ClassRow,
    ClassStats,
    Evaluation,
    elided_diagonal,
    parse_class_name_line,
    parse_classification_report,
    parse_confusion_matrix,
    parse_evaluate,
    restore_left_out_classes,
    stats_from_matrix,
)
from tao_step.logtext import crash_line, finite, fraction, is_log_line, last_value, lines_of
from tao_step.training_log import (
    SERIES,
    TrainingCurve,
    last_checkpoint_epoch,
    last_keras_epoch,
    parse_training_csv,
    parse_training_log,
)

__all__ = [
    "ELIDED", "SERIES", "ClassRow", "ClassStats", "ClassificationReport", "Evaluation",
    "Prediction", "TrainingCurve", "crash_line", "elided_diagonal", "finite", "fraction",
    "is_log_line", "last_checkpoint_epoch", "last_keras_epoch", "last_value", "lines_of",
    "parse_class_name_line", "parse_classification_report", "parse_confusion_matrix",
    "parse_evaluate", "parse_inference_csv", "parse_pruning_ratio", "parse_training_csv",
    "parse_training_log", "restore_left_out_classes", "stats_from_matrix",
]


# --------------------------------------------------------------------------- prune

def parse_pruning_ratio(text: str) -> Optional[float]:
    """``Pruning ratio (pruned model / original model): <float>`` (a positive number)."""
    value = last_value(text, "Pruning ratio (pruned model / original model):")
    return value if value is not None and value > 0 else None


# --------------------------------------------------------------------------- inference

Prediction = namedtuple("Prediction", "image class_name confidence")

_HEADER_WORDS = {"image", "image_path", "path", "file", "filename", "file_name"}


def parse_inference_csv(text: str) -> Tuple[List[Prediction], int]:
    """Rows ``image_path,class_name[,confidence]`` of ``result.csv``; returns (rows, skipped).

    Tolerates a header row, blank lines, a missing confidence column and a class name that
    contains commas without quotes (the last column is taken as the confidence only if it
    is a number). Rows with fewer than two cells are counted as skipped.
    """
    predictions, skipped = [], 0
    for n, row in enumerate(csv.reader(text.splitlines())):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if n == 0 and cells[0].lower() in _HEADER_WORDS:
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:
            skipped += 1
            continue
        confidence = finite(cells[-1]) if len(cells) >= 3 else None
        name_cells = row[1:-1] if confidence is not None else row[1:]
        predictions.append(Prediction(cells[0], ",".join(name_cells).strip(), confidence))
    return predictions, skipped
