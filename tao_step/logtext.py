"""Reading what a TAO command printed: its lines, the log records mixed into them, its numbers.

The primitives every reader in ``tao_step.parse`` builds on. Log lines from other threads or
from stderr can land between any two lines of a result TAO prints; ``is_log_line`` tells them
apart. Pure functions of text; nothing here reads files or prints.
"""

import math
import re
from typing import List, Optional

NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|NaN|inf|-inf)"

# Log records that may be interleaved with printed results: TAO's logging format (TAO 5's
# TF1 scripts and the 5.2+ deploy wrapper add "[TAO Toolkit] "), absl/glog lines from
# TensorFlow, Python's warnings and "WARNING:tensorflow:" style records.
_LOG_LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} (?:\[TAO Toolkit\] )?\[[A-Z]+\] "
    r"|^[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d+ "
    r"|^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL):[\w.]+:"
    r"|^\S+\.py:\d+: \w+Warning: "
)


def lines_of(text: str) -> List[str]:
    """Split output into lines; carriage returns (terminal progress bars) also end a line."""
    return [line.replace("\x08", "") for line in re.split(r"\r\n|\r|\n", text)]


def is_log_line(line: str) -> bool:
    return bool(_LOG_LINE.match(line))


def crash_line(text: str) -> Optional[str]:
    """The line saying the command failed although it exited 0, or None: a Python traceback
    (not one Python reports and ignores, "Exception ignored in ..."), or TAO's own
    ``Execution status: FAIL``."""
    previous = ""
    for line in lines_of(text):
        stripped = line.strip()
        if stripped == "Traceback (most recent call last):" and not previous.startswith(
                "Exception ignored in"):
            return stripped
        if stripped.startswith("Execution status: FAIL"):
            return stripped
        if stripped:
            previous = stripped
    return None


def finite(text: str) -> Optional[float]:
    """The float in ``text`` if it is one and finite, else None."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def fraction(value: Optional[float]) -> Optional[float]:
    """``value`` if it is a valid accuracy-like fraction in [0, 1], else None."""
    return value if value is not None and 0.0 <= value <= 1.0 else None


def last_value(text: str, label: str) -> Optional[float]:
    """The finite number after the last ``label`` (e.g. ``"Evaluation Loss:"``) in ``text``."""
    matches = re.findall(re.escape(label) + r"\s*(" + NUMBER + r")", text)
    return finite(matches[-1]) if matches else None
