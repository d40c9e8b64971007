"""The logic behind ``rehearsal/fake_tao/bin/classification``: TAO 3.0's classification CLI.

It honours the contract in ``shared/reference/tao-classification-cli.md`` without a GPU or
TensorFlow: the same flags (argparse; an unknown subtask or a missing required flag is a
usage error, exit 2), the spec read as TAO reads it (``experiment.py``: protobuf text
format, then TAO's validator), a failure like TAO's when an input is missing (exit 1,
``Execution status: FAIL``), and the files TAO writes, under TAO's names. What it prints
follows TAO's streams: ``print`` output (Keras' ``Found N images``, ``Epoch NNNNN: saving
model to``, evaluate's results) on stdout, log lines (``<time> [INFO] <logger>: ...``,
``Execution status: ...``) on stderr. What differs in TAO 5 is in ``releases.py``;
``fake_tao5.py`` runs these subtasks with it.

It shares no code with ``tao_step``, whose view of TAO it exists to check. Numbers
(accuracy curves, confusion matrices, confidences) are deterministic functions of the
spec's ``random_seed``, the models and the dataset.
"""

import argparse
import csv
import json
import math
import os
import random
import sys
from pathlib import Path

from rehearsal.fake_tao import common, experiment, wrapper
from rehearsal.fake_tao.common import (
    INPUT_NODE,
    OUTPUT_NODE,
    PARAMETERS,
    Failure,
    file_digest,
    key_digest,
    log,
    read_encrypted,
    read_model,
    refuse_existing,
    say,
    status_line,
    write_model,
)
from rehearsal.fake_tao.formats import classification_report, numpy_str, shown_matrix
from rehearsal.fake_tao.releases import FAIL_ENV, TAO_3_0
from rehearsal.path_map import PathMap
from rehearsal.step_executor import PATH_MAP_ENV

SUBTASKS = TAO_3_0.subtasks
# The images TAO's data loaders read (tao-classification-cli.md, "Data"), in any case.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")
# classification inference -d reads only these (makenet/scripts/inference.py VALID_IMAGE_EXT).
INFERENCE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# The spec fields TAO opens as files or folders.
PATH_FIELDS = (("train_config", "train_dataset_path"), ("train_config", "val_dataset_path"),
               ("train_config", "pretrained_model_path"), ("eval_config", "eval_dataset_path"),
               ("eval_config", "model_path"))


# -- specs and data -------------------------------------------------------------------------
def load_spec(path, required_messages=experiment.TRAINVAL_REQUIRED):
    """The spec at ``path`` as the subtask's script loads it: parsed, then validated with
    ``required_messages`` (None: not validated, as TAO Deploy reads it); Failure with TAO's
    error otherwise."""
    log(f"Loading experiment spec at {path}.")
    spec_format = common.RELEASE.spec_format
    try:
        with open(path) as handle:
            spec = experiment.parse(handle.read(), spec_format)
        if required_messages is not None:
            experiment.validate(spec, spec_format, required_messages)
    except (OSError, UnicodeDecodeError) as error:
        raise Failure(f"{type(error).__name__}: {error}") from None
    except experiment.SpecError as error:
        raise Failure(str(error)) from None
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
    for section, name in PATH_FIELDS:
        message = getattr(spec, section)
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
def checkpoint_name(arch, epoch):
    """The file TAO's checkpointer writes after 1-based ``epoch``: train.py's
    ``'%s_{epoch:03d}.hdf5' % model_name`` (model_config.arch only), .tlt in 3.0."""
    return f"{arch}_{epoch:03d}{common.RELEASE.checkpoint_suffix}"


def _load_pretrained(train_config, key, arch, layers):
    """The pretrained model's header, or None when the spec names none."""
    path = train_config.pretrained_model_path
    if not path:
        return None
    log(f"Loading pretrained weights from {path}")
    pretrained = read_encrypted(path, key, "pretrained model")
    if (pretrained.get("arch"), pretrained.get("n_layers")) != (arch, layers):
        raise Failure(f"ValueError: the pretrained model {path} is a {pretrained.get('arch')}"
                      f"{pretrained.get('n_layers')}, not the {arch}{layers} the spec builds; "
                      "weights cannot be loaded")
    return pretrained


