"""fake_tao: the whole TAO sequence of the pipeline end to end, TAO's failures, and the
output formats (numpy's matrix, scikit-learn's report) that the pipeline parses."""

import csv
import json
import math
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from conftest import COUNTS, MOUNT, REPO, ROOT

from rehearsal.dry_run import seed_workspace
from rehearsal.fake_tao import experiment, fake_tao, releases
from rehearsal.fake_tao.make_dataset import DEFAULT_CLASSES, make_dataset
from rehearsal.step_executor import PATH_MAP_ENV
from tao_step import profiles

BIN = os.path.join(ROOT, "rehearsal", "fake_tao", "bin")
KEY = "nvidia_tlt"
SPLIT = "tao-experiments/data/split"
PRUNED = "tao-experiments/output-pruned/resnet18_nopool_bn_pruned.tlt"


def tao(program, *arguments, env=None):
    """Run a fake executable the way a step would (through its #! line)."""
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    environment = {name: value for name, value in os.environ.items()
                   if name != "NGC_CLI_API_KEY"}
    environment.update(PATH=path, **(env or {}))
    return subprocess.run([os.path.join(BIN, program), *[str(a) for a in arguments]],
                          check=False, capture_output=True, text=True, timeout=120,
                          env=environment)


def passed(result):
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.rstrip().endswith("Execution status: PASS"), result.stderr
    return result


def failed(result, message):
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.rstrip().endswith("Execution status: FAIL"), result.stderr
    assert message in result.stderr, result.stderr
    return result


@pytest.fixture
def ws(workspace):
    """The workspace with its specs pointing at where it really is (TAO reads those paths)."""
    for spec in (workspace / "specs").iterdir():
        spec.write_text(spec.read_text().replace(MOUNT, str(workspace)))
    return workspace


def parse_evaluate(stdout):
    lines = stdout.splitlines()
    matrix_text = lines[lines.index("Confusion Matrix") + 1:lines.index("Classification Report")]
    numbers = [int(n) for n in re.findall(r"\d+", " ".join(matrix_text))]
    size = math.isqrt(len(numbers))
    assert size * size == len(numbers)
    found = [line for line in lines if line.startswith("Found ")]
    top_k = float(re.search(r"^Evaluation Top K accuracy: (\S+)$", stdout, re.MULTILINE).group(1))
    loss = float(re.search(r"^Evaluation Loss: (\S+)$", stdout, re.MULTILINE).group(1))
    report = lines[lines.index("Classification Report") + 1:]
    return {"matrix": [numbers[i * size:(i + 1) * size] for i in range(size)], "found": found,
            "top_k": top_k, "loss": loss, "report": report}


