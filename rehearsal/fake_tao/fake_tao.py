"""The logic behind ``rehearsal/fake_tao/bin/{classification,ngc,converter}``.

It honours the contract in ``shared/reference/tao-classification-cli.md`` without a GPU or
TensorFlow: the same flags (argparse; an unknown subtask or a missing required flag is a
usage error, exit 2), the spec read and checked with ``tao_step.specs``, a failure like TAO's
when an input is missing (exit 1, ``Execution status: FAIL``), and the files TAO writes,
under TAO's names. What it prints follows TAO's streams: ``print`` output (Keras' ``Found N
images``, ``Epoch NNNNN: saving model to``, evaluate's results) on stdout, log lines
(``<time> [INFO] <logger>: ...``, ``Execution status: ...``) on stderr.

Models are small placeholder files: a magic line, a JSON header (format, architecture,
classes, input size, parameter count, accuracy, the digest of the key that encrypted it, what
it was derived from) and padding proportional to the parameter count, so a pruned model is
visibly smaller than its input. Reading an encrypted model with another ``-k`` fails like
TAO's wrong-key error. Numbers (accuracy curves, confusion matrices, confidences) are
deterministic functions of the spec's ``random_seed``, the models and the dataset.
"""

import argparse
import csv
import datetime
import hashlib
import json
import math
import os
import random
import re
import sys
from pathlib import Path

from rehearsal.fake_tao import wrapper
from rehearsal.path_map import PathMap
from rehearsal.step_executor import PATH_MAP_ENV
from tao_step import specs
from tao_step.preflight import (
    IMAGE_EXTENSIONS,
    INFERENCE_EXTENSIONS,
    NGC_NAME,
    checkpoint_name,
    ngc_download_dir,
    ngc_model_file,
)

MAGIC = b"FAKE-TAO-MODEL 1\n"
INPUT_NODE = "input_1"
OUTPUT_NODE = "predictions/Softmax"
# Parameter counts of the models TAO builds (ResNet-18 as NGC ships it); others use a guess.
PARAMETERS = {("resnet", 10): 4_900_000, ("resnet", 18): 11_200_000,
              ("resnet", 34): 21_300_000, ("resnet", 50): 23_600_000,
              ("vgg", 16): 134_300_000, ("vgg", 19): 139_600_000}
BYTES_PER_PADDING = 4096  # one padding byte per this many parameters
SUBTASKS = ("train", "evaluate", "prune", "inference", "export", "calibration_tensorfile")


class Failure(Exception):
    """A subtask failing the way TAO would; the message is logged as the error."""


