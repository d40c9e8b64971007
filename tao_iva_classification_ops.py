"""TAO Toolkit image-classification commands as Kubeflow Pipelines (v1) steps.

Each class wraps one command line of the ``ngc`` or TAO classification CLIs in the TAO
container and states only what is particular to it: its argv, and as class attributes its
policy: GPUs, whether it publishes KFP outputs, its retry strategy, the Secrets it reads.
What differs between TAO releases (the CLI's name, which subtasks take ``-k``, which image
builds the engine, status.json) comes from the step's ``profile``
(``tao_step.profiles``). What every step shares (workspace volume, caching policy,
scheduling, image) and each op's policy are applied once, pipeline-wide, by
``tao_iva_classification_pipeline``; the images default to the ones ``docker/`` builds
(``default_images``).

Arguments are keyword-only. Paths are absolute paths inside the container (the pipeline
derives them from the workspace mount), values may be pipeline parameters, and every value
becomes one argv element: no step runs a shell.

Prerequisite on the cluster: the images built from ``docker/`` (TAO 3.0 plus the NGC CLI; or
for TAO 5 the TF1 image with the NGC CLI and the deploy image) in a registry the nodes can
pull from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from kfp import dsl
from kfp.dsl._pipeline_param import extract_pipelineparams_from_any
from kubernetes import client as k8s

from tao_step import RUNTIME_VERSION
from tao_step.profiles import PROFILES, TAO_3_0, Profile, release_args


def _image_tag_module():
    # docker/image_tag.py is the one definition of the tags; docker/build.sh runs it as a
    # script (standard library only), so it is loaded by path rather than as a package.
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().with_name("docker") / "image_tag.py"
    spec = importlib.util.spec_from_file_location("image_tag", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def default_images(profile: Profile) -> dict:
    """``{role: tag}`` of the images docker/build.sh builds for ``profile``'s release."""
    module = _image_tag_module()
    return {role: module.default_image(folder) for role, folder in profile.image_dirs}


# A step argument: a literal or a pipeline parameter (placeholder resolved by Argo).
Value = str | int | float | dsl.PipelineParam

# The tag docker/build.sh gives the image: docker/IMAGE plus a digest of its contents.
DEFAULT_IMAGE = default_images(TAO_3_0)["train"]

# Where steps write what KFP collects (metrics, UI metadata, small outputs): inside the
# container, off the shared workspace, so runs never mix their reports.
OUTPUTS_DIR = "/tmp/kfp-outputs"
UI_OUTPUTS = {
    "mlpipeline-metrics": f"{OUTPUTS_DIR}/mlpipeline-metrics.json",
    "mlpipeline-ui-metadata": f"{OUTPUTS_DIR}/mlpipeline-ui-metadata.json",
}