def test_the_pipeline_sequence(ws):
    specs = ws / "specs"
    out = ws / "tao-experiments"
    train_spec = specs / "classification_spec.cfg"
    retrain_spec = specs / "classification_retrain_spec.cfg"

    # download-model
    download = tao("ngc", "registry", "model", "download-version",
                   "nvidia/tao/pretrained_classification:resnet18", "--dest", ws / "models")
    assert download.returncode == 0, download.stderr
    pretrained = ws / "models" / "pretrained_classification_vresnet18" / "resnet_18.hdf5"
    assert pretrained.is_file()
    assert (f"Downloaded local path: {ws / 'models' / 'pretrained_classification_vresnet18'}"
            in download.stdout)

    # train-model
    result = passed(tao("classification", "train", "--gpus", 1, "-k", KEY, "-e", train_spec,
                        "-r", out / "output"))
    weights = sorted(os.listdir(out / "output" / "weights"))
    assert weights == [f"resnet_{epoch:03d}.tlt" for epoch in range(1, 81)]
    assert f"Epoch 00080: saving model to {out / 'output' / 'weights' / 'resnet_080.tlt'}" in (
        result.stdout)
    assert result.stdout.count("saving model to") == 80
    assert "Found 160 images belonging to 4 classes." in result.stdout
    final_accuracy = float(
        re.search(r"^Total Val accuracy: (\S+)$", result.stdout, re.MULTILINE)[1])
    assert re.search(r"^Total Val Loss: \d+\.\d+", result.stdout, re.MULTILINE)
    assert json.loads((out / "output" / "classmap.json").read_text()) == {
        name: index for index, name in enumerate(sorted(DEFAULT_CLASSES))}
    with open(out / "output" / "training.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["epoch", "acc", "loss", "lr", "val_acc", "val_loss"]
    assert len(rows) == 80
    assert float(rows[-1]["val_acc"]) > float(rows[0]["val_acc"])
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])
    assert float(rows[-1]["val_acc"]) == pytest.approx(final_accuracy, abs=1e-6)
    assert float(rows[-1]["lr"]) < float(rows[0]["lr"])  # the step schedule decays
    status = [json.loads(line) for line in (out / "output" / "status.json").read_text().split(
        "\n") if line]
    assert status[0]["status"] == "STARTED" and status[-1]["status"] == "SUCCESS"

    # evaluate-model
    first = parse_evaluate(passed(tao("classification", "evaluate", "-e", train_spec, "-k",
                                      KEY)).stdout)
    assert first["found"] == ["Found 40 images belonging to 4 classes."] * 2
    assert [sum(row) for row in first["matrix"]] == [COUNTS["test"]] * 4
    top1 = sum(first["matrix"][i][i] for i in range(4)) / 40
    assert 0.5 < top1 <= 1.0 and first["top_k"] >= top1
    accuracy_line = next(line for line in first["report"] if line.split()[:1] == ["accuracy"])
    assert float(accuracy_line.split()[1]) == pytest.approx(top1, abs=0.0051)  # 2 decimals
    assert [line.split()[0] for line in first["report"][2:6]] == sorted(DEFAULT_CLASSES)

    # prune-model
    model = out / "output" / "weights" / "resnet_080.tlt"
    result = passed(tao("classification", "prune", "-k", KEY, "-m", model, "-o", ws / PRUNED,
                        "-pth", 0.6, "-eq", "union"))
    ratio = float(re.search(r"Pruning ratio \(pruned model / original model\): (\S+)",
                            result.stderr)[1])
    assert 0 < ratio < 1
    assert os.path.getsize(ws / PRUNED) < os.path.getsize(model)
    header = fake_tao.read_model(str(ws / PRUNED))
    assert header["pruning"]["from_digest"] == fake_tao.file_digest(str(model))
    harder = tao("classification", "prune", "-k", KEY, "-m", model, "-o", out / "p2.tlt",
                 "-pth", 0.9)
    assert float(re.search(r"original model\): (\S+)", passed(harder).stderr)[1]) < ratio

    # retrain-model, reevaluate-model
    passed(tao("classification", "train", "--gpus", 1, "-k", KEY, "-e", retrain_spec, "-r",
               out / "output-retrain"))
    retrained = out / "output-retrain" / "weights" / "resnet_080.tlt"
    assert os.path.getsize(retrained) < os.path.getsize(model)
    assert fake_tao.read_model(str(retrained))["parameters"] == header["parameters"]
    second = parse_evaluate(passed(tao("classification", "evaluate", "-e", retrain_spec, "-k",
                                       KEY)).stdout)
    assert [sum(row) for row in second["matrix"]] == [COUNTS["test"]] * 4

    # test-infer
    images = ws / SPLIT / "test" / "person"
    passed(tao("classification", "inference", "-k", KEY, "-e", retrain_spec, "-m", retrained,
               "-d", images, "-b", 16, "-cm", out / "output-retrain" / "classmap.json"))
    with open(images / "result.csv") as handle:
        predictions = list(csv.reader(handle))
    assert sorted(row[0] for row in predictions) == sorted(
        str(images / name) for name in os.listdir(images) if name.endswith(".png"))
    assert all(len(row) == 3 and row[1] in DEFAULT_CLASSES and 0 < float(row[2]) <= 1
               for row in predictions)

    # export-model, calibrate-model, export-int8-model, convert-trt
    export = out / "export"
    passed(tao("classification", "export", "-m", retrained, "-k", KEY, "-o",
               export / "final_model.etlt"))
    calibrate = ("classification", "calibration_tensorfile", "-e", retrain_spec, "-m", 10,
                 "-o", export / "calibration.tensor")
    passed(tao(*calibrate))
    assert sorted(os.listdir(export)) == ["calibration.tensor", "final_model.etlt"]
    export_int8 = ("classification", "export", "-m", retrained, "-k", KEY, "-o",
                   export / "final_int8_model.etlt", "--cal_data_file",
                   export / "calibration.tensor", "--data_type", "int8", "--batches", 10,
                   "--cal_cache_file", export / "final_model_int8_cache.bin", "-v")
    passed(tao(*export_int8))
    assert (export / "final_model_int8_cache.bin").is_file()
    convert = tao("converter", export / "final_int8_model.etlt", "-k", KEY, "-o",
                  "predictions/Softmax", "-c", export / "final_model_int8_cache.bin", "-d",
                  "3,224,224", "-i", "nchw", "-m", 64, "-t", "int8", "-e",
                  export / "final_model.trt", "-b", 64)
    assert convert.returncode == 0, convert.stdout + convert.stderr
    engine = fake_tao.read_model(str(export / "final_model.trt"))
    assert (engine["format"], engine["precision"], engine["max_batch_size"]) == (
        "engine", "int8", 64)

    # A second run of the export steps meets their outputs and refuses to overwrite them.
    failed(tao("classification", "export", "-m", retrained, "-k", KEY, "-o",
               export / "final_model.etlt"), "already exists")
    failed(tao(*calibrate), "already exists")
    failed(tao(*export_int8), "already exists")


