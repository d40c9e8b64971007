"""What every fake command shares: TAO's output streams, the placeholder model files and
TAO 5's status.json lines.

Models are small placeholder files: a magic line, a JSON header (format, architecture,
classes, input size, parameter count, accuracy, the digest of the key that encrypted it, what
it was derived from) and padding proportional to the parameter count, so a pruned model is
visibly smaller than its input. Reading an encrypted model with another ``-k`` fails like
TAO's wrong-key error.
"""

import datetime
import hashlib
import json
import os
import sys

from rehearsal.fake_tao.releases import RELEASES, TAO_3_0, FakeRelease

MAGIC = b"FAKE-TAO-MODEL 1\n"
INPUT_NODE = "input_1"
OUTPUT_NODE = "predictions/Softmax"
# Parameter counts of the models TAO builds (ResNet-18 as NGC ships it); others use a guess.
PARAMETERS = {("resnet", 10): 4_900_000, ("resnet", 18): 11_200_000,
              ("resnet", 34): 21_300_000, ("resnet", 50): 23_600_000,
              ("vgg", 16): 134_300_000, ("vgg", 19): 139_600_000}
BYTES_PER_PADDING = 4096  # one padding byte per this many parameters


class Failure(Exception):
    """A subtask failing the way TAO would; the message is logged as the error."""


# The release the running command emulates: ``classification`` is TAO 3.0's command;
# fake_tao5.py selects 5.0 with ``use``.
RELEASE: FakeRelease = TAO_3_0


def use(version: str) -> None:
    """Emulate TAO ``version`` from now on in this process."""
    global RELEASE
    RELEASE = RELEASES[version]


# -- output ---------------------------------------------------------------------------------
def say(text=""):
    """A line TAO prints to stdout."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def log(message, level="INFO", logger="__main__"):
    """A line TAO logs (Python logging, with time, level and logger; TAO 3.0 on stderr, TAO
    5's wrapper sends it to stdout)."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
    stream = getattr(sys, RELEASE.log_stream)
    stream.write(RELEASE.log_format.format(stamp=stamp, level=level, logger=logger,
                                              message=message) + "\n")
    stream.flush()


# -- model files ----------------------------------------------------------------------------
def key_digest(key):
    return hashlib.sha256(("fake-tao:" + key).encode("utf-8")).hexdigest()[:16]


def file_digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:16]


def write_model(path, header):
    """Write a placeholder model: magic, JSON header, padding by parameter count."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    padding = int(header.get("parameters", 0)) // BYTES_PER_PADDING
    with open(path, "wb") as handle:
        handle.write(MAGIC + json.dumps(header, sort_keys=True).encode("utf-8") + b"\n")
        handle.write(bytes(range(256)) * (padding // 256) + bytes(padding % 256))


def read_model(path, what="model"):
    """The header of a fake model file; Failure if it is missing or not one."""
    if not os.path.exists(path):
        raise Failure(f"FileNotFoundError: {what} file {path} does not exist")
    if os.path.isdir(path):
        raise Failure(f"IsADirectoryError: {what} file {path} is a directory")
    with open(path, "rb") as handle:
        data = handle.read()
    if not data.startswith(MAGIC):
        raise Failure(f"OSError: Unable to open file {path} (file signature not found)")
    return json.loads(data[len(MAGIC):].split(b"\n", 1)[0].decode("utf-8"))


def read_encrypted(path, key, what="model"):
    """Read a model encrypted with a key, failing like TAO when ``key`` is not that key."""
    header = read_model(path, what)
    if header.get("key") and header["key"] != key_digest(key):
        raise Failure("Invalid decryption. Unable to open file (file signature not found). "
                      f"The key used to load the model {path} is incorrect.")
    return header


def refuse_existing(path):
    if os.path.exists(path):
        raise Failure(f"FileExistsError: output file {path} already exists; remove it or choose "
                      "another output path")


def status_line(handle, status, message, **values):
    """One JSON line of TAO 5's status logger (train writes them in 3.0's fake too)."""
    now = datetime.datetime.now()
    record = {"date": f"{now.month}/{now.day}/{now.year}",
              "time": f"{now.hour}:{now.minute}:{now.second}", "status": status,
              "verbosity": "INFO", "message": message}
    record.update(values)
    handle.write(json.dumps(record) + "\n")