def _read_training_data(train_config):
    """The training split, after checking it against the validation split."""
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
    return train_split


def _accuracy_range(draw, pretrained, classes):
    """(first, last) validation accuracy of the run: a retrain from a pruned model starts
    at its accuracy and recovers the unpruned one."""
    if pretrained and pretrained.get("pruning"):
        start = pretrained["val_acc"]
        final = min(0.99, pretrained["pruning"]["unpruned_val_acc"] + draw.uniform(-0.02, 0.02))
    else:
        start = 1.0 / len(classes) + (0.25 if pretrained else 0.0)
        final = min(0.97, 0.78 + draw.uniform(0.0, 0.14) + (0.04 if pretrained else 0.0))
    return start, final


def _epoch_metrics(epoch, n_epochs, accuracies, draw):
    """(acc, loss, val_acc, val_loss) after 0-based ``epoch``: a saturating curve."""
    start, final = accuracies
    progress = (1 - math.exp(-4.0 * (epoch + 1) / n_epochs)) / (1 - math.exp(-4.0))
    noise = 0.0 if epoch == n_epochs - 1 else draw.uniform(-0.01, 0.01)
    val_acc = min(0.999, max(0.0, start + (final - start) * progress + noise))
    acc = min(0.999, val_acc + 0.03 * progress)
    loss = -math.log(acc) * 1.3 + 0.05
    val_loss = -math.log(max(val_acc, 1e-6)) * 1.3 + 0.08
    return acc, loss, val_acc, val_loss