def tlt(path, key=KEY, **changes):
    """A fake trained model (or, with ``key=None``, an unencrypted pretrained one)."""
    header = {"format": "tlt", "key": key and fake_tao.key_digest(key), "arch": "resnet",
              "n_layers": 18, "input_image_size": "3,224,224", "classes": sorted(DEFAULT_CLASSES),
              "epoch": 80, "parameters": 11_200_000, "val_acc": 0.9, "seed": 0, "pruning": None}
    header.update(changes)
    fake_tao.write_model(str(path), header)
    return path


def test_train_fails_without_the_pretrained_model(ws):
    failed(tao("classification", "train", "-k", KEY, "-e", ws / "specs" /
               "classification_spec.cfg", "-r", ws / "out"), "pretrained model file")
    assert not (ws / "out" / "weights").exists()


def test_train_fails_on_a_bad_spec_with_taos_error(ws):
    spec = ws / "specs" / "classification_spec.cfg"
    spec.write_text(spec.read_text().replace("n_epochs: 80", "n_epochs: 0"))
    failed(tao("classification", "train", "-k", KEY, "-e", spec, "-r", ws / "out"),
           "AssertionError: Experiment Spec Setting Error: n_epochs should > 0. Wrong value: 0")
    assert not (ws / "out").exists()