# -- output ---------------------------------------------------------------------------------
def say(text=""):
    """A line TAO prints to stdout."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# What differs in the TAO 5 fake (fake_tao5.py sets these before running a subtask): the
# log format, where log lines go, and what training writes.
RELEASE = {"log_format": "{stamp} [{level}] {logger}: {message}", "log_stream": "stderr",
           "checkpoint_suffix": ".tlt", "model_format": "tlt", "encrypts": True,
           "spec_schema": "3.0"}


def log(message, level="INFO", logger="__main__"):
    """A line TAO logs (Python logging, with time, level and logger; TAO 3.0 on stderr, TAO
    5's wrapper sends it to stdout)."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
    stream = getattr(sys, RELEASE["log_stream"])
    stream.write(RELEASE["log_format"].format(stamp=stamp, level=level, logger=logger,
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


# -- specs and data -------------------------------------------------------------------------
def load_spec(path, sections):
    """The spec at ``path``; Failure on a syntax error or a problem in ``sections``."""
    log(f"Loading experiment spec at {path}.")
    spec, problems = specs.check_spec_file(path, schema=RELEASE["spec_schema"])
    relevant = [problem for problem in problems
                if problem.field is None or problem.field.split(".")[0] in sections]
    if spec is None or relevant:
        for problem in relevant:
            log(str(problem), "ERROR")
        raise Failure(f"the experiment spec {path} is invalid ({len(relevant)} problem"
                      f"{'s' if len(relevant) != 1 else ''})")
    _map_spec_paths(spec)
    return spec


def _map_spec_paths(spec):
    """In a rehearsal, read the container paths a spec names where the runner mounted them.

    The spec names paths under tao_mount_dir, as on the cluster; the local runner passes its
    container-to-host map in LOCAL_RUNNER_PATH_MAP (whole path components, as a mount).
    """
    mapping = os.environ.get(PATH_MAP_ENV)
    if not mapping:
        return
    path_map = PathMap({prefix: Path(host) for prefix, host in json.loads(mapping).items()})
    for field in specs.PATH_FIELDS:
        section, name = field.split(".")
        message = getattr(spec.message, section)
        value = getattr(message, name)
        if value.startswith("/"):
            setattr(message, name, path_map.lookup(value) or value)


def image_files(folder, extensions=IMAGE_EXTENSIONS):
    found = []
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        subdirectories.sort()
        found.extend(os.path.join(directory, name) for name in sorted(files)
                     if os.path.splitext(name)[1].lower() in extensions)
    return found


def read_split(path, what):
    """``{class: [images]}`` of a split, like Keras' flow_from_directory; prints its line."""
    if not os.path.isdir(path):
        raise Failure(f"FileNotFoundError: {what} {path} does not exist or is not a directory")
    classes = sorted(entry for entry in os.listdir(path)
                     if os.path.isdir(os.path.join(path, entry)))
    split = {name: image_files(os.path.join(path, name)) for name in classes}
    say(f"Found {sum(len(images) for images in split.values())} images belonging to "
        f"{len(classes)} classes.")
    return split


def classmap(classes):
    return {name: index for index, name in enumerate(sorted(classes))}


def rng(*parts):
    return random.Random("/".join(str(part) for part in parts))


# -- learning-rate schedules ----------------------------------------------------------------
def learning_rate(lr_config, epoch, n_epochs):
    """The rate TAO's schedule gives for 0-based ``epoch``."""
    if lr_config.HasField("step"):
        step = lr_config.step
        return step.learning_rate * step.gamma ** (epoch // max(1, step.step_size))
    if lr_config.HasField("cosine"):
        cosine = lr_config.cosine
        progress = epoch / max(1, n_epochs)
        floor = cosine.learning_rate * cosine.min_lr_ratio
        return floor + (cosine.learning_rate - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    anneal = lr_config.soft_anneal
    progress = epoch / max(1, n_epochs)
    rate = anneal.learning_rate
    for point in anneal.annealing_points:
        if progress >= point:
            rate /= anneal.annealing_divider or 10.0
    return rate


# -- classification subtasks ----------------------------------------------------------------
def train(arguments):
    spec = load_spec(arguments.experiment_spec_file, ("model_config", "train_config"))
    model_config = spec.message.model_config
    train_config = spec.message.train_config
    arch, layers = model_config.arch, model_config.n_layers
    seed = train_config.random_seed
    pretrained = None
    if train_config.pretrained_model_path:
        log(f"Loading pretrained weights from {train_config.pretrained_model_path}")
        pretrained = read_encrypted(train_config.pretrained_model_path, arguments.key,
                                    "pretrained model")
        if (pretrained.get("arch"), pretrained.get("n_layers")) != (arch, layers):
            raise Failure(f"ValueError: the pretrained model {train_config.pretrained_model_path}"
                          f" is a {pretrained.get('arch')}{pretrained.get('n_layers')}, not the "
                          f"{arch}{layers} the spec builds; weights cannot be loaded")
    train_split = read_split(train_config.train_dataset_path, "train_dataset_path")
    val_split = read_split(train_config.val_dataset_path, "val_dataset_path")
    if sorted(train_split) != sorted(val_split):
        raise Failure("ValueError: the training and validation sets have different classes "
                      f"({', '.join(train_split)} vs {', '.join(val_split)})")
    if len(train_split) < 2:
        raise Failure(f"ValueError: classification needs at least 2 classes, found "
                      f"{len(train_split)} in {train_config.train_dataset_path}")
    for split, path in ((train_split, train_config.train_dataset_path),
                        (val_split, train_config.val_dataset_path)):
        if not any(split.values()):
            raise Failure(f"ValueError: no images found in {path}")
    results = arguments.results_dir
    weights = os.path.join(results, "weights")
    os.makedirs(weights, exist_ok=True)
    classes = sorted(train_split)
    with open(os.path.join(results, "classmap.json"), "w") as handle:
        json.dump(classmap(classes), handle)

    parameters = (pretrained or {}).get("parameters") or PARAMETERS.get(
        (arch, layers), 1_000_000 * max(1, layers))
    draw = rng(seed, arch, layers, ",".join(classes))
    if pretrained and pretrained.get("pruning"):
        start = pretrained["val_acc"]
        final = min(0.99, pretrained["pruning"]["unpruned_val_acc"] + draw.uniform(-0.02, 0.02))
    else:
        start = 1.0 / len(classes) + (0.25 if pretrained else 0.0)
        final = min(0.97, 0.78 + draw.uniform(0.0, 0.14) + (0.04 if pretrained else 0.0))
    n_epochs = train_config.n_epochs
    first = arguments.init_epoch
    csv_path = os.path.join(results, "training.csv")
    status_path = os.path.join(results, "status.json")
    mode = "a" if first and os.path.exists(csv_path) else "w"
    with open(csv_path, mode, newline="") as csv_file, open(status_path, mode) as status:
        rows = csv.writer(csv_file)
        if mode == "w":
            rows.writerow(["epoch", "acc", "loss", "lr", "val_acc", "val_loss"])
        _status(status, "STARTED", "Starting Training Loop.")
        log(f"Number of GPUs: {arguments.gpus}; training {arch}{layers} on {len(classes)} "
            f"classes for {n_epochs} epochs")
        val_acc = val_loss = 0.0
        for epoch in range(first, n_epochs):
            progress = (1 - math.exp(-4.0 * (epoch + 1) / n_epochs)) / (1 - math.exp(-4.0))
            noise = 0.0 if epoch == n_epochs - 1 else draw.uniform(-0.01, 0.01)
            val_acc = min(0.999, max(0.0, start + (final - start) * progress + noise))
            acc = min(0.999, val_acc + 0.03 * progress)
            loss = -math.log(acc) * 1.3 + 0.05
            val_loss = -math.log(max(val_acc, 1e-6)) * 1.3 + 0.08
            rate = float(f"{learning_rate(train_config.lr_config, epoch, n_epochs):.7g}")
            say(f"Epoch {epoch + 1}/{n_epochs}")
            batches = -(-sum(len(images) for images in train_split.values())
                        // train_config.batch_size_per_gpu)
            say(f"{batches}/{batches} [==============================] - 1s - loss: {loss:.4f} - "
                f"acc: {acc:.4f} - val_loss: {val_loss:.4f} - val_acc: {val_acc:.4f}")
            path = os.path.join(weights, checkpoint_name(arch, epoch + 1,
                                                         RELEASE["checkpoint_suffix"]))
            say(f"\nEpoch {epoch + 1:05d}: saving model to {path}")
            write_model(path, {
                "format": RELEASE["model_format"],
                "key": key_digest(arguments.key) if RELEASE["encrypts"] else None, "arch": arch,
                "n_layers": layers, "input_image_size": model_config.input_image_size,
                "classes": classes, "epoch": epoch + 1, "parameters": parameters,
                "val_acc": val_acc, "seed": seed, "pruning": None,
                "pretrained": train_config.pretrained_model_path or None,
            })
            rows.writerow([epoch, round(acc, 6), round(loss, 6), rate, round(val_acc, 6),
                           round(val_loss, 6)])
            _status(status, "RUNNING", "Training loop in progress", epoch=epoch + 1,
                    max_epoch=n_epochs, acc=acc, loss=loss, val_acc=val_acc, val_loss=val_loss)
        _status(status, "SUCCESS", "Training finished successfully.")
    say(f"Total Val Loss: {val_loss!r}")
    say(f"Total Val accuracy: {val_acc!r}")


def _status(handle, status, message, **values):
    now = datetime.datetime.now()
    record = {"date": f"{now.month}/{now.day}/{now.year}",
              "time": f"{now.hour}:{now.minute}:{now.second}", "status": status,
              "verbosity": "INFO", "message": message}
    record.update(values)
    handle.write(json.dumps(record) + "\n")


def predictions(header, split):
    """A confusion matrix (rows true, columns predicted) for ``split``, as the model would."""
    classes = sorted(split)
    matrix = [[0] * len(classes) for _ in classes]
    for row, name in enumerate(classes):
        draw = rng(header.get("seed"), header.get("epoch"), header.get("val_acc"), name)
        accuracy = min(1.0, max(0.0, header["val_acc"] + draw.uniform(-0.05, 0.05)))
        count = len(split[name])
        correct = round(count * accuracy)
        matrix[row][row] = correct
        others = [column for column in range(len(classes)) if column != row]
        for _ in range(count - correct):
            matrix[row][draw.choice(others)] += 1
    return classes, matrix


def evaluate(arguments):
    spec = load_spec(arguments.experiment_spec_file,
                     ("model_config", "train_config", "eval_config"))
    eval_config = spec.message.eval_config
    if arguments.classmap:
        names = _read_classmap(arguments.classmap)
        say(f"Class name = {names}")
    log(f"Loading model from {eval_config.model_path}")
    header = read_encrypted(eval_config.model_path, arguments.key)
    split = read_split(eval_config.eval_dataset_path, "eval_dataset_path")
    if len(split) != len(header["classes"]):
        raise Failure(f"ValueError: the model has {len(header['classes'])} classes but "
                      f"{eval_config.eval_dataset_path} has {len(split)}")
    total = sum(len(images) for images in split.values())
    if not total:
        raise Failure(f"ValueError: no images found in {eval_config.eval_dataset_path}")
    classes, matrix = predictions(header, split)
    correct = sum(matrix[i][i] for i in range(len(classes)))
    top1 = correct / total
    errors = total - correct
    top_k = eval_config.top_k
    within_k = correct + (errors if top_k >= len(classes) else
                          round(errors * (top_k - 1) / (len(classes) - 1)))
    log(f"Processing dataset (evaluation): {eval_config.eval_dataset_path}")
    loss = -math.log(max(top1, 1e-6)) * 1.3 + rng(header.get("val_acc")).uniform(0.02, 0.08)
    say(f"Evaluation Loss: {loss!r}")
    say(f"Evaluation Top K accuracy: {within_k / total!r}")
    read_split(eval_config.eval_dataset_path, "eval_dataset_path")
    say("Confusion Matrix")
    say(numpy_str(shown_matrix(matrix)))
    say("Classification Report")
    say(classification_report(classes, matrix))


def shown_matrix(matrix):
    """The matrix TAO prints: ``confusion_matrix(y_true, y_pred)`` without ``labels=``
    (tao_tensorflow1_backend@d73dcfc ``makenet/scripts/evaluate.py`` line 321) keeps only
    the classes that have images or predictions, so an empty class folder the model never
    predicts has no row or column."""
    kept = [i for i in range(len(matrix)) if sum(matrix[i]) or any(row[i] for row in matrix)]
    return [[matrix[i][j] for j in kept] for i in kept]


def _read_classmap(path):
    if not os.path.isfile(path):
        raise Failure(f"FileNotFoundError: class map {path} does not exist")
    with open(path) as handle:
        mapping = json.load(handle)
    return [name for name, _ in sorted(mapping.items(), key=lambda item: item[1])]


def prune(arguments):
    header = read_encrypted(arguments.model, arguments.key)
    if header.get("format") != RELEASE["model_format"]:
        raise Failure(f"ValueError: {arguments.model} is a {header.get('format')} file, not a "
                      f"trained {RELEASE['checkpoint_suffix']} model")
    log(f"Loading model {arguments.model}", logger="modulus.pruning")
    factor = {"union": 1.0, "intersection": 0.8, "arithmetic_mean": 0.9,
              "geometric_mean": 0.85}[arguments.equalization_criterion]
    ratio = max(0.05, 1.0 - 0.95 * arguments.pruning_threshold ** 0.8 * factor)
    pruned = dict(header)
    pruned.update({
        "key": key_digest(arguments.key) if RELEASE["encrypts"] else None,
        "parameters": int(header["parameters"] * ratio),
        "val_acc": header["val_acc"] * (0.55 + 0.4 * ratio),
        "pruning": {"from": os.path.abspath(arguments.model),
                    "from_digest": file_digest(arguments.model),
                    "threshold": arguments.pruning_threshold,
                    "criterion": arguments.equalization_criterion,
                    "ratio": ratio, "unpruned_val_acc": header["val_acc"]},
    })
    write_model(arguments.output_file, pruned)
    log(f"Pruning ratio (pruned model / original model): "
        f"{pruned['parameters'] / header['parameters']!r}")


def inference(arguments):
    spec = load_spec(arguments.experiment_spec_file, ("model_config", "train_config"))
    header = read_encrypted(arguments.model, arguments.key)
    names = _read_classmap(arguments.classmap)
    if len(names) != len(header["classes"]):
        raise Failure(f"ValueError: the class map {arguments.classmap} has {len(names)} classes "
                      f"but the model has {len(header['classes'])}")
    size = spec.message.model_config.input_image_size
    if size != header.get("input_image_size"):
        log(f"the spec's input_image_size {size} differs from the model's "
            f"{header.get('input_image_size')}", "WARNING")
    if arguments.image:
        if not os.path.isfile(arguments.image):
            raise Failure(f"FileNotFoundError: image {arguments.image} does not exist")
        name, confidence = _classify(header, names, arguments.image)
        say(f"Current predictions: {confidence:.4f}")
        say(f"Current image: {arguments.image}, predicted class: {name}")
        return
    if not os.path.isdir(arguments.image_dir):
        raise Failure(f"FileNotFoundError: image directory {arguments.image_dir} does not exist")
    images = image_files(arguments.image_dir, INFERENCE_EXTENSIONS)
    if not images:
        log(f"no .jpg, .jpeg or .png images in {arguments.image_dir}", "WARNING")
    # TAO 5 writes it into its -r folder when given one (inference.py lines 293-295).
    result = os.path.join(getattr(arguments, "results_dir", None) or arguments.image_dir,
                          "result.csv")
    with open(result, "w", newline="") as handle:
        rows = csv.writer(handle)
        for start in range(0, len(images), arguments.batch_size):
            for image in images[start:start + arguments.batch_size]:
                name, confidence = _classify(header, names, image)
                rows.writerow([image, name, f"{confidence:.4f}"])
    log(f"Inference results for {len(images)} images written to {result}")


def _classify(header, names, image):
    """The class and confidence the model gives ``image``: right with its accuracy, when the
    image's folder names a class."""
    draw = rng(header.get("seed"), header.get("epoch"), os.path.basename(image))
    truth = os.path.basename(os.path.dirname(image))
    if truth in names and draw.random() < header["val_acc"]:
        return truth, draw.uniform(0.6, 0.99)
    return draw.choice([name for name in names if name != truth] or names), draw.uniform(0.3, 0.7)


def export(arguments):
    if arguments.experiment_spec_file:
        load_spec(arguments.experiment_spec_file, ("model_config",))
    header = read_encrypted(arguments.model, arguments.key)
    output = arguments.output_file or os.path.splitext(arguments.model)[0] + ".etlt"
    refuse_existing(output)
    if arguments.data_type == "int8":
        if arguments.cal_data_file:
            tensors = read_model(arguments.cal_data_file, "calibration tensorfile")
            if tensors.get("format") != "tensorfile":
                raise Failure(f"ValueError: {arguments.cal_data_file} is not a calibration "
                              "tensorfile")
            if tensors.get("input_image_size") != header.get("input_image_size"):
                raise Failure(f"ValueError: the calibration tensorfile holds "
                              f"{tensors.get('input_image_size')} images but the model takes "
                              f"{header.get('input_image_size')}")
            source = arguments.cal_data_file
        elif arguments.cal_image_dir and image_files(arguments.cal_image_dir):
            source = arguments.cal_image_dir
        else:
            raise Failure("ValueError: INT8 export needs calibration data: --cal_data_file (an "
                          "existing tensorfile) or --cal_image_dir with images")
    log(f"Exporting {arguments.model} to {output} ({arguments.data_type})")
    exported = {key: header[key] for key in ("arch", "n_layers", "input_image_size", "classes",
                                             "parameters", "val_acc", "seed")}
    exported.update({"format": "etlt", "key": key_digest(arguments.key),
                     "from_digest": file_digest(arguments.model), "input_node": INPUT_NODE,
                     "output_node": OUTPUT_NODE})
    write_model(output, exported)
    if arguments.data_type == "int8":
        write_model(arguments.cal_cache_file, {
            "format": "calibration_cache", "source": os.path.abspath(source),
            "batches": arguments.batches, "batch_size": arguments.batch_size,
            "input_image_size": header.get("input_image_size")})
        log(f"Calibration cache written to {arguments.cal_cache_file}")
    if arguments.engine_file:
        write_model(arguments.engine_file, dict(exported, format="engine", key=None,
                                                precision=arguments.data_type,
                                                max_batch_size=arguments.max_batch_size))


def calibration_tensorfile(arguments):
    spec = load_spec(arguments.experiment_spec_file, ("model_config", "train_config"))
    refuse_existing(arguments.output_file)
    train_config = spec.message.train_config
    path = (train_config.val_dataset_path if arguments.use_validation_set
            else train_config.train_dataset_path)
    split = read_split(path, "dataset")
    images = sum(len(files) for files in split.values())
    batch = train_config.batch_size_per_gpu
    if arguments.max_batches > images // batch:
        raise Failure(f"ValueError: max_batches ({arguments.max_batches}) is larger than the "
                      f"number of batches the dataset holds ({images} images / batch_size_per_gpu"
                      f" {batch} = {images // batch})")
    write_model(arguments.output_file, {
        "format": "tensorfile", "batches": arguments.max_batches, "batch_size": batch,
        "input_image_size": spec.message.model_config.input_image_size,
        "source": os.path.abspath(path), "parameters": arguments.max_batches * batch * 4096})
    log(f"Wrote {arguments.max_batches} batches of {batch} images to {arguments.output_file}")


# -- numpy's and scikit-learn's text formats -------------------------------------------------
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


# -- command lines ----------------------------------------------------------------------------
def common_options() -> argparse.ArgumentParser:
    """The options every TAO classification subtask takes (3.0 and the 5.0 wrapper alike),
    as a parent parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--gpus", type=int, default=1)
    common.add_argument("--gpu_index", type=int, nargs="+")
    common.add_argument("--use_amp", action="store_true")
    common.add_argument("--log_file")
    common.add_argument("-np", "--num_processes", type=int, default=-1)
    common.add_argument("-v", "--verbose", action="store_true")
    return common


def add_pruning_options(command: argparse.ArgumentParser) -> None:
    """How ``prune`` is tuned; the same options in 3.0 and the 5.0 wrapper."""
    command.add_argument("-eq", "--equalization_criterion", default="union",
                         choices=("union", "intersection", "arithmetic_mean", "geometric_mean"))
    command.add_argument("-pth", "--pruning_threshold", type=float, default=0.1)
    command.add_argument("-pg", "--pruning_granularity", type=int, default=8)
    command.add_argument("-nf", "--min_num_filters", type=int, default=16)
    command.add_argument("-n", "--normalizer", choices=("max", "L2"), default="max")
    command.add_argument("-el", "--excluded_layers", nargs="*", default=[])


def _classification_parser():
    """The wrapper's parser, and each subtask's."""
    parser = argparse.ArgumentParser(prog="classification",
                                     description="Fake TAO classification (tests only).")
    subtasks = parser.add_subparsers(dest="subtask", metavar="{" + ",".join(SUBTASKS) + "}")
    subtasks.required = True
    common = common_options()

    def subtask(name):
        return subtasks.add_parser(name, parents=[common])

    command = subtask("train")
    command.add_argument("-e", "--experiment_spec_file", required=True)
    command.add_argument("-r", "--results_dir", required=True)
    command.add_argument("-k", "--key", required=True)
    command.add_argument("--init_epoch", type=int, default=0)
    command.add_argument("-c", "--classmap_json")

    command = subtask("evaluate")
    command.add_argument("-e", "--experiment_spec_file", required=True)
    command.add_argument("-k", "--key", required=True)
    command.add_argument("-cm", "--classmap", dest="classmap")

    command = subtask("prune")
    command.add_argument("-m", "--model", required=True)
    command.add_argument("-o", "--output_file", required=True)
    command.add_argument("-k", "--key", required=True)
    add_pruning_options(command)

    command = subtask("inference")
    command.add_argument("-m", "--model", required=True)
    command.add_argument("-k", "--key", required=True)
    command.add_argument("-e", "--experiment_spec_file", required=True)
    images = command.add_mutually_exclusive_group(required=True)
    images.add_argument("-i", "--image")
    images.add_argument("-d", "--image_dir")
    command.add_argument("-b", "--batch_size", type=int, default=1)
    command.add_argument("-cm", "--classmap", required=True)

    command = subtask("export")
    command.add_argument("-m", "--model", required=True)
    command.add_argument("-k", "--key", required=True)
    command.add_argument("-o", "--output_file")
    command.add_argument("-e", "--experiment_spec_file")
    command.add_argument("--data_type", choices=("fp32", "fp16", "int8"), default="fp32")
    command.add_argument("--cal_data_file")
    command.add_argument("--cal_image_dir")
    command.add_argument("--cal_cache_file", default="./cal.bin")
    command.add_argument("--batches", type=int, default=10)
    command.add_argument("--batch_size", type=int, default=8)
    command.add_argument("--max_batch_size", type=int, default=16)
    command.add_argument("--max_workspace_size", type=int)
    command.add_argument("--engine_file")

    command = subtask("calibration_tensorfile")
    command.add_argument("-e", "--experiment_spec_file", required=True)
    command.add_argument("-o", "--output_file", required=True)
    command.add_argument("-m", "--max_batches", type=int, required=True)
    command.add_argument("--use_validation_set", action="store_true")
    return parser, subtasks.choices


# Rehearsing failures: FAKE_TAO_FAIL=prune,export makes those subtasks crash as TAO does.
FAIL_ENV = "FAKE_TAO_FAIL"


def _injected_failures():
    return {name.strip() for name in os.environ.get(FAIL_ENV, "").split(",") if name.strip()}


def classification_main(argv):
    """``classification SUBTASK ...``: 0 on success, 1 on failure, 2 on a usage error."""
    parser, subtask_parsers = _classification_parser()
    arguments = parser.parse_args(argv)
    unknown = sorted(_injected_failures() - set(SUBTASKS))
    if unknown:  # a typo would otherwise rehearse a crash that never comes
        log(f"{FAIL_ENV}: {', '.join(unknown)} is not a subtask; use a comma-separated list "
            f"of {', '.join(SUBTASKS)}", "ERROR")
        return 2
    handlers = {"train": train, "evaluate": evaluate, "prune": prune, "inference": inference,
                "export": export, "calibration_tensorfile": calibration_tensorfile}
    try:
        if arguments.use_amp and arguments.subtask != "train":
            raise Failure(f"--use_amp is only supported by train, not {arguments.subtask}")
        if arguments.gpus < 1:
            raise Failure(f"--gpus {arguments.gpus}: at least one GPU is needed")
        if arguments.gpus > 1 and arguments.subtask != "train":
            log(f"{arguments.subtask} runs on one GPU; ignoring --gpus {arguments.gpus}",
                "WARNING")
        # The script's own view of its options: the wrapper's round through bash.
        arguments = wrapper.reread(arguments, subtask_parsers[arguments.subtask])
        if arguments.subtask in _injected_failures():
            raise Failure(f"{FAIL_ENV} asks {arguments.subtask} to fail: CUDA_ERROR_OUT_OF_MEMORY "
                          "(a simulated crash)")
        handlers[arguments.subtask](arguments)
    except wrapper.Crash as crash:
        return wrapper_crash(crash)
    except (Failure, wrapper.ScriptFailed) as failure:
        log(str(failure), "ERROR")
        log("Execution status: FAIL", logger="root")
        return 1
    log("Execution status: PASS", logger="root")
    return 0


def wrapper_crash(crash):
    """The wrapper's uncaught exception: a traceback on stderr, exit status 1."""
    sys.stderr.write(f"Traceback (most recent call last):\n  ...\n{crash}\n")
    return 1


def ngc_main(argv):
    """``ngc registry model download-version ORG/[TEAM/]MODEL:VERSION [--dest DIR]``."""
    parser = argparse.ArgumentParser(prog="ngc", description="Fake NGC CLI (tests only).")
    groups = parser.add_subparsers(dest="group", metavar="{registry}")
    groups.required = True
    registry = groups.add_parser("registry").add_subparsers(dest="kind", metavar="{model}")
    registry.required = True
    model = registry.add_parser("model").add_subparsers(dest="action",
                                                        metavar="{download-version}")
    model.required = True
    download = model.add_parser("download-version")
    download.add_argument("target", metavar="ORG/[TEAM/]MODEL:VERSION")
    download.add_argument("--dest", default=".")
    arguments = parser.parse_args(argv)
    match = NGC_NAME.match(arguments.target)
    if not match:
        sys.stderr.write(f"Error: Invalid target '{arguments.target}': download-version needs "
                         "org/[team/]model:version\n")
        return 1
    org, _, name, version = match.groups()
    if org != "nvidia" and not os.environ.get("NGC_CLI_API_KEY"):
        sys.stderr.write(f"Error: {arguments.target} is not public: set NGC_CLI_API_KEY (and "
                         "NGC_CLI_ORG) to download it\n")
        return 1
    folder = ngc_download_dir(arguments.dest, arguments.target)
    file_name = ngc_model_file(arguments.target) or f"{name}_{version}.hdf5"
    family = re.match(r"([a-z_]+?)_?(\d+)$", version)
    arch, layers = (family.group(1), int(family.group(2))) if family else (version, 0)
    write_model(os.path.join(folder, file_name), {
        "format": "hdf5", "key": None, "arch": arch, "n_layers": layers,
        "parameters": PARAMETERS.get((arch, layers), 5_000_000), "ngc": arguments.target})
    size = os.path.getsize(os.path.join(folder, file_name)) / 1e3
    say(f"Downloaded {size:.1f} KB in 1s, Download speed: {size:.1f} KB/s")
    say("-" * 52)
    say(f"   Transfer id: {name}_v{version} Download status: Completed.")
    say(f"   Downloaded local path: {os.path.abspath(folder)}")
    say("   Total files downloaded: 1")
    say(f"   Total downloaded size: {size:.1f} KB")
    say("-" * 52)
    return 0


def converter_main(argv):
    """``converter ETLT -k KEY -d C,H,W -o OUTPUT_NODE [-e ENGINE] [-t fp32|fp16|int8] ...``."""
    parser = argparse.ArgumentParser(prog="converter",
                                     description="Fake TAO converter (tests only).")
    parser.add_argument("etlt")
    parser.add_argument("-k", dest="key", required=True)
    parser.add_argument("-d", dest="dims", required=True)
    parser.add_argument("-o", dest="outputs", required=True)
    parser.add_argument("-e", dest="engine", default="saved.engine")
    parser.add_argument("-t", dest="precision", choices=("fp32", "fp16", "int8"),
                        default="fp32")
    parser.add_argument("-c", dest="cache")
    parser.add_argument("-b", dest="batch", type=int, default=8)
    parser.add_argument("-m", dest="max_batch", type=int, default=16)
    parser.add_argument("-i", dest="order", choices=("nchw", "nhwc", "nc"), default="nchw")
    parser.add_argument("-w", dest="workspace", type=int, default=1 << 30)
    parser.add_argument("-p", dest="profiles", action="append", default=[])
    parser.add_argument("-s", dest="strict", action="store_true")
    arguments = parser.parse_args(argv)
    if not re.match(r"^\d+(,\d+)*$", arguments.dims):
        parser.error(f"-d {arguments.dims}: give the input dimensions as comma-separated "
                     "integers, e.g. 3,224,224")
    try:
        header = read_encrypted(arguments.etlt, arguments.key, "etlt model")
        if header.get("format") != "etlt":
            raise Failure(f"{arguments.etlt} is not an exported .etlt model")
        dims = tuple(int(part) for part in arguments.dims.split(","))
        channels, height, width = specs.parse_image_size(header["input_image_size"])
        expected = (height, width, channels) if arguments.order == "nhwc" else (
            channels, height, width)
        if dims != expected:
            raise Failure(f"UffParser: input {INPUT_NODE} has dimensions "
                          f"{','.join(str(n) for n in expected)}, not {arguments.dims} (-d)")
        for node in arguments.outputs.split(","):
            if node != header["output_node"]:
                raise Failure(f"UffParser: output node {node} not found in the model "
                              f"(it has {header['output_node']})")
        if arguments.precision == "int8":
            if not arguments.cache or not os.path.isfile(arguments.cache):
                raise Failure(f"INT8 needs a calibration cache (-c): "
                              f"{arguments.cache or 'none given'} does not exist")
            read_model(arguments.cache, "calibration cache")
    except Failure as failure:
        say(f"[ERROR] {failure}")
        return 1
    say(f"[INFO] Detected input dimensions from the model: (-1, {arguments.dims})")
    say(f"[INFO] Building a {arguments.precision} engine, max batch size {arguments.max_batch}")
    write_model(arguments.engine, {
        "format": "engine", "key": None, "precision": arguments.precision,
        "max_batch_size": arguments.max_batch, "dims": arguments.dims,
        "input_order": arguments.order, "from_digest": file_digest(arguments.etlt),
        "classes": header["classes"], "parameters": header["parameters"]})
    say(f"[INFO] Engine written to {arguments.engine}")
    return 0
