"""Reading a training run's curve: Keras' ``training.csv`` (CSVLogger) or, without it, the
Keras progress lines of the log, and the last epoch from the log or the checkpoint names.

Pure functions of text; nothing here reads files or prints.
"""

import csv
import re
from collections import OrderedDict
from typing import List, Optional, Tuple

from tao_step.logtext import NUMBER, finite, lines_of

# Keras names its metrics "acc" (TF 1.15) or "accuracy"; the curve uses the short names.
_SERIES_ALIASES = {"loss": "loss", "acc": "acc", "accuracy": "acc", "val_loss": "val_loss",
                   "val_acc": "val_acc", "val_accuracy": "val_acc"}
SERIES = ("loss", "val_loss", "acc", "val_acc")


class TrainingCurve(object):
    """Per-epoch values; ``series[name][i]`` belongs to ``epochs[i]`` (None where missing)."""

    def __init__(self, epochs: List[int], series: "dict", source: str):
        self.epochs = epochs
        self.series = series
        self.source = source
        self.epoch_note = None  # type: Optional[str]  # when the numbering is uncertain

    def last(self, name: str) -> Optional[float]:
        """The value of ``name`` at the last epoch that has one."""
        for value in reversed(self.series.get(name, [])):
            if value is not None:
                return value
        return None

    def has_points(self) -> bool:
        return any(v is not None for values in self.series.values() for v in values)


def parse_training_csv(text: str, last_epoch: Optional[int] = None
                       ) -> Tuple[Optional[TrainingCurve], Optional[str]]:
    """Read Keras' CSVLogger file (``training.csv``) in any column order.

    The curve shows 1-based epochs, like the log and the checkpoint names. Keras' own
    CSVLogger writes a 0-based ``epoch`` index; TAO's newer releases write 1-based ones
    (tao_tensorflow1_backend ``makenet/scripts/train.py`` uses ``OneIndexedCSVLogger``), and
    which one TAO 3.0 writes is not confirmed. So the base is detected: a 0 in the column
    means 0-based; otherwise ``last_epoch`` (the last 1-based epoch, from the log's
    ``Epoch N/M`` lines or the checkpoint names) decides; without it the numbers are shown
    as written and ``curve.epoch_note`` says so. Missing columns are absent series; cells
    that are empty or not finite are gaps.
    """
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header:
        return None, "training.csv is empty"
    header = [h.strip() for h in header]
    columns = {_SERIES_ALIASES[h]: i for i, h in enumerate(header) if h in _SERIES_ALIASES}
    if not columns:
        return None, "training.csv has none of the columns loss, acc, val_loss, val_acc"
    epoch_col = header.index("epoch") if "epoch" in header else None
    written, series = [], {name: [] for name in columns}  # type: List[Optional[int]], dict
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        epoch = None
        if epoch_col is not None and epoch_col < len(row):
            index = finite(row[epoch_col])
            epoch = int(index) if index is not None and index == int(index) else None
        written.append(epoch)
        for name, i in columns.items():
            series[name].append(finite(row[i]) if i < len(row) else None)
    if not written:
        return None, "training.csv has a header but no epochs"
    numbers = [e for e in written if e is not None]
    shift, note = 0, None
    if not numbers:
        note = "training.csv has no epoch numbers: epochs counted from 1"
    elif min(numbers) == 0:
        shift = 1
    elif last_epoch is not None and numbers[-1] == last_epoch - 1:
        shift = 1
    elif last_epoch is None or numbers[-1] != last_epoch:
        note = ("epochs as written in training.csv (whether they count from 0 or 1 could "
                "not be determined)")
    epochs = []  # type: List[int]
    for epoch in written:
        epochs.append(epoch + shift if epoch is not None else (epochs[-1] + 1 if epochs else 1))
    curve = TrainingCurve(epochs, series, "training.csv")
    curve.epoch_note = note
    return curve, None


def last_keras_epoch(text: str) -> Optional[int]:
    """The last ``Epoch N/M`` header Keras printed (N counts from 1), if any."""
    found = [int(m.group(1)) for m in map(_EPOCH_HEADER.match, (
        line.strip() for line in lines_of(text))) if m]
    return found[-1] if found else None


_CHECKPOINT = re.compile(r"_(\d{3,})\.(?:tlt|hdf5)$")


def last_checkpoint_epoch(names: List[str]) -> Optional[int]:
    """The highest epoch of ``<arch>_<EEE>.tlt`` (or ``.hdf5``) checkpoint names: 1-based."""
    found = [int(m.group(1)) for m in map(_CHECKPOINT.search, names) if m]
    return max(found) if found else None


_EPOCH_HEADER = re.compile(r"^Epoch (\d+)/(\d+)\s*$")
_KERAS_METRIC = re.compile(r"(?<![\w])(loss|acc|accuracy|val_loss|val_acc|val_accuracy):\s*("
                           + NUMBER + r")")


def parse_training_log(text: str) -> Tuple[Optional[TrainingCurve], Optional[str]]:
    """Rebuild the curve from Keras' progress lines when there is no ``training.csv``.

    Each epoch starts with ``Epoch N/M``; its last progress line, the one that carries
    ``val_loss``/``val_acc``, has the epoch's results. Epochs without such a line
    (validation not run, output cut off) are left out rather than guessed.
    """
    epoch = None
    results = OrderedDict()  # type: OrderedDict
    for line in lines_of(text):
        m = _EPOCH_HEADER.match(line.strip())
        if m:
            epoch = int(m.group(1))
            continue
        if epoch is None or "val_" not in line:
            continue
        values = {_SERIES_ALIASES[name]: finite(value)
                  for name, value in _KERAS_METRIC.findall(line)}
        if "val_loss" in values or "val_acc" in values:
            results[epoch] = values
    if not results:
        return None, "the log has no Keras epoch results with validation values"
    epochs = sorted(results)
    series = {name: [results[e].get(name) for e in epochs] for name in SERIES}
    return TrainingCurve(epochs, series, "the Keras progress lines in the log"), None