# What TAO's loader says (tao_tensorflow1_backend@d73dcfc cv/common/spec_validator.py,
# makenet/spec_handling/constants.py; text_format's ParseError), and what 3.0 tolerates.
@pytest.mark.parametrize("version, old, new, error", [
    ("3.0", "use_batch_norm", "use_batchnorm",
     '8:3 : Message type "ModelConfig" has no field named "use_batchnorm".'),
    ("3.0", "use_batch_norm", "use_imagenet_head", None),
    ("5.0", "use_batch_norm", "use_imagenet_head",
     'Message type "ModelConfig" has no field named "use_imagenet_head".'),
    ("3.0", "  n_workers: 16\n", "", None),  # an unwritten field is checked in 5.0 only
    ("5.0", "  n_workers: 16\n", "", "n_workers should > 0. Wrong value: 0"),
    ("5.0", 'preprocess_mode: "caffe"', 'preprocess_mode: "bgr"',
     "preprocess_mode should in ['tf', 'caffe', 'torch']. Wrong value: bgr"),
    ("3.0", "reg_config {", "regularizer_config {", 'has no field named "regularizer_config"'),
    ("3.0", "  lr_config {\n    step {\n      learning_rate: 0.006\n      step_size: 10\n"
     "      gamma: 0.1\n    }\n  }\n", "", "lr_config should be set in experiment spec file."),
    ("3.0", "  batch_size_per_gpu: 64\n", "",
     "batch_size_per_gpu should > 0. Wrong value: 0"),  # required in 3.0 too
])
def test_specs_are_read_as_taos_loader_reads_them(version, old, new, error):
    release = releases.RELEASES[version]
    folder = os.path.join(ROOT, profiles.get(version).specs_dir)
    with open(os.path.join(folder, "classification_spec.cfg")) as handle:
        text = handle.read()
    assert old in text
    try:
        spec = experiment.parse(text.replace(old, new), release.spec_format)
        experiment.validate(spec, release.spec_format, experiment.VALIDATION_REQUIRED)
    except experiment.SpecError as refused:
        assert error is not None and error in str(refused), refused
    else:
        assert error is None


def test_every_release_the_pipeline_builds_for_has_a_fake():
    assert list(releases.RELEASES) == list(profiles.PROFILES)


def test_train_fails_when_val_classes_differ(ws):
    tlt(ws / "models" / "pretrained_classification_vresnet18" / "resnet_18.hdf5", key=None,
        format="hdf5")
    os.rename(ws / SPLIT / "val" / "dog", ws / SPLIT / "val" / "cat")
    failed(tao("classification", "train", "-k", KEY, "-e", ws / "specs" /
               "classification_spec.cfg", "-r", ws / "out"), "different classes")


def test_evaluate_fails_without_the_model(ws):
    failed(tao("classification", "evaluate", "-e", ws / "specs" / "classification_spec.cfg",
               "-k", KEY), "resnet_080.tlt does not exist")


def test_wrong_key_fails_like_tao(ws):
    model = tlt(ws / "tao-experiments" / "output" / "weights" / "resnet_080.tlt")
    failed(tao("classification", "evaluate", "-e", ws / "specs" / "classification_spec.cfg",
               "-k", "another_key"), "The key used to load the model")
    failed(tao("classification", "prune", "-k", "another_key", "-m", model, "-o",
               ws / "p.tlt"), "Invalid decryption")
    passed(tao("classification", "prune", "-k", KEY, "-m", model, "-o", ws / "p.tlt"))


@pytest.mark.parametrize("arguments, message", [
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["train", "-e", "spec.cfg", "-r", "out"], "the following arguments are required: -k"),
    (["prune", "-m", "a.tlt", "-k", KEY], "the following arguments are required: -o"),
    (["prune", "-m", "a.tlt", "-o", "b.tlt", "-k", KEY, "-eq", "mean"], "invalid choice"),
    (["inference", "-m", "a.tlt", "-k", KEY, "-e", "s.cfg", "-cm", "c.json"],
     "one of the arguments -i/--image -d/--image_dir is required"),
    (["export", "-m", "a.tlt", "-k", KEY, "--data_type", "int4"], "invalid choice"),
    (["calibration_tensorfile", "-e", "s.cfg", "-o", "c.tensor"],
     "the following arguments are required: -m"),
])
def test_usage_errors_exit_2(arguments, message):
    result = tao("classification", *arguments)
    assert result.returncode == 2
    assert message in result.stderr


def test_use_amp_is_for_train_only(ws):
    failed(tao("classification", "evaluate", "--use_amp", "-e", ws / "specs" /
               "classification_spec.cfg", "-k", KEY), "--use_amp is only supported by train")


