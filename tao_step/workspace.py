"""The workspace of a run: preflight's checks of what the Create Run values point at.

``Preflight(workspace, values, ...).run()`` reads the spec files (line-numbered problems),
the dataset splits they name, the test images, and what the steps will write: whether the
specs agree with the form (the checkpoint a training writes is the one the next step reads,
the pruned model is the one retraining starts from), and symbolic links leading out of the
workspace. It only reads (listings and spec files); the values alone are checked first by
``tao_step.values``, and only those that pass are looked at here.

Runs inside the TAO images (Python 3.6) and on the host: standard library and protobuf.
"""

import os
import posixpath

from tao_step import profiles, specs
from tao_step.values import (
    PATH_PARAMETERS,
    SPEC_PARAMETERS,
    bash_read_problem,
    hidden_character,
    ngc_download_dir,
    ngc_model_file,
    output_paths,
    outputs_of,
    parameters_of,
    value_error,
)

# Keras' flow_from_directory, which TAO training, evaluation and calibration use, reads these.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")
# classification inference -d reads only these.
INFERENCE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def _inside(path, root):
    """``path`` relative to ``root`` when it lies inside it (both absolute), else None."""
    path = posixpath.normpath(path)
    root = posixpath.normpath(root)
    if path == root:
        return "."
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else None


def _images(folder, extensions, limit):
    """Up to ``limit`` image paths under ``folder`` (recursive, extension case-insensitive)."""
    found = []
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        subdirectories.sort()
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in extensions:
                found.append(os.path.join(directory, name))
                if len(found) >= limit:
                    return found
    return found


class _Split:
    """A dataset split on disk: its class folders, or why it cannot be read; class folders
    that are links leaving ``root`` (the workspace) and names that would spoof a log line."""

    def __init__(self, path, root):
        self.path = path
        self.error = None
        self.classes = []
        self.empty_classes = []
        self.links_out = []  # (class folder, link target)
        self.hidden_names = []
        if not os.path.exists(path):
            self.error = "does not exist"
            return
        if not os.path.isdir(path):
            self.error = "is a file, not a folder of class folders"
            return
        entries = sorted(os.listdir(path))
        for entry in entries:
            full = os.path.join(path, entry)
            if os.path.islink(full) and _inside(os.path.realpath(full), root) is None:
                self.links_out.append((entry, os.readlink(full)))
            if hidden_character(entry):
                self.hidden_names.append(entry)
        self.classes = [entry for entry in entries if os.path.isdir(os.path.join(path, entry))
                        and entry not in self.hidden_names
                        and entry not in dict(self.links_out)]
        self.empty_classes = [name for name in self.classes
                              if not _images(os.path.join(path, name), IMAGE_EXTENSIONS, 1)]

    def count_images(self, limit):
        """How many images the split holds, counting no further than ``limit``."""
        total = 0
        for name in self.classes:
            total += len(_images(os.path.join(self.path, name), IMAGE_EXTENSIONS,
                                 limit - total))
            if total >= limit:
                break
        return total


def _differences(first, second):
    only_first = sorted(set(first) - set(second))
    only_second = sorted(set(second) - set(first))
    return only_first, only_second


def listed(names, most=5):
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