def train(arguments):
    spec = load_spec(arguments.experiment_spec_file)
    model_config, train_config = spec.model_config, spec.train_config
    arch, layers = model_config.arch, model_config.n_layers
    pretrained = _load_pretrained(train_config, arguments.key, arch, layers)
    train_split = _read_training_data(train_config)
    results = arguments.results_dir
    weights = os.path.join(results, "weights")
    os.makedirs(weights, exist_ok=True)
    classes = sorted(train_split)
    with open(os.path.join(results, "classmap.json"), "w") as handle:
        json.dump(classmap(classes), handle)

    model = {"format": common.RELEASE.model_format,
             "key": key_digest(arguments.key) if common.RELEASE.encrypts else None,
             "arch": arch, "n_layers": layers, "input_image_size": model_config.input_image_size,
             "classes": classes, "parameters": (pretrained or {}).get("parameters")
             or PARAMETERS.get((arch, layers), 1_000_000 * max(1, layers)),
             "seed": train_config.random_seed, "pruning": None,
             "pretrained": train_config.pretrained_model_path or None}
    draw = rng(train_config.random_seed, arch, layers, ",".join(classes))
    accuracies = _accuracy_range(draw, pretrained, classes)
    n_epochs = train_config.n_epochs
    batches = -(-sum(len(images) for images in train_split.values())
                // train_config.batch_size_per_gpu)
    csv_path = os.path.join(results, "training.csv")
    mode = "a" if arguments.init_epoch and os.path.exists(csv_path) else "w"
    with open(csv_path, mode, newline="") as csv_file, \
            open(os.path.join(results, "status.json"), mode) as status:
        rows = csv.writer(csv_file)
        if mode == "w":
            rows.writerow(["epoch", "acc", "loss", "lr", "val_acc", "val_loss"])
        status_line(status, "STARTED", "Starting Training Loop.")
        log(f"Number of GPUs: {arguments.gpus}; training {arch}{layers} on {len(classes)} "
            f"classes for {n_epochs} epochs")
        val_acc = val_loss = 0.0
        for epoch in range(arguments.init_epoch, n_epochs):
            acc, loss, val_acc, val_loss = _epoch_metrics(epoch, n_epochs, accuracies, draw)
            rate = float(f"{learning_rate(train_config.lr_config, epoch, n_epochs):.7g}")
            say(f"Epoch {epoch + 1}/{n_epochs}")
            say(f"{batches}/{batches} [==============================] - 1s - loss: {loss:.4f} - "
                f"acc: {acc:.4f} - val_loss: {val_loss:.4f} - val_acc: {val_acc:.4f}")
            path = os.path.join(weights, checkpoint_name(arch, epoch + 1))
            say(f"\nEpoch {epoch + 1:05d}: saving model to {path}")
            write_model(path, dict(model, epoch=epoch + 1, val_acc=val_acc))
            rows.writerow([epoch, round(acc, 6), round(loss, 6), rate, round(val_acc, 6),
                           round(val_loss, 6)])
            status_line(status, "RUNNING", "Training loop in progress", epoch=epoch + 1,
                        max_epoch=n_epochs, acc=acc, loss=loss, val_acc=val_acc,
                        val_loss=val_loss)
        status_line(status, "SUCCESS", "Training finished successfully.")
    say(f"Total Val Loss: {val_loss!r}")
    say(f"Total Val accuracy: {val_acc!r}")


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
    spec = load_spec(arguments.experiment_spec_file, experiment.VALIDATION_REQUIRED)
    eval_config = spec.eval_config
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


def _read_classmap(path):
    if not os.path.isfile(path):
        raise Failure(f"FileNotFoundError: class map {path} does not exist")
    with open(path) as handle:
        mapping = json.load(handle)
    return [name for name, _ in sorted(mapping.items(), key=lambda item: item[1])]


def prune(arguments):
    header = read_encrypted(arguments.model, arguments.key)
    if header.get("format") != common.RELEASE.model_format:
        raise Failure(f"ValueError: {arguments.model} is a {header.get('format')} file, not a "
                      f"trained {common.RELEASE.checkpoint_suffix} model")
    log(f"Loading model {arguments.model}", logger="modulus.pruning")
    factor = {"union": 1.0, "intersection": 0.8, "arithmetic_mean": 0.9,
              "geometric_mean": 0.85}[arguments.equalization_criterion]
    ratio = max(0.05, 1.0 - 0.95 * arguments.pruning_threshold ** 0.8 * factor)
    pruned = dict(header)
    pruned.update({
        "key": key_digest(arguments.key) if common.RELEASE.encrypts else None,
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
    spec = load_spec(arguments.experiment_spec_file, experiment.VALIDATION_REQUIRED)
    header = read_encrypted(arguments.model, arguments.key)
    names = _read_classmap(arguments.classmap)
    if len(names) != len(header["classes"]):
        raise Failure(f"ValueError: the class map {arguments.classmap} has {len(names)} classes "
                      f"but the model has {len(header['classes'])}")
    size = spec.model_config.input_image_size
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
        load_spec(arguments.experiment_spec_file)
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
    spec = load_spec(arguments.experiment_spec_file)
    refuse_existing(arguments.output_file)
    train_config = spec.train_config
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
        "input_image_size": spec.model_config.input_image_size,
        "source": os.path.abspath(path), "parameters": arguments.max_batches * batch * 4096})
    log(f"Wrote {arguments.max_batches} batches of {batch} images to {arguments.output_file}")


# -- command lines ----------------------------------------------------------------------------
def common_options() -> argparse.ArgumentParser:
    """The options every TAO classification subtask takes (3.0 and the 5.0 wrapper alike),
    as a parent parser."""
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--gpus", type=int, default=1)
    shared.add_argument("--gpu_index", type=int, nargs="+")
    shared.add_argument("--use_amp", action="store_true")
    shared.add_argument("--log_file")
    shared.add_argument("-np", "--num_processes", type=int, default=-1)
    shared.add_argument("-v", "--verbose", action="store_true")
    return shared


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
    shared = common_options()

    def subtask(name):
        return subtasks.add_parser(name, parents=[shared])

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