def test_calibration_needs_enough_batches(ws):
    spec = ws / "specs" / "classification_retrain_spec.cfg"
    failed(tao("classification", "calibration_tensorfile", "-e", spec, "-m", 11, "-o",
               ws / "c.tensor"), "max_batches (11) is larger than the number of batches the "
           "dataset holds (160 images / batch_size_per_gpu 16 = 10)")
    assert not (ws / "c.tensor").exists()


def test_int8_export_needs_the_calibration_file(ws):
    model = tlt(ws / "m.tlt")
    failed(tao("classification", "export", "-m", model, "-k", KEY, "-o", ws / "m.etlt",
               "--data_type", "int8", "--cal_data_file", ws / "missing.tensor",
               "--cal_cache_file", ws / "cache.bin"), "missing.tensor does not exist")
    assert not (ws / "m.etlt").exists()
    passed(tao("classification", "export", "-m", model, "-k", KEY, "-o", ws / "m.etlt"))


def test_inference_needs_the_class_map(ws):
    model = tlt(ws / "m.tlt")
    failed(tao("classification", "inference", "-m", model, "-k", KEY, "-e",
               ws / "specs" / "classification_retrain_spec.cfg", "-d", ws / SPLIT / "test",
               "-cm", ws / "classmap.json"), "class map")


@pytest.fixture
def etlt(ws):
    path = ws / "m.etlt"
    passed(tao("classification", "export", "-m", tlt(ws / "m.tlt"), "-k", KEY, "-o", path))
    return path


@pytest.mark.parametrize("arguments, message", [
    (["-d", "3,224,224", "-o", "predictions/Softmax", "-k", "wrong"], "is incorrect"),
    (["-d", "3,112,112", "-o", "predictions/Softmax", "-k", KEY], "not 3,112,112 (-d)"),
    (["-d", "3,224,224", "-o", "softmax", "-k", KEY], "output node softmax not found"),
    (["-d", "3,224,224", "-o", "predictions/Softmax", "-k", KEY, "-t", "int8"],
     "INT8 needs a calibration cache (-c)"),
])
def test_converter_failures(etlt, arguments, message):
    result = tao("converter", etlt, *arguments, "-e", etlt.parent / "x.trt")
    assert result.returncode == 1
    assert message in result.stdout
    assert not (etlt.parent / "x.trt").exists()


def test_converter_requires_its_flags(etlt):
    for missing in ("-k", "-d", "-o"):
        flags = {"-k": KEY, "-d": "3,224,224", "-o": "predictions/Softmax"}
        del flags[missing]
        result = tao("converter", etlt, *[part for pair in flags.items() for part in pair])
        assert result.returncode == 2
        assert f"required: {missing}" in result.stderr


def test_ngc_refuses_bad_or_private_targets(tmp_path):
    result = tao("ngc", "registry", "model", "download-version", "resnet18", "--dest", tmp_path)
    assert result.returncode == 1 and "Invalid target" in result.stderr
    private = ("ngc", "registry", "model", "download-version", "acme/vision/classifier:v2",
               "--dest", tmp_path)
    assert tao(*private).returncode == 1
    assert tao(*private, env={"NGC_CLI_API_KEY": "k"}).returncode == 0
    assert (tmp_path / "classifier_vv2").is_dir()
    assert tao("ngc", "registry", "image", "pull", "x").returncode == 2


def test_numpy_matrix_format():
    assert fake_tao.numpy_str([[70, 12], [3, 233]]) == "[[ 70  12]\n [  3 233]]"
    wide = [[(row * 37 + column * 53) % 1000 for column in range(20)] for row in range(2)]
    # str(numpy.array(wide)), numpy 1.14+: rows wider than 75 characters wrap.
    assert fake_tao.numpy_str(wide) == (
        "[[  0  53 106 159 212 265 318 371 424 477 530 583 636 689 742 795 848 901\n"
        "  954   7]\n"
        " [ 37  90 143 196 249 302 355 408 461 514 567 620 673 726 779 832 885 938\n"
        "  991  44]]")
    # Above 1000 numbers numpy summarises: the matrix can no longer be read back whole.
    large = [[1] * 40 for _ in range(40)]
    text = fake_tao.numpy_str(large)
    assert text.split("\n")[3] == " ..."
    assert text.split("\n")[0] == "[[1 1 1 ... 1 1 1]"


