"""What one report step publishes, and how its figures read in the KFP UI's markdown."""

import os
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

from tao_step import kfp_ui
from tao_step.kfp_ui import md_escape

MB = 1000.0 * 1000.0


class Outputs(object):
    """What one step publishes; written together at the end."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.metrics: List[dict] = []
        self.ui: List[dict] = []
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