class Preflight:
    """One preflight of a workspace; after ``run()``: ``problems``, ``warnings``, the parsed
    ``specs`` and the training ``classes`` (for the summary)."""

    def __init__(self, workspace, values, mount_dir=None, profile=profiles.TAO_3_0,
                 bash_read=None):
        self.workspace = os.path.abspath(workspace)
        self.real_workspace = os.path.realpath(self.workspace)
        self.profile = profile
        names = parameters_of(profile)
        bash_read = names if bash_read is None else bash_read
        # Only values that pass validate_values are used to look at the workspace.
        self.ok = {name: values[name] for name in names
                   if name in values and value_error(name, values[name]) is None
                   and bash_read_problem(name, values[name], bash_read) is None}
        # The specs name paths under tao_mount_dir; in the pipeline that is the workspace.
        self.mount = posixpath.normpath(
            mount_dir or self.ok.get("tao_mount_dir") or self.workspace)
        self.problems = []
        self.warnings = []
        self.specs = {}  # spec parameter -> specs.Spec, when it parsed
        self.classes = None
        self._splits = {}
        self._compared = set()  # (train split, other split) already compared

    # -- helpers ---------------------------------------------------------------------------
    def _on_disk(self, relative):
        return os.path.join(self.workspace, *relative.split("/"))

    def _spec_problem(self, spec, path, message):
        line = spec.where(path)
        where = f"{spec.file}:{line}" if line else spec.file
        self.problems.append(f"{where}: {path}: {message}")

    def _spec_target(self, spec, path):
        """The workspace-relative path a spec field names, or None (unset or outside)."""
        value, _ = spec.field(path)
        if not value.startswith("/"):
            return None
        return _inside(value, self.mount)

    def _split(self, relative):
        if relative not in self._splits:
            self._splits[relative] = _Split(self._on_disk(relative), self.real_workspace)
        return self._splits[relative]

    def _link_out(self, relative):
        """The first part of ``relative`` that is a symbolic link leading out of the
        workspace, as ``(part, target)``, or None. Inside a step such a link points at the
        container's own file system (or nowhere), not at what it shows on the node."""
        parts = relative.split("/")
        for count in range(1, len(parts) + 1):
            part = "/".join(parts[:count])
            full = self._on_disk(part)
            if not os.path.lexists(full):
                return None
            if os.path.islink(full) and _inside(os.path.realpath(full),
                                                 self.real_workspace) is None:
                return part, os.readlink(full)
        return None

    def distinct_specs(self):
        """Each parsed spec file once (the retrain and calibrate specs are often one)."""
        seen = set()
        for name in SPEC_PARAMETERS:
            spec = self.specs.get(name)
            if spec is not None and spec.file not in seen:
                seen.add(spec.file)
                yield spec

    # -- checks ----------------------------------------------------------------------------
    def run(self):
        if not os.path.isdir(self.workspace):
            self.problems.append(f"--workspace {self.workspace}: no such folder (mount the "
                                 "workspace volume there)")
            return self
        self._load_specs()
        self._check_spec_paths()
        self._check_datasets()
        self._check_test_images()
        self._check_pretrained_model()
        self._check_first_training()
        self._check_retraining()
        self._check_calibration()
        self._check_links()
        self._check_outputs()
        self._find_warnings()
        return self

    def _check_links(self):
        for name in PATH_PARAMETERS:
            relative = self.ok.get(name)
            if relative is None:
                continue
            found = self._link_out(posixpath.normpath(relative))
            if found:
                part, target = found
                self.problems.append(
                    f"{name}: {part} is a symbolic link to {target}, outside tao_mount_dir; "
                    "the steps mount only the workspace, so they would read or write "
                    "somewhere else (replace the link with the folder itself)")

    def _check_outputs(self):
        """Each output's parent must be a folder, or be creatable as one."""
        for name, step, path in output_paths(self.ok, self.profile):
            parts = path.split("/")
            for count in range(1, len(parts)):
                parent = "/".join(parts[:count])
                full = self._on_disk(parent)
                if not os.path.exists(full):
                    break
                if not os.path.isdir(full):
                    self.problems.append(
                        f"{name}: {parent} is a file, so {step} cannot write {path} (give "
                        f"{name} a path whose folders are folders)")
                    break

    def _load_specs(self):
        loaded = {}
        for name in SPEC_PARAMETERS:
            relative = self.ok.get(name)
            if relative is None:
                continue
            if relative in loaded:
                self.specs[name] = loaded[relative]
                continue
            path = self._on_disk(relative)
            if not os.path.exists(path):
                self.problems.append(f"{name}: {relative} does not exist in the workspace "
                                     f"({path}); put the spec file there or fix {name}")
                loaded[relative] = None
                continue
            spec, problems = specs.check_spec_file(path, name=relative,
                                                   schema=self.profile.spec_schema)
            self.problems.extend(str(problem) for problem in problems)
            loaded[relative] = self.specs[name] = spec

    def _check_spec_paths(self):
        for spec in self.distinct_specs():
            for path in specs.PATH_FIELDS:
                value, _ = spec.field(path)
                if hidden_character(value):
                    self._spec_problem(spec, path, f"{ascii(value)} contains the invisible "
                                       f"character {hidden_character(value)} (retype the path "
                                       "without it)")
                elif value.startswith("/") and _inside(value, self.mount) is None:
                    self._spec_problem(spec, path, f"{value} is outside {self.mount} "
                                       "(tao_mount_dir), the only folder the steps mount; "
                                       + self._suggest_inside(value))
                elif value.startswith("/") and self._link_out(_inside(value, self.mount)):
                    part, target = self._link_out(_inside(value, self.mount))
                    self._spec_problem(spec, path, f"{posixpath.join(self.mount, part)} is a "
                                       f"symbolic link to {target}, outside tao_mount_dir; "
                                       "inside the steps it leads elsewhere (replace the link "
                                       "with the folder itself)")

    def _suggest_inside(self, value):
        parts = posixpath.normpath(value).strip("/").split("/")
        for start in range(1, len(parts)):
            rest = "/".join(parts[start:])
            if os.path.exists(self._on_disk(rest)):
                return f"did you mean {posixpath.join(self.mount, rest)}?"
        return f"write it as a path under {self.mount}/"

    def _check_datasets(self):
        reported = set()
        for spec in self.distinct_specs():
            for path in ("train_config.train_dataset_path", "train_config.val_dataset_path",
                         "eval_config.eval_dataset_path"):
                relative = self._spec_target(spec, path)
                if relative is None or relative in reported:
                    continue
                reported.add(relative)
                self._check_split(spec, path, relative)
            self._compare_classes(spec)

    def _check_split(self, spec, path, relative):
        split = self._split(relative)
        value, _ = spec.field(path)
        if split.error:
            fix = ("copy the split there, one folder per class with its images inside, or fix "
                   "the path")
            self._spec_problem(spec, path, f"{value} {split.error} (looked at {split.path}); "
                               + fix)
        elif not split.classes:
            self._spec_problem(spec, path, f"{value} holds no class folders (TAO expects one "
                               "folder per class with the images inside)")
        elif len(split.classes) < 2:
            self._spec_problem(spec, path, f"{value} has a single class folder "
                               f"({split.classes[0]}); classification needs at least 2 classes")
        for entry, target in split.links_out:
            self._spec_problem(spec, path, f"class folder {entry} in {value} is a symbolic "
                               f"link to {target}, outside tao_mount_dir; inside the steps it "
                               "leads nowhere and the class would silently be missing (copy "
                               "the folder into the workspace)")
        if split.hidden_names:
            shown = ", ".join(ascii(name) for name in split.hidden_names)
            self._spec_problem(spec, path, f"folder names in {value} with invisible characters "
                               f"(newlines, text-direction controls): {shown}; they split or "
                               "disguise log lines and the class map (rename them)")
        if split.empty_classes:
            self._spec_problem(spec, path, f"class folders without images in {value}: "
                               f"{listed(split.empty_classes)} (add {', '.join(IMAGE_EXTENSIONS)}"
                               " images or remove the folders)")

    def _compare_classes(self, spec):
        train = self._spec_target(spec, "train_config.train_dataset_path")
        if train is None or self._split(train).error or not self._split(train).classes:
            return
        classes = self._split(train).classes
        if self.classes is None:
            self.classes = classes
        for path, why in (
            ("train_config.val_dataset_path", "train and val need the same class folders"),
            ("eval_config.eval_dataset_path", "evaluate scores the model on its classes"),
        ):
            other = self._spec_target(spec, path)
            if (other is None or self._split(other).error or not self._split(other).classes
                    or (train, other) in self._compared):
                continue
            self._compared.add((train, other))
            only_train, only_other = _differences(classes, self._split(other).classes)
            if only_train or only_other:
                detail = "; ".join(part for part in (
                    f"only in train: {listed(only_train)}" if only_train else "",
                    f"only here: {listed(only_other)}" if only_other else "") if part)
                self._spec_problem(spec, path, f"classes differ from train_dataset_path "
                                   f"({detail}); {why}")

    def _check_test_images(self):
        relative = self.ok.get("test_infer_image_path")
        if relative is None:
            return
        path = self._on_disk(relative)
        if not os.path.isdir(path):
            what = "is a file" if os.path.exists(path) else "does not exist"
            self.problems.append(f"test_infer_image_path: {relative} {what} in the workspace "
                                 f"({path}); give the folder of images test-infer classifies")
        elif not _images(path, INFERENCE_EXTENSIONS, 1):
            self.problems.append(f"test_infer_image_path: {relative} holds no .jpg, .jpeg or "
                                 ".png images (classification inference reads only those); "
                                 "add images or point it at another folder")

    def _check_pretrained_model(self):
        spec = self.specs.get("train_classification_spec")
        name = self.ok.get("pretrained_model_name")
        dest = self.ok.get("pretrained_model_dir")
        if spec is None or name is None or dest is None:
            return
        path = "train_config.pretrained_model_path"
        value, _ = spec.field(path)
        if not value or not value.startswith("/"):
            return
        directory = ngc_download_dir(posixpath.join(self.mount, dest), name)
        known_file = ngc_model_file(name)
        expected = posixpath.join(directory, known_file or "<model file>")
        actual = posixpath.normpath(value)
        if posixpath.dirname(actual) != directory or (known_file and actual != expected):
            self._spec_problem(spec, path, f"{value} is not where download-model puts {name} "
                               f"(ngc writes {expected}); set pretrained_model_path to that "
                               "file, or pretrained_model_dir and pretrained_model_name to "
                               "match it")

    def _trained_checkpoint(self, spec_name, output_name):
        """(workspace-relative checkpoint, why) for the last checkpoint a training writes."""
        spec = self.specs.get(spec_name)
        output = self.ok.get(output_name)
        if spec is None or output is None:
            return None, None
        name, why = specs.last_checkpoint(spec, self.profile.checkpoint_suffix)
        if name is None:
            return None, None
        return posixpath.join(posixpath.normpath(output), "weights", name), why

    def _expect_parameter(self, name, expected, step, why):
        value = self.ok.get(name)
        if value is not None and posixpath.normpath(value) != expected:
            self.problems.append(f"{name}: {value} does not match the {step} writes ({expected}"
                                 f": {why}); set {name} to that path")

    def _expect_spec_path(self, spec, path, expected, step, why):
        value, _ = spec.field(path)
        if value and _inside(value, self.mount) is not None and (
                _inside(value, self.mount) != expected):
            self._spec_problem(spec, path, f"{value} is not the {step} writes "
                               f"({posixpath.join(self.mount, expected)}: {why}); set "
                               f"{path.rpartition('.')[2]} to that path")

    def _check_first_training(self):
        checkpoint, why = self._trained_checkpoint("train_classification_spec",
                                                   "train_classification_output")
        if checkpoint is None:
            return
        step = "checkpoint train-model"
        self._expect_spec_path(self.specs["train_classification_spec"],
                               "eval_config.model_path", checkpoint, step, why)
        self._expect_parameter("prune_model_input_file", checkpoint, step, why)

    def _check_retraining(self):
        spec = self.specs.get("retrain_classification_spec")
        if spec is None:
            return
        if spec.has("model_config.freeze_blocks"):
            blocks = ", ".join(str(block) for block in spec.message.model_config.freeze_blocks)
            self._spec_problem(spec, "model_config.freeze_blocks", f"the retrain spec freezes "
                               f"blocks {blocks} of the pruned model; remove freeze_blocks so "
                               "every pruned block can recover its accuracy")
        pruned = self.ok.get("prune_model_output_file")
        value, _ = spec.field("train_config.pretrained_model_path")
        if pruned is not None and value.startswith("/") and _inside(value, self.mount) is not None:
            if _inside(value, self.mount) != posixpath.normpath(pruned):
                self._spec_problem(spec, "train_config.pretrained_model_path", f"{value} is not "
                                   f"the pruned model prune-model writes "
                                   f"({posixpath.join(self.mount, posixpath.normpath(pruned))}, "
                                   "prune_model_output_file); set pretrained_model_path to that "
                                   "path so retraining starts from the pruned model")
        elif pruned is not None and not spec.has("train_config.pretrained_model_path"):
            self._spec_problem(spec, "train_config.pretrained_model_path", "missing: retraining "
                               "would start from random weights instead of the pruned model "
                               f"(set it to {posixpath.join(self.mount, pruned)})")
        first = self.specs.get("train_classification_spec")
        if first is not None and first is not spec:
            for path in ("model_config.arch", "model_config.n_layers"):
                mine, theirs = spec.field(path)[0], first.field(path)[0]
                if mine != theirs:
                    self._spec_problem(spec, path, f"{mine} differs from {theirs} in "
                                       f"{first.file} line {first.where(path)}; the pruned "
                                       "model keeps the first training's architecture")
        checkpoint, why = self._trained_checkpoint("retrain_classification_spec",
                                                   "retrain_classification_output")
        if checkpoint is not None:
            step = "checkpoint retrain-model"
            self._expect_spec_path(spec, "eval_config.model_path", checkpoint, step, why)
            self._expect_parameter("test_infer_model_input_file", checkpoint, step, why)
            self._expect_parameter("export_model_input_file", checkpoint, step, why)
        output = self.ok.get("retrain_classification_output")
        if output is not None:
            self._expect_parameter("test_infer_class_map",
                                   posixpath.join(posixpath.normpath(output), "classmap.json"),
                                   "class map retrain-model", "retrain_classification_output")
        self._check_input_size(spec)

    def _check_input_size(self, spec):
        if not spec.has("model_config.input_image_size") or specs.image_size_error(
                spec.message.model_config.input_image_size):
            return
        size = specs.parse_image_size(spec.message.model_config.input_image_size)
        dims = self.ok.get("convert_trt_dims")
        if dims is not None and specs.parse_image_size(dims) != size:
            self.problems.append(
                f"convert_trt_dims: {dims} disagrees with input_image_size "
                f"\"{spec.message.model_config.input_image_size}\" in {spec.file} line "
                f"{spec.line('model_config.input_image_size')} (the exported model takes that "
                f"size); set convert_trt_dims to {','.join(str(n) for n in size)}")
        calibrate = self.specs.get("calibrate_classification_spec")
        path = "model_config.input_image_size"
        if calibrate is not None and calibrate is not spec and calibrate.has(path):
            other = calibrate.message.model_config.input_image_size
            if not specs.image_size_error(other) and specs.parse_image_size(other) != size:
                mine = spec.message.model_config.input_image_size
                self._spec_problem(calibrate, path, f'"{other}" differs from the retrained '
                                   f'model\'s "{mine}" ({spec.file} line {spec.line(path)}); '
                                   "INT8 calibration data must have the model's input size")

    def _check_calibration(self):
        spec = self.specs.get("calibrate_classification_spec")
        batches = self.ok.get("calibrate_max_batches")
        if spec is None or batches is None:
            return
        relative = self._spec_target(spec, "train_config.train_dataset_path")
        batch = spec.message.train_config.batch_size_per_gpu
        if relative is None or batch < 1 or self._split(relative).error:
            return
        engine_batch = self.ok.get("convert_trt_batch_size")
        if self.profile.engine_builder == "gen_trt_engine" and engine_batch is not None and (
                int(engine_batch) > batch):
            # gen_trt_engine calibrates on calibrate-model's tensorfile, whose records hold
            # batch_size_per_gpu images each: its --batch_size cannot be larger.
            self.problems.append(
                f"convert_trt_batch_size: {int(engine_batch)} is larger than the {batch} images "
                f"per batch of the calibration tensorfile (batch_size_per_gpu in {spec.file} "
                f"line {spec.line('train_config.batch_size_per_gpu')}); set it to {batch} or "
                "less")
        needed = int(batches) * batch
        found = self._split(relative).count_images(needed)
        if found < needed:
            most = found // batch
            # Advice the form accepts: calibrate_max_batches is at least 1 (value_error).
            fix = (f"set calibrate_max_batches to {most} or less" if most else
                   f"not even one batch fits: add at least {batch - found} training images or "
                   "lower batch_size_per_gpu")
            self.problems.append(
                f"calibrate_max_batches: {int(batches)} batches of {batch} images "
                f"(batch_size_per_gpu in {spec.file} line "
                f"{spec.line('train_config.batch_size_per_gpu')}) need {needed} training images "
                f"but {relative} has {found}; {fix}")

    def _find_warnings(self):
        # The re-run policy (tao_step report --keep-previous): an earlier run's output is
        # renamed to <path>.previous-<UTC time> before the step that writes it runs.
        for name, _, step, suffix in outputs_of(self.profile):
            output = self.ok.get(name)
            if output is None or not os.path.exists(self._on_disk(output + suffix)):
                continue
            self.warnings.append(
                f"{name}: {output + suffix} exists from an earlier run; {step} moves it to "
                f"{output + suffix}.previous-<UTC time> first (delete old copies to save space)")
        self._warn_if_accuracy_may_be_unreadable()
        spec = self.specs.get("train_classification_spec")
        if spec is not None and not spec.field("train_config.pretrained_model_path")[0]:
            self.warnings.append(f"{spec.file}: train_config.pretrained_model_path is not set: "
                                 "train-model starts from random weights and does not use the "
                                 "model download-model fetches")

    def _warn_if_accuracy_may_be_unreadable(self):
        """numpy abbreviates a matrix of more than 1000 cells (32+ classes). tao_step report
        makes TAO print it whole; should that not work, the report's 2-decimal recalls give
        the exact top-1 only for classes of at most 100 evaluation images (tao_step.parse
        correct_counts_from_report), and a gate without a top-1 fails reevaluate-model."""
        try:
            minimum = float(self.ok.get("min_accuracy", "0"))
        except ValueError:
            return
        spec = self.specs.get("retrain_classification_spec")
        split = spec and self._spec_target(spec, "eval_config.eval_dataset_path")
        if not minimum > 0 or not split or self._split(split).error:
            return
        classes = self._split(split).classes
        large = [name for name in classes
                 if len(_images(os.path.join(self._split(split).path, name),
                                IMAGE_EXTENSIONS, 101)) > 100]
        if len(classes) ** 2 > 1000 and large:
            self.warnings.append(
                f"{spec.file}: eval_config.eval_dataset_path has {len(classes)} classes, "
                f"{len(large)} with more than 100 images ({listed(large)}): if TAO's confusion "
                "matrix is still printed abbreviated, the top-1 accuracy cannot be read exactly "
                f"and min_accuracy {self.ok['min_accuracy']} then fails reevaluate-model after "
                "both trainings (at most 100 evaluation images per class avoid that)")