# Runs the in-container code; an image built before it existed fails with a one-line
# instruction instead of Python's "No module named tao_step".
RUNTIME_BOOTSTRAP = (
    "import sys\n"
    "try:\n"
    "    from tao_step.__main__ import main\n"
    "except ImportError:\n"
    "    sys.exit('this image has no tao_step runtime: rebuild and push it with "
    "docker/build.sh (see docker/README.md), or compile with --image set to a current build')\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def runtime_command(*args: Value) -> list:
    """argv running ``python3 -m tao_step ARGS`` in the image, asking for the runtime
    version this pipeline was written against."""
    return ["python3", "-c", RUNTIME_BOOTSTRAP, "--require-runtime", str(RUNTIME_VERSION),
            *args]


# Every release's classification CLI is a wrapper that re-reads its arguments with bash
# (tao_step/shell.py cites the source); tao-converter and ngc take their argv as given.
BASH_WRAPPERS = frozenset(profile.cli for profile in PROFILES.values())


class Retry(NamedTuple):
    """An Argo retryStrategy, as ``ContainerOp.set_retry`` takes it."""

    num_retries: int
    policy: str
    backoff_duration: str
    backoff_factor: int | None = None


# OnError: only when Argo reports an error of the infrastructure (pod deleted, node lost, its
# own containers failing), never when TAO itself exited non-zero: a TAO failure repeats,
# wasting GPU hours.
RETRY_ON_INFRASTRUCTURE_ERROR = Retry(2, "OnError", "1m")
# NGC downloads fail on network hiccups: retry any failure, backing off 30 s, 60 s, 120 s. No
# maxDuration: Argo counts it from the first attempt's start, so it would forbid retrying a
# download that failed after a long transfer.
RETRY_ANY_FAILURE = Retry(3, "Always", "30s", 2)
# For a step that publishes KFP outputs: with a retry strategy, Argo (v3.3.8 to v4.0.5)
# copies the attempt's outputs onto the Retry node (operator.go processNodeRetries) and KFP
# stores the mlpipeline-metrics of every node that has them, so the Metrics table lists the
# step twice. These steps take minutes; the long ones (training) publish nothing themselves
# and keep their retry (docs/tao-step-report.md). KFP 2.17's templateDefaults retry every
# template anyway, and no template field can opt out (rehearsal/kfp_releases.py,
# docs/kfp-releases.md).
NO_RETRY = None

# The Secrets a step can read, when the build names them (--key-secret, --ngc-secret); the
# pipeline says which environment variable each becomes.
TAO_KEY = "tao-key"  # the TAO model key, which a TAO command takes as -k
NGC_KEY = "ngc-key"  # an NGC API key, for private models


def _name_value_flags(flag: str, values: dict) -> list:
    """``--flag NAME=VALUE`` for each item; a value may be a pipeline parameter."""
    return [arg for name, value in values.items() for arg in (flag, f"{name}={value}")]


class TaoOp(dsl.ContainerOp):
    """A step that runs in the pipeline's image.

    ``command`` is the TAO/NGC argv. It runs under ``tao_step report KIND``, which streams
    its output to the log, exits with its status, first moves aside what an earlier run
    left at the ``writes`` paths (TAO refuses or silently overwrites), refuses to start when
    a ``requires`` path is missing, fails when the command exits 0 but recorded a failure
    in ``status_file`` (TAO 5), and then publishes what ``report`` asks for to the KFP UI.
    ``outputs`` names small plain-text results (the gate's verdict, read by the conditions;
    shown in the step's Input/Output tab). ``gpus``, when given, replaces the class's.

    The class attributes are the step's policy, which the pipeline's op transformer applies
    (``tao_iva_classification_pipeline._step_settings``); a subclass states what differs.
    """

    # TAO's own command, as opposed to NGC and our checks, report and release: shared
    # memory, the release's environment, and the TAO steps' CPU and memory requests.
    runs_tao = True
    image_role = "train"  # which of the release's images runs it (Profile.image_dirs)
    # GPUs to request: 0, an int or a parameter. A step that requests none gets none, so it
    # cannot use a node's GPUs by default visibility; every TAO subtask needs one (TAO's
    # wrapper stops without a GPU: CalibrationTensorfileOp).
    gpus: int | dsl.PipelineParam = 1
    publishes = False  # whether it writes KFP's metrics and UI metadata (UI_OUTPUTS)
    retry: Retry | None = RETRY_ON_INFRASTRUCTURE_ERROR
    secrets: tuple = ()  # TAO_KEY, NGC_KEY: the Secrets it reads, when the build has them

    def __init__(
        self,
        *,
        name: str,
        command: Sequence[Value] = (),
        gpus: int | dsl.PipelineParam | None = None,
        report: Sequence[Value] = ("run",),
        writes: Sequence[Value] = (),
        outputs: Sequence[str] = (),
        runtime_args: Sequence[Value] = (),
        requires: Sequence[Value] = (),
        status_file: Value | None = None,
    ) -> None:
        if runtime_args:  # another tao_step command than report, e.g. preflight
            argv = runtime_command(*runtime_args)
        else:
            keep = [arg for path in writes for arg in ("--keep-previous", path)]
            keep += [arg for path in requires for arg in ("--require", path)]
            if status_file is not None:
                keep += ["--status-json", status_file]
            tail = ["--", *command] if command else []
            argv = runtime_command("report", *report, "--out-dir", OUTPUTS_DIR, *keep, *tail)
        super().__init__(
            name=name,
            image=DEFAULT_IMAGE,
            command=argv[:1],
            arguments=argv[1:],
            file_outputs={
                **(UI_OUTPUTS if self.publishes else {}),
                **{output: f"{OUTPUTS_DIR}/{output}" for output in outputs},
            },
        )
        self.tao_command = list(command)
        if gpus is not None:
            self.gpus = gpus
        if self.uses_gpu:
            # Not set_gpu_limit(): with a parameter it emits the invalid resource key
            # "nvidia". A parameter here is moved into podSpecPatch, where Argo substitutes
            # it; a constant is written as a string, the type Kubernetes quantities have.
            self.container.add_resource_limit("nvidia.com/gpu", str(self.gpus))
        else:
            # TAO images set NVIDIA_VISIBLE_DEVICES=all, so where the NVIDIA runtime honours
            # that variable a pod requesting no GPU would still see (and could hold) every
            # GPU of its node. "void" makes the runtime add no GPU and no driver at all, as
            # plain runc would (docs/gpus.md cites nvidia-container-toolkit).
            self.container.add_env_variable(
                k8s.V1EnvVar(name="NVIDIA_VISIBLE_DEVICES", value="void"))
        if self.runs_tao:
            # TAO's data loaders use /dev/shm; a pod's default 64 MiB is too small.
            self.add_volume(
                k8s.V1Volume(name="dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory"))
            )
            self.container.add_volume_mount(k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm"))

    @property
    def uses_gpu(self) -> bool:
        return isinstance(self.gpus, dsl.PipelineParam) or bool(self.gpus)

    def bash_read_values(self) -> list:
        """The literals and pipeline parameters in the TAO command's arguments when the
        command is a wrapper that re-reads them with bash (``BASH_WRAPPERS``), else none."""
        if not self.tao_command or self.tao_command[0] not in BASH_WRAPPERS:
            return []
        return self.tao_command[1:]


def parameters_in(values: Sequence[Value]) -> set:
    """The names of the pipeline parameters in ``values`` (alone or inside a string)."""
    return {param.name for value in values for param in extract_pipelineparams_from_any(value)}


# Argo's names for the run, substituted when the step starts: the claim on the workspace
# is taken and released under them.
RUN_NAME = "{{workflow.name}}"
RUN_UID = dsl.RUN_ID_PLACEHOLDER  # {{workflow.uid}}
# What Argo gives an exit handler alone: how the run ended, and its failed nodes as JSON
# (docs/tao-step-report.md cites the Argo source).
WORKFLOW_STATUS = "{{workflow.status}}"
WORKFLOW_FAILURES = "{{workflow.failures}}"


class PublishingOp(TaoOp):
    """A step that publishes KFP metrics or UI metadata. It is never retried: a retried
    step's Retry node carries a copy of its outputs, which the UI would list twice."""

    publishes = True
    retry = NO_RETRY


class PreflightOp(TaoOp):
    """Checks the submitted form, the workspace's specs and dataset, and their agreement,
    before any GPU time is spent; fails naming each parameter or file and its fix. Then
    claims the run's output paths, refusing a run whose outputs another run holds.

    With ``key_from_env`` the key is not among ``values``: the step reads it from the key
    Secret, in its environment, so it never appears in an argument (which Kubernetes would
    expand into the process's command line, readable on the node)."""

    runs_tao = False
    gpus = 0

    def __init__(self, *, name: str, workspace: Value, values: dict, tao_version: str,
                 key_from_env: bool = False) -> None:
        super().__init__(name=name, runtime_args=[
            "preflight", "--workspace", workspace, *release_args(tao_version), "--run", RUN_NAME,
            "--run-uid", RUN_UID, *(["--key-from-env"] if key_from_env else []),
            *_name_value_flags("--param", values)])
        self.secrets = (TAO_KEY,) if key_from_env else ()

    def check_bash_read(self, names: Sequence[str]) -> None:
        """Hold the values of ``names`` to what TAO's wrappers pass through bash unchanged.
        Called once every step exists, since they tell which values reach a wrapper."""
        self.container.args.extend(["--bash-read", ",".join(sorted(names))])


class DownloadModelOp(TaoOp):
    """``ngc registry model download-version``: fetch a pretrained model from NGC into
    ``dest/<model>_v<version>/``."""

    runs_tao = False
    gpus = 0
    retry = RETRY_ANY_FAILURE
    secrets = (NGC_KEY,)

    def __init__(self, *, name: str, model: Value, dest: Value) -> None:
        super().__init__(
            name=name,
            command=["ngc", "registry", "model", "download-version", model, "--dest", dest],
            report=("run", "--ngc-model", model, "--ngc-dest", dest),
        )


def _key(profile: Profile, subtask: str, key: Value) -> list:
    """``-k KEY`` for the subtasks of ``profile`` that read a model, else nothing."""
    return ["-k", key] if subtask in profile.key_subtasks else []


def _status_file(profile: Profile, results_dir: Value) -> Value | None:
    """Where the subtask records its status, on releases that keep a status.json."""
    return f"{results_dir}/status.json" if profile.status_json else None


# The train steps hand their report (curve, final validation figures) to the evaluate step
# that follows, through this file in their results folder: a train step keeps its retry on
# infrastructure errors, and a retried step would show its KFP outputs twice (NO_RETRY).
TRAINING_REPORT = "tao_step-training-report.json"


class TrainOp(TaoOp):
    """``<cli> train``: train (or retrain a pruned model) as the spec says; its
    report (training curve, final validation figures) goes to ``<results_dir>/``
    ``TRAINING_REPORT``, which the following :class:`EvaluateOp` publishes.
    ``label`` is ``baseline`` or ``retrained``."""

    secrets = (TAO_KEY,)

    def __init__(
        self, *, profile: Profile, name: str, label: str, spec: Value, results_dir: Value,
        num_gpus: Value, key: Value, use_amp: Value,
    ) -> None:
        # The subtask comes first: TAO 5's wrapper looks for it in the first argument only.
        # --use_amp (TAO's mixed precision, train only) is a flag without a value, so the
        # runtime adds it after the subtask when the form says "true" (--switch FLAG=VALUE).
        super().__init__(
            name=name,
            command=[profile.cli, "train", "--gpus", num_gpus, *_key(profile, "train", key),
                     "-e", spec, "-r", results_dir],
            gpus=num_gpus,
            report=("train", "--results-dir", results_dir, "--label", label,
                    "--hand-over", f"{results_dir}/{TRAINING_REPORT}",
                    "--switch", f"use_amp={use_amp}"),
            writes=[results_dir],
            status_file=_status_file(profile, results_dir),
        )


class EvaluateOp(PublishingOp):
    """``<cli> evaluate``: score the spec's ``eval_config.model_path``; publishes the
    training report of ``training_results`` (see :class:`TrainOp`), then accuracy,
    confusion matrix and per-class table. With ``min_accuracy`` it outputs ``gate``:
    ``pass`` or ``fail``. On releases with a
    status.json, ``results_dir`` receives it (``-r``)."""

    secrets = (TAO_KEY,)

    def __init__(
        self, *, profile: Profile, name: str, label: str, spec: Value, key: Value,
        results_dir: Value, training_results: Value, min_accuracy: Value | None = None,
    ) -> None:
        gate = ["--min-accuracy", min_accuracy, "--gate-file", f"{OUTPUTS_DIR}/gate",
                *release_args(profile.version)]
        status = _status_file(profile, results_dir)
        super().__init__(
            name=name,
            command=[profile.cli, "evaluate", "-e", spec, *_key(profile, "evaluate", key),
                     *(["-r", results_dir] if status else [])],
            report=("evaluate", "--label", label, "--spec", spec,
                    "--training-report", f"{training_results}/{TRAINING_REPORT}",
                    *(gate if min_accuracy is not None else [])),
            outputs=["gate"] if min_accuracy is not None else [],
            status_file=status,
        )


class PruneOp(PublishingOp):
    """``<cli> prune``: remove filters below the threshold; publishes the pruning ratio and
    sizes."""

    secrets = (TAO_KEY,)

    def __init__(
        self, *, profile: Profile, name: str, model: Value, output_file: Value,
        threshold: Value, equalization_criterion: Value, key: Value,
    ) -> None:
        super().__init__(
            name=name,
            command=[profile.cli, "prune", *_key(profile, "prune", key), "-m", model,
                     "-o", output_file, "-pth", threshold, "-eq", equalization_criterion],
            report=("prune", "--input-model", model, "--output-model", output_file),
            writes=[output_file],
        )


class InferenceOp(PublishingOp):
    """``<cli> inference`` on a directory: writes ``result.csv`` into it; publishes a table
    of predictions and the count per class."""

    secrets = (TAO_KEY,)

    def __init__(
        self,
        *,
        profile: Profile,
        name: str,
        spec: Value,
        model: Value,
        image_dir: Value,
        batch_size: Value,
        class_map: Value,
        key: Value,
    ) -> None:
        super().__init__(
            name=name,
            command=[profile.cli, "inference", *_key(profile, "inference", key), "-e", spec,
                     "-m", model, "-d", image_dir, "-b", batch_size, "-cm", class_map],
            report=("inference", "--image-dir", image_dir),
            writes=[f"{image_dir}/result.csv"],
        )


class ExportOp(TaoOp):
    """``<cli> export``: the FP32 model for deployment (``.etlt`` in 3.0; ONNX in TAO 5,
    whose exporter also reads the spec)."""

    secrets = (TAO_KEY,)

    def __init__(
        self, *, profile: Profile, name: str, model: Value, output_file: Value, key: Value,
        spec: Value,
    ) -> None:
        super().__init__(
            name=name,
            command=[profile.cli, "export", "-m", model, *_key(profile, "export", key),
                     "-o", output_file, *(["-e", spec] if profile.export_spec else [])],
            writes=[output_file],
        )


class CalibrationTensorfileOp(TaoOp):
    """``<cli> calibration_tensorfile``: batches of training images for INT8.

    Reads only the spec's dataset, no model, so it needs no training; but TAO's wrapper
    counts the GPUs ``nvidia-smi -L`` lists before running any subtask, this one included,
    and stops when there is none (docs/gpus.md), so it requests one.
    """

    def __init__(
        self, *, profile: Profile, name: str, spec: Value, max_batches: Value,
        output_file: Value,
    ) -> None:
        super().__init__(
            name=name,
            command=[profile.cli, "calibration_tensorfile", "-e", spec, "-m", max_batches,
                     "-o", output_file],
            writes=[output_file],
        )


class ExportInt8Op(TaoOp):
    """``classification export`` with INT8 calibration (TAO 3.0): the ``.etlt`` and its
    cache."""

    secrets = (TAO_KEY,)

    def __init__(
        self,
        *,
        profile: Profile,
        name: str,
        model: Value,
        output_file: Value,
        calibration_tensorfile: Value,
        data_type: Value,
        batches: Value,
        calibration_cache: Value,
        key: Value,
    ) -> None:
        super().__init__(
            name=name,
            command=[profile.cli, "export", "-m", model, *_key(profile, "export", key),
                     "-o", output_file, "--cal_data_file", calibration_tensorfile,
                     "--data_type", data_type, "--batches", batches,
                     "--cal_cache_file", calibration_cache, "-v"],
            writes=[output_file, calibration_cache],
        )


class ConvertTrtOp(PublishingOp):
    """``converter`` (TAO 3.0): build the TensorRT engine on the GPU; without a calibration
    cache, as FP16 and FP32 engines are built."""

    secrets = (TAO_KEY,)

    def __init__(
        self,
        *,
        name: str,
        model: Value,
        key: Value,
        output_node: Value,
        dims: Value,
        input_type: Value,
        max_batch_size: Value,
        precision: Value,
        engine_file: Value,
        batch_size: Value,
        calibration_cache: Value | None = None,
    ) -> None:
        cache = ["-c", calibration_cache] if calibration_cache is not None else []
        super().__init__(
            name=name,
            command=["converter", model, "-k", key, "-o", output_node, *cache, "-d", dims,
                     "-i", input_type, "-m", max_batch_size, "-t", precision,
                     "-e", engine_file, "-b", batch_size],
            report=("convert", "--engine", engine_file, "--precision", precision),
            writes=[engine_file],
        )


class ConvertTrtInt8Op(ConvertTrtOp):
    """``converter`` with the INT8 calibration cache the INT8 export wrote."""

    def __init__(self, *, calibration_cache: Value, **engine: Value) -> None:
        super().__init__(calibration_cache=calibration_cache, **engine)


class GenTrtEngineOp(PublishingOp):
    """``classification_tf1 gen_trt_engine`` (TAO 5, deploy image): the TensorRT engine from
    the ONNX export. ``spec`` supplies ``train_config.image_mean``; the batch sizes set the
    engine's optimisation profile and (INT8) the calibration batch.

    INT8 (``calibration`` = (tensorfile, cache, batches)) passes both calibration files,
    which it needs (without either it crashes); and the step refuses to start without the
    tensorfile, because gen_trt_engine would otherwise calibrate on random data and only
    log it. The cache is moved aside first: an existing one is reused without calibrating.
    So is an earlier ``results_dir``, where gen_trt_engine would append to the old
    status.json.
    """

    image_role = "deploy"

    def __init__(
        self, *, profile: Profile, name: str, model: Value, spec: Value, results_dir: Value,
        precision: Value, engine_file: Value, batch_size: Value, max_batch_size: Value,
        calibration: tuple | None = None,
    ) -> None:
        int8 = []
        if calibration is not None:
            tensorfile, cache, batches = calibration
            int8 = ["--cal_data_file", tensorfile, "--cal_cache_file", cache,
                    "--batches", batches]
        super().__init__(
            name=name,
            command=[profile.cli, "gen_trt_engine", "-m", model, "-e", spec, "-r", results_dir,
                     "--data_type", precision, "--engine_file", engine_file, *int8,
                     "--batch_size", batch_size, "--max_batch_size", max_batch_size,
                     "--opt_batch_size", max_batch_size],
            report=("convert", "--engine", engine_file, "--precision", precision),
            writes=[engine_file, results_dir, *([calibration[1]] if calibration else [])],
            requires=[calibration[0]] if calibration else [],
            status_file=_status_file(profile, results_dir),
        )


class EvaluateEngineOp(PublishingOp):
    """``classification_tf1 evaluate -m ENGINE`` (TAO 5, deploy image): the TensorRT
    engine's own top-1 accuracy on the spec's ``eval_config.eval_dataset_path``, next to the
    retrained model's; fails when the engine loses more than ``max_drop``. It runs where
    the engine was built (deploy image, one GPU, the GPU steps' node selector): an engine
    is specific to the GPU model that built it.

    TAO Deploy's evaluate takes no key and no ``--gpus``; ``-c`` is retrain's class map
    (sorted folder names would count stray files too) and ``-b 1`` evaluates every image
    within any engine's batch range (docs/tao5.md cites the source).
    """

    image_role = "deploy"

    def __init__(
        self, *, profile: Profile, name: str, engine_file: Value, precision: Value,
        spec: Value, results_dir: Value, class_map: Value, max_drop: Value,
    ) -> None:
        super().__init__(
            name=name,
            command=[profile.cli, "evaluate", "-m", engine_file, "-e", spec, "-r", results_dir,
                     "-c", class_map, "-b", "1"],
            report=("engine", "--engine", engine_file, "--precision", precision,
                    "--max-drop", max_drop),
            # results_dir lies in convert-trt's, which convert-trt moves aside first; a re-run
            # of this step alone overwrites its own results.json, and the guard reads only
            # the status lines appended by this run.
            requires=[engine_file],
            status_file=_status_file(profile, results_dir),
        )


class SummaryOp(PublishingOp):
    """The exit handler: the run's whole report, however the run ended, from what the
    steps kept on the workspace (``tao_step.results``) and what Argo tells an exit handler;
    then it releases what preflight claimed for this run (nothing, when preflight claimed
    nothing). ``artifacts`` (name -> path) are listed with their size, or as not produced.
    Fails when the quality gate failed, so the run shows that the model did not pass."""

    runs_tao = False
    gpus = 0

    def __init__(self, *, profile: Profile, name: str, workspace: Value,
                 artifacts: dict) -> None:
        super().__init__(name=name, runtime_args=[
            "summary", "--out-dir", OUTPUTS_DIR, "--workspace", workspace, "--run", RUN_NAME,
            "--run-uid", RUN_UID, "--status", WORKFLOW_STATUS, "--failures", WORKFLOW_FAILURES,
            *release_args(profile.version),
            *[arg for name, path in artifacts.items() for arg in ("--artifact", name, path)]])