def test_classification_report_format():
    """The example evaluate output of the TAO contract page, to the character."""
    assert fake_tao.classification_report(["bicycle", "electric_bicycle"],
                                          [[70, 12], [3, 233]]) == (
        "                  precision    recall  f1-score   support\n"
        "\n"
        "         bicycle       0.96      0.85      0.90        82\n"
        "electric_bicycle       0.95      0.99      0.97       236\n"
        "\n"
        "        accuracy                           0.95       318\n"
        "       macro avg       0.95      0.92      0.94       318\n"
        "    weighted avg       0.95      0.95      0.95       318\n")


def test_an_empty_class_never_predicted_is_left_out_of_the_printed_matrix():
    """As TAO 5's evaluate prints it (evaluate.py lines 321 and 326 at
    tao_tensorflow1_backend@d73dcfc; scikit-learn 1.2.2's micro avg row)."""
    matrix = [[412, 0], [0, 0]]
    assert fake_tao.numpy_str(fake_tao.shown_matrix(matrix)) == "[[412]]"
    assert fake_tao.classification_report(["cat", "dog"], matrix) == (
        "              precision    recall  f1-score   support\n"
        "\n"
        "         cat       1.00      1.00      1.00       412\n"
        "         dog       0.00      0.00      0.00         0\n"
        "\n"
        "   micro avg       1.00      1.00      1.00       412\n"
        "   macro avg       0.50      0.50      0.50       412\n"
        "weighted avg       1.00      1.00      1.00       412\n")
    # Predicted although it has no images: its zero row stays, as in scikit-learn.
    assert fake_tao.shown_matrix([[400, 12], [0, 0]]) == [[400, 12], [0, 0]]


def read_bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


def test_make_dataset_is_deterministic_and_writes_valid_pngs(tmp_path):
    first = make_dataset(str(tmp_path / "a"), classes=("x", "y"), counts={"train": 2, "val": 1,
                                                                          "test": 1}, size=16)
    make_dataset(str(tmp_path / "b"), classes=("x", "y"), counts={"train": 2, "val": 1,
                                                                 "test": 1}, size=16)
    paths = [path for split in first.values() for images in split.values() for path in images]
    assert len(paths) == 8
    for path in paths:
        data = read_bytes(path)
        assert data == read_bytes(path.replace(str(tmp_path / "a"), str(tmp_path / "b")))
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        offset, chunks = 8, {}
        while offset < len(data):
            length, kind = struct.unpack(">I4s", data[offset:offset + 8])
            body = data[offset + 4:offset + 8 + length]
            assert struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])[0] == (
                zlib.crc32(body))
            chunks[kind] = body[4:]
            offset += 12 + length
        assert struct.unpack(">II", chunks[b"IHDR"][:8]) == (16, 16)
        assert len(zlib.decompress(chunks[b"IDAT"])) == 16 * (1 + 16 * 3)
    assert sorted(os.listdir(tmp_path / "a" / "split")) == ["test", "train", "val"]
    assert sorted(os.listdir(tmp_path / "a" / "split" / "train")) == ["x", "y"]
    maker = os.path.join(ROOT, "rehearsal", "fake_tao", "make_dataset.py")
    cli = subprocess.run([sys.executable, maker, str(tmp_path / "c"), "--classes", "cat,dog",
                          "--train", "3"], check=False, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert len(os.listdir(tmp_path / "c" / "split" / "train" / "dog")) == 3


def test_an_unknown_injected_failure_is_refused_loudly(ws):
    result = tao("classification", "evaluate", "-e", ws / "specs" / "classification_spec.cfg",
                 "-k", "nvidia_tlt", env={"FAKE_TAO_FAIL": "prune-model"})
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "FAKE_TAO_FAIL: prune-model is not a subtask" in line and "prune" in line


# ==========================================================================================
# TAO 5.0 (--tao-version 5.0), merged from test_fake_tao5.py
# fake_tao5: the TAO 5 wrapper's rules and the traps the pipeline must handle, emulated
# as NVIDIA's source describes them (see rehearsal/fake_tao/fake_tao5.py for the citations).


BIN5 = REPO / "rehearsal" / "fake_tao" / "bin"  # BIN, as a Path
# The specs name paths under tao_mount_dir; the fake reads them where the runner would have
# mounted the workspace (set by the `trained` fixture).
MOUNTED = {}


def tf1(*arguments, env=None, cwd=None) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(BIN5), os.path.dirname(sys.executable), os.environ["PATH"]])
    return subprocess.run([str(BIN5 / "classification_tf1"), *map(str, arguments)],
                          capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, "PATH": path, PATH_MAP_ENV: json.dumps(MOUNTED),
                               **(env or {})})


def status_lines(folder: Path) -> list:
    return [json.loads(line)["status"]
            for line in (folder / "status.json").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workspace with the TAO 5 specs, the pretrained .hdf5 and a trained model."""
    import tao_iva_classification_pipeline as pipeline

    ws = tmp_path_factory.mktemp("ws")
    form = {p.name: p.default for p in pipeline.CompileOptions(tao_version="5.0").form()}
    seed_workspace(ws, form=form, specs_dir=REPO / profiles.TAO_5_0.specs_dir)
    MOUNTED[form["tao_mount_dir"]] = str(ws)
    subprocess.run([str(BIN5 / "ngc"), "registry", "model", "download-version",
                    form["pretrained_model_name"], "--dest", str(ws / "models")],
                   check=True, capture_output=True,
                   env={**os.environ, "PATH": os.path.dirname(sys.executable)})
    result = tf1("train", "-e", ws / "specs/classification_spec.cfg",
                 "-r", ws / "tao-experiments/output", "--gpus", "1")
    assert result.returncode == 0, result.stdout
    return ws


def test_train_writes_plain_hdf5_checkpoints_and_logs_in_tao5_format(trained):
    output = trained / "tao-experiments/output"
    assert (output / "weights/resnet_080.hdf5").is_file()
    assert status_lines(output)[-1] == "SUCCESS"


def test_the_subtask_must_be_the_first_argument(trained):
    result = tf1("--gpus", "1", "train", "-e", trained / "specs/classification_spec.cfg",
                 "-r", trained / "elsewhere")
    assert result.returncode != 0 and "the subtask must come first" in result.stdout
    assert not (trained / "elsewhere").exists()


def test_empty_options_are_dropped_and_calibration_takes_no_key(trained):
    spec = trained / "specs/classification_spec.cfg"
    ok = tf1("evaluate", "-e", spec, "-k", "")
    assert ok.returncode == 0 and ok.stdout.rstrip().endswith("Execution status: PASS")
    assert "[TAO Toolkit] [INFO] __main__ " in ok.stdout
    refused = tf1("calibration_tensorfile", "-e", spec, "-o", trained / "c.tensor", "-k", "x")
    assert refused.returncode == 2 and "unrecognized arguments: -k x" in refused.stderr


def test_prune_output_must_end_in_hdf5(trained):
    model = trained / "tao-experiments/output/weights/resnet_080.hdf5"
    bad = tf1("prune", "-m", model, "-o", trained / "pruned/p.tlt", "-pth", "0.6")
    assert bad.returncode == 255 and "No such file or directory" in bad.stdout
    assert (trained / "pruned/p.tlt.hdf5").exists()  # what TAO 5 leaves behind
    good = tf1("prune", "-m", model, "-o", trained / "pruned/p.hdf5", "-pth", "0.6")
    assert good.returncode == 0 and (trained / "pruned/p.hdf5").is_file()


def test_export_appends_onnx_and_refuses_an_existing_output(trained):
    model = trained / "tao-experiments/output/weights/resnet_080.hdf5"
    spec = trained / "specs/classification_spec.cfg"
    first = tf1("export", "-m", model, "-o", trained / "x/final.etlt", "-e", spec)
    assert first.returncode == 0 and (trained / "x/final.etlt.onnx").is_file()
    again = tf1("export", "-m", model, "-o", trained / "x/final.etlt", "-e", spec)
    assert again.returncode == 255 and "already exists" in again.stdout


def test_int8_engine_needs_both_calibration_files_and_may_fall_back_to_random(trained):
    model = trained / "tao-experiments/output/weights/resnet_080.hdf5"
    spec = trained / "specs/classification_spec.cfg"
    onnx = trained / "e/m.onnx"
    assert tf1("export", "-m", model, "-o", onnx, "-e", spec).returncode == 0
    common = ["gen_trt_engine", "-m", onnx, "-e", spec, "--data_type", "int8",
              "--engine_file", trained / "e/m.trt"]
    crash = tf1(*common, "-r", trained / "e/r1", "--cal_cache_file", trained / "e/c.bin")
    assert crash.returncode == 255 and "NoneType" in crash.stdout
    assert status_lines(trained / "e/r1") == ["STARTED", "FAILURE"]
    random = tf1(*common, "-r", trained / "e/r2", "--cal_cache_file", trained / "e/c.bin",
                 "--cal_data_file", trained / "e/missing.tensor")
    assert random.returncode == 0 and "random images" in random.stdout  # the silent trap


def test_a_failure_recorded_only_in_status_json_exits_0_with_pass(trained):
    result = tf1("evaluate", "-e", trained / "specs/classification_spec.cfg",
                 "-r", trained / "ev", env={"FAKE_TAO_FAIL": "evaluate:status"})
    assert result.returncode == 0 and result.stdout.rstrip().endswith("Execution status: PASS")
    assert status_lines(trained / "ev") == ["FAILURE"]


def test_inference_without_images_fails_or_records_failure_as_tao5_does(trained):
    """tao_tensorflow1_backend@d73dcfc makenet/scripts/inference.py: without -r the empty
    folder's FAILURE line meets an unbound status logger; with -r it is recorded and the
    wrapper says PASS. result.csv exists, empty, either way."""
    empty = trained / "no-images"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image\n")
    output = trained / "tao-experiments/output"
    command = ["inference", "-e", trained / "specs/classification_spec.cfg",
               "-m", output / "weights/resnet_080.hdf5", "-d", empty,
               "-cm", output / "classmap.json"]
    crash = tf1(*command)
    assert crash.returncode == 255 and "UnboundLocalError" in crash.stdout
    assert (empty / "result.csv").read_text() == ""
    recorded = tf1(*command, "-r", trained / "infer")
    assert recorded.returncode == 0, recorded.stdout
    assert recorded.stdout.rstrip().endswith("Execution status: PASS")
    assert status_lines(trained / "infer") == ["STARTED", "FAILURE"]
    assert (trained / "infer/result.csv").read_text() == ""


def test_the_wrapper_reads_values_with_bash_as_tao_does(trained, tmp_path):
    """Issue 15's example, which preflight now refuses: TAO's wrapper (entrypoint.py
    launch_job at d73dcfc) runs `touch pwned` and exports to m.onnx; a ' crashes it."""
    model = trained / "tao-experiments/output/weights/resnet_080.hdf5"
    spec = trained / "specs/classification_spec.cfg"
    result = tf1("export", "-m", model, "-o", f"{trained}/q/m`touch${{IFS}}pwned`.onnx",
                 "-e", spec, cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert (tmp_path / "pwned").is_file()
    assert [p.name for p in (trained / "q").iterdir()] == ["m.onnx"]
    crash = tf1("export", "-m", model, "-o", f"{trained}/q/it's.onnx", "-e", spec)
    assert crash.returncode == 1 and "ValueError: No closing quotation" in crash.stderr
    assert "Execution status" not in crash.stdout
