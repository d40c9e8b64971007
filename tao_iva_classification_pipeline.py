"""TAO Toolkit image classification (ResNet-18 transfer learning) as a Kubeflow pipeline.

    python tao_iva_classification_pipeline.py            # writes <this file>.tar.gz (TAO 3.0)
    python tao_iva_classification_pipeline.py --tao-version 5.0   # the TAO 5 (TF1) build
    python tao_iva_classification_pipeline.py --help     # every option

Upload the package in the Kubeflow Pipelines UI (or with ``kfp pipeline upload``) and fill
the Create Run form; the parameters keep the names of NVIDIA's original sample.

What must exist on the cluster before a run:
- the image(s) built from ``docker/`` in a registry the nodes can pull from (``--image``;
  with TAO 5 also ``--deploy-image``);
- on the node(s) that run the steps, the workspace directory ``tao_mount_dir`` holding
  ``specs/`` and the dataset under ``tao-experiments/data/split/`` (see README.md); the
  steps mount it as a hostPath of type ``Directory``, so a node without it fails the pod
  at once instead of training on an empty directory; namespaces that enforce the Baseline
  Pod Security Standard refuse hostPath volumes, so there it must be behind a
  PersistentVolumeClaim (``--pvc``; docs/storage.md);
- GPU nodes that advertise ``nvidia.com/gpu`` (NVIDIA device plugin or GPU operator).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from kfp import dsl

import tao_iva_classification_ops as ops
from tao_step import claims, form, profiles, results

PIPELINE_NAME = "tao-iva-classification"

# The volume every step mounts: the workspace holding models, specs, data and results.
WORKSPACE_VOLUME = "nvidia-workspace"
# Printed when compiling with the hostPath workspace: where such pods are refused at
# creation (docs/storage.md gives the sources and how to keep the node directory).
HOSTPATH_NOTE = (
    "note: namespaces that enforce the Baseline Pod Security Standard (Kubeflow 1.10.2+ "
    "profiles, KFP >= 2.16) refuse hostPath volumes; use --pvc CLAIM (docs/storage.md)"
)

COMPILED_SUFFIXES = (".tar.gz", ".zip", ".yaml")
DEFAULT_OUTPUT = Path(__file__).resolve().with_name(Path(__file__).name + ".tar.gz")


# The Create Run form (in the original sample's order, then min_accuracy) and the steps,
# from the one table in tao_step/form.py; a release's differences are in its profile.
Param = form.Parameter
PARAMETERS = form.PARAMETERS
# Per-step time limits (activeDeadlineSeconds) unless --step-timeout says otherwise.
DEFAULT_TIMEOUTS = form.DEFAULT_TIMEOUTS
DEFAULT_TIMEOUT = form.DEFAULT_TIMEOUT
STEP_NAMES = form.STEP_NAMES
# What the run summary lists: the name it shows, the parameter giving the path, and what
# follows it; folders are listed with the size of all they hold.
SUMMARY_ARTIFACTS = form.summary_artifacts(profiles.all_parameters())

# Where a --key-secret value reaches TAO: Kubernetes expands $(TAO_API_KEY) in the args.
KEY_ENV = form.KEY_ENV
KEY_REFERENCE = f"$({KEY_ENV})"
# What the NGC CLI reads for authenticated downloads.
NGC_KEY_ENV = "NGC_CLI_API_KEY"


class SecretRef(NamedTuple):
    name: str
    key: str


@dataclass(frozen=True)
class CompileOptions:
    """Choices made when compiling, as opposed to when filling the Create Run form.
    Every field's default is the original sample's behaviour or a safe addition to it."""

    # The TAO release (tao_step/profiles.py): its CLIs, images, form and specs.
    tao_version: str = profiles.DEFAULT_VERSION
    # Images of the TAO steps and, for releases with one, of the TensorRT build; None: the
    # tags docker/build.sh gives.
    image: str | None = None
    deploy_image: str | None = None
    # Storage: an existing PersistentVolumeClaim instead of the hostPath at tao_mount_dir.
    pvc: str | None = None
    # Secrets: TAO model key (replaces the api_key field), NGC API key, registry login.
    key_secret: SecretRef | None = None
    ngc_secret: SecretRef | None = None
    image_pull_secrets: tuple = ()
    # Scheduling: node labels to match, and tolerating the nvidia.com/gpu taint.
    node_selector: tuple = ()
    gpu_toleration: bool = False
    # Requests of every TAO step, so a busy node neither starves nor evicts it first.
    cpu_request: str = "4"
    memory_request: str = "16Gi"
    # Requests of the light steps (checks, download, report, release): small, but not none,
    # which would make them BestEffort pods, the first a busy node evicts.
    light_cpu_request: str = "250m"
    light_memory_request: str = "512Mi"
    # activeDeadlineSeconds per step name, over DEFAULT_TIMEOUTS / DEFAULT_TIMEOUT.
    timeouts: tuple = ()
    # Create Run defaults changed at compile time (--param): a pre-filled form.
    defaults: tuple = ()

    @property
    def profile(self) -> profiles.Profile:
        return profiles.get(self.tao_version)

    def images(self) -> dict:
        """``{role: image}``: the profile's images, as given or as docker/build.sh tags them."""
        given = {"train": self.image, "deploy": self.deploy_image}
        return {role: given[role] or default
                for role, default in ops.default_images(self.profile).items()}

    def timeout(self, step: str) -> int:
        return dict(self.timeouts).get(step, DEFAULT_TIMEOUTS.get(step, DEFAULT_TIMEOUT))

    def parameters(self) -> tuple:
        """The release's Create Run parameters (PARAMETERS changed as its profile says),
        with the key field whatever the secrets."""
        return form.parameters_of(self.profile)

    def form(self) -> tuple:
        """The Create Run parameters this build shows, with their defaults."""
        hidden = {"api_key"} if self.key_secret else set()
        changed = dict(self.defaults)
        return tuple(p._replace(default=changed.get(p.name, p.default))
                     for p in self.parameters() if p.name not in hidden)

    def problems(self) -> list:
        """What is wrong with the form's defaults, by the checks the preflight step runs
        on the submitted values (so a pre-filled form cannot ship a mistake)."""
        from tao_step.preflight import validate_values

        values = {p.name: p.default for p in self.form()}
        if self.key_secret:
            values["api_key"] = "from-the-secret"  # checked at run time, in the pod
        return validate_values(values, self.profile, self.bash_read())

    def bash_read(self) -> tuple:
        """The parameters whose values reach a TAO command wrapper, which re-reads them
        with bash: read from this build's steps, as the compiler creates them."""
        with _kfp_quiet(), dsl.Pipeline(PIPELINE_NAME) as scratch:
            make_pipeline(self)(*(dsl.PipelineParam(p.name) for p in self.form()))
        return bash_read_parameters(scratch.ops.values())


def bash_read_parameters(steps) -> tuple:
    """The parameters in the TAO commands of ``steps`` that a wrapper re-reads with bash
    (``TaoOp.bash_read_values``): those given as pipeline parameters, and api_key where
    the key Secret stands in for it."""
    values = [value for step in steps for value in step.bash_read_values()]
    names = ops.parameters_in(values)
    if any(KEY_REFERENCE in str(value) for value in values):
        names.add("api_key")
    return tuple(sorted(names))


def make_pipeline(options: CompileOptions = CompileOptions()) -> Callable:
    """The pipeline function for ``options``: the form is PARAMETERS, the body ``_wire``."""
    form = options.form()
    signature = inspect.Signature(
        [
            inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                              default=p.default, annotation=str)
            for p in form
        ]
    )

    def tao_iva_classification(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        _wire(bound.arguments, options)

    tao_iva_classification.__signature__ = signature
    tao_iva_classification.__annotations__ = {p.name: str for p in form}
    return dsl.pipeline(name=PIPELINE_NAME, description=options.profile.description)(
        tao_iva_classification
    )


def _wire(p: dict, options: CompileOptions) -> None:
    """The run: preflight claims the outputs of the run in the workspace (tao_step.claims);
    the exit handler (Argo's onExit), step ``summary``, reports the whole run and releases
    the claim whether the steps succeed, fail or stop at the quality gate. An exit handler
    reads no task outputs: the steps leave their results on the workspace."""
    dsl.get_pipeline_conf().add_op_transformer(_step_settings(p["tao_mount_dir"], options))
    form = {q.name for q in options.parameters()}
    summary = ops.SummaryOp(
        profile=options.profile, name="summary", workspace=p["tao_mount_dir"],
        artifacts={name: f"{p['tao_mount_dir']}/{p[param]}{suffix}"
                   for name, param, suffix in SUMMARY_ARTIFACTS if param in form})
    with dsl.ExitHandler(summary):
        preflight = _steps(p, options)
    preflight.check_bash_read(
        bash_read_parameters(dsl.Pipeline.get_default_pipeline().ops.values()))


def _steps(p: dict, options: CompileOptions) -> ops.PreflightOp:
    """The DAG. Steps exchange files on the workspace, so each edge is an ``after``: it
    exists exactly where a step reads what another writes (docs/pipeline.md explains each).
    What differs between TAO releases comes from ``options.profile``. Returns the first
    step, preflight.
    """
    profile = options.profile

    def ws(name: str) -> str:
        return f"{p['tao_mount_dir']}/{p[name]}"

    # With a key secret the key never becomes a parameter: Kubernetes substitutes it.
    key = KEY_REFERENCE if options.key_secret else p["api_key"]
    tao = {"profile": profile}

    # Checks the submitted form, the specs and the dataset in seconds, before any GPU step;
    # every value, the key too (from the Secret's environment variable, if one is set).
    preflight = ops.PreflightOp(
        name="preflight", workspace=p["tao_mount_dir"], tao_version=profile.version,
        values={q.name: p[q.name] for q in options.form()},
        key_from_env=options.key_secret is not None,
    )
    download = ops.DownloadModelOp(
        name="download-model", model=p["pretrained_model_name"], dest=ws("pretrained_model_dir")
    ).after(preflight)
    train = ops.TrainOp(
        **tao, name="train-model", label="baseline", spec=ws("train_classification_spec"),
        results_dir=ws("train_classification_output"), num_gpus=p["train_num_gpus"], key=key,
    ).after(download)
    ops.EvaluateOp(
        **tao, name="evaluate-model", label="baseline", spec=ws("train_classification_spec"),
        key=key, results_dir=ws("train_classification_output") + "/evaluate",
        training_results=ws("train_classification_output"),
    ).after(train)
    prune = ops.PruneOp(
        **tao, name="prune-model", model=ws("prune_model_input_file"),
        output_file=ws("prune_model_output_file"), threshold=p["prune_threshold"],
        equalization_criterion=p["prune_equalization_criterion"], key=key,
    ).after(train)
    retrain = ops.TrainOp(
        **tao, name="retrain-model", label="retrained", spec=ws("retrain_classification_spec"),
        results_dir=ws("retrain_classification_output"), num_gpus=p["train_num_gpus"], key=key,
    ).after(prune)
    reevaluate = ops.EvaluateOp(
        **tao, name="reevaluate-model", label="retrained",
        spec=ws("retrain_classification_spec"), key=key,
        results_dir=ws("retrain_classification_output") + "/evaluate",
        min_accuracy=p["min_accuracy"],
        training_results=ws("retrain_classification_output"),
    ).after(retrain)
    ops.InferenceOp(
        **tao, name="test-infer", spec=ws("retrain_classification_spec"),
        model=ws("test_infer_model_input_file"), image_dir=ws("test_infer_image_path"),
        batch_size=p["test_infer_batch_size"], class_map=ws("test_infer_class_map"), key=key,
    ).after(retrain)
    # Calibration reads only the spec's training images: it runs from the start.
    calibrate = ops.CalibrationTensorfileOp(
        **tao, name="calibrate-model", spec=ws("calibrate_classification_spec"),
        max_batches=p["calibrate_max_batches"], output_file=ws("calibrate_output_file"),
    ).after(preflight)

    # The quality gate: nothing is exported from a model below min_accuracy. Groups with
    # one verdict, because a group waits for everything its steps wait for: the FP32
    # export must not wait for calibration.
    passed = reevaluate.outputs["gate"] == "pass"
    with dsl.Condition(passed, name="gate-fp32-export"):
        export = ops.ExportOp(
            **tao, name="export-model", model=ws("export_model_input_file"),
            output_file=ws("export_model_output_file"), key=key,
            spec=ws("retrain_classification_spec"),
        ).after(retrain)
    ENGINE_WIRING[profile.engine.wiring](
        p, ws, key, profile, passed, after_export=[retrain, export], calibrate=calibrate)

    return preflight


def _wire_converter(p, ws, key, profile, passed, *, after_export, calibrate) -> list:
    """TAO 3.0: an INT8 ``.etlt`` export writes the calibration cache, and tao-converter
    builds the engine from that ``.etlt``."""
    retrain = after_export[0]
    with dsl.Condition(passed, name="gate-int8-export"):
        export_int8 = ops.ExportInt8Op(
            profile=profile, name="export-int8-model", model=ws("export_model_input_file"),
            output_file=ws("export_int8_model_output_file"),
            calibration_tensorfile=ws("calibrate_output_file"),
            data_type=p["convert_trt_precision"], batches=p["export_int8_batches"],
            calibration_cache=ws("export_int8_cache_file"), key=key,
        ).after(retrain, calibrate)

        engine = dict(
            name="convert-trt", model=ws("export_int8_model_output_file"), key=key,
            output_node=p["convert_trt_output_layer"], dims=p["convert_trt_dims"],
            input_type=p["convert_trt_input_type"],
            max_batch_size=p["convert_trt_max_batch_size"],
            precision=p["convert_trt_precision"], engine_file=ws("convert_trt_output_file"),
            batch_size=p["convert_trt_batch_size"],
        )
        # Only an INT8 build reads the calibration cache; an FP16/FP32 export writes none,
        # so those engines are built without -c. Both variants are shown as convert-trt.
        with dsl.Condition(p["convert_trt_precision"] == "int8", name="int8-engine"):
            convert_int8 = ops.ConvertTrtInt8Op(
                calibration_cache=ws("export_int8_cache_file"), **engine
            ).after(export_int8)
        with dsl.Condition(p["convert_trt_precision"] != "int8", name="fp-engine"):
            convert_fp = ops.ConvertTrtOp(**engine).after(export_int8)
            convert_fp.set_display_name("convert-trt")
    return [convert_int8, convert_fp]


def _wire_gen_trt_engine(p, ws, key, profile, passed, *, after_export, calibrate) -> list:
    """TAO 5: ``gen_trt_engine`` in the deploy image builds the engine from the ONNX
    export; for INT8 it calibrates on calibrate-model's tensorfile and writes the cache
    (export_int8_cache_file, export_int8_batches keep their meaning)."""
    with dsl.Condition(passed, name="gate-engine"):
        engine = dict(
            profile=profile, name="convert-trt", model=ws("export_model_output_file"),
            spec=ws("retrain_classification_spec"), results_dir=ws("convert_trt_results_dir"),
            precision=p["convert_trt_precision"], engine_file=ws("convert_trt_output_file"),
            batch_size=p["convert_trt_batch_size"],
            max_batch_size=p["convert_trt_max_batch_size"],
        )
        with dsl.Condition(p["convert_trt_precision"] == "int8", name="int8-engine"):
            convert_int8 = ops.GenTrtEngineOp(
                calibration=(ws("calibrate_output_file"), ws("export_int8_cache_file"),
                             p["export_int8_batches"]), **engine,
            ).after(*after_export, calibrate)
        with dsl.Condition(p["convert_trt_precision"] != "int8", name="fp-engine"):
            convert_fp = ops.GenTrtEngineOp(**engine).after(*after_export)
            convert_fp.set_display_name("convert-trt")
    return [convert_int8, convert_fp]


# How each release builds the TensorRT engine (Profile.engine.wiring).
ENGINE_WIRING = {"converter": _wire_converter, "gen_trt_engine": _wire_gen_trt_engine}


def _step_settings(mount_dir, options: CompileOptions) -> Callable:
    """What every step gets, applied once for the whole pipeline."""
    from kfp.onprem import mount_pvc, use_k8s_secret
    from kubernetes import client as k8s

    if options.image_pull_secrets:
        dsl.get_pipeline_conf().set_image_pull_secrets(
            [k8s.V1LocalObjectReference(name=name) for name in options.image_pull_secrets]
        )
    # A hostPath is node-local: every step must land on the node that holds it, so
    # scheduling constraints then apply to all steps, not only to the GPU ones.
    pin_all_steps = options.pvc is None
    images = options.images()

    def apply(op):
        op.container.image = images[op.image_role]
        # The v1 backend caches by template, not by workspace contents: a re-run with the
        # same form would silently skip all training. P0D is the switch it honours.
        op.execution_options.caching_strategy.max_cache_staleness = "P0D"
        op.set_caching_options(False)  # the label alone does nothing on v1; keeps YAML honest
        if options.pvc:
            op.apply(mount_pvc(options.pvc, WORKSPACE_VOLUME, str(mount_dir)))
        else:
            op.add_volume(k8s.V1Volume(
                name=WORKSPACE_VOLUME,
                host_path=k8s.V1HostPathVolumeSource(path=str(mount_dir), type="Directory"),
            ))
            op.container.add_volume_mount(
                k8s.V1VolumeMount(name=WORKSPACE_VOLUME, mount_path=str(mount_dir))
            )

        # Which run the step belongs to: a step that writes re-takes the run's claim on the
        # workspace (tao_step.claims), so a run resumed by KFP's Retry is covered again.
        run = (str(mount_dir), ops.RUN_NAME, ops.RUN_UID)
        for name, value in zip(claims.RUN_ENV, run, strict=True):
            op.container.add_env_variable(k8s.V1EnvVar(name=name, value=value))
        step = op.human_name
        # ... and its name, which names the result it keeps for the summary (tao_step.results).
        op.container.add_env_variable(k8s.V1EnvVar(name=results.STEP_ENV, value=step))
        uses_gpu = bool(isinstance(op.gpus, dsl.PipelineParam) or op.gpus)
        if options.key_secret and (op.reads_key_env
                                   or any(KEY_REFERENCE in str(a) for a in op.container.args)):
            op.apply(use_k8s_secret(options.key_secret.name, {options.key_secret.key: KEY_ENV}))
        if options.ngc_secret and step == "download-model":
            op.apply(use_k8s_secret(options.ngc_secret.name,
                                    {options.ngc_secret.key: NGC_KEY_ENV}))
        if uses_gpu or pin_all_steps:
            for label, value in options.node_selector:
                op.add_node_selector_constraint(label, value)
            if options.gpu_toleration:
                op.add_toleration(k8s.V1Toleration(
                    key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"))
        if op.runs_tao:  # TAO's own commands, as opposed to NGC and our checks and report
            for name, value in options.profile.env:
                op.container.add_env_variable(k8s.V1EnvVar(name=name, value=value))
        # TAO's own commands, as opposed to NGC and our checks, report and release
        cpu, memory = ((options.cpu_request, options.memory_request) if op.runs_tao else
                       (options.light_cpu_request, options.light_memory_request))
        if cpu != "0":
            op.container.add_resource_request("cpu", cpu)
        if memory != "0":
            op.container.add_resource_request("memory", memory)

        if step == "download-model":
            # NGC downloads fail on network hiccups: retry any failure, backing off 30 s,
            # 60 s, 120 s. No maxDuration: Argo counts it from the first attempt's start, so
            # it would forbid retrying a download that failed after a long transfer.
            op.set_retry(3, policy="Always", backoff_duration="30s", backoff_factor=2)
        elif op.publishes:
            # No retry strategy: with one, Argo (v3.3.8 to v4.0.5) copies the attempt's
            # outputs onto the Retry node (operator.go processNodeRetries) and KFP stores the
            # mlpipeline-metrics of every node that has them, so the Metrics table lists the
            # step twice. These steps take minutes; the long ones (training) publish nothing
            # themselves and keep their retry (docs/tao-step-report.md). KFP 2.17's
            # templateDefaults retry every template anyway, and no template field can opt out
            # (rehearsal/kfp_releases.py, docs/kfp-releases.md).
            pass
        else:
            # OnError: only when Argo reports an error of the infrastructure (pod deleted,
            # node lost, its own containers failing), never when TAO itself exited non-zero:
            # a TAO failure repeats, wasting GPU hours.
            op.set_retry(2, policy="OnError", backoff_duration="1m")
        op.set_timeout(options.timeout(step))
        return op

    return apply


# What a failed step stops: only the steps that depend on it (docs/pipeline.md argues why).
# Argo defaults a DAG's failFast to true, which from v3.3.8 to v4.0.5 never keeps a ready task
# from starting (workflow/controller/dag.go: failFast is read only in assessDAGPhase, to fail
# the DAG once nothing runs); false says what happens, and the rehearsal does the same.
FAIL_FAST = False


def compile_pipeline(options: CompileOptions, output: Path) -> None:
    from kfp import compiler

    class Compiler(compiler.Compiler):
        # kfp 1.8 has no setting for a DAG's failFast; _create_workflow is the one place
        # compile() and create_workflow() build the workflow, before it is validated and
        # written in the format the suffix chooses.
        def _create_workflow(self, *args, **kwargs):
            workflow = super()._create_workflow(*args, **kwargs)
            for template in workflow["spec"]["templates"]:
                if "dag" in template:
                    template["dag"]["failFast"] = FAIL_FAST
            return workflow

    with _kfp_quiet():
        Compiler().compile(make_pipeline(options), str(output))


@contextlib.contextmanager
def _kfp_quiet():
    with warnings.catch_warnings():
        # kfp 1.8 warns on every direct ContainerOp; these steps are ContainerOps by design.
        warnings.filterwarnings(
            "ignore", category=FutureWarning, message="Please create reusable components"
        )
        yield


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _output_path(text: str) -> Path:
    if not text.endswith(COMPILED_SUFFIXES):
        raise argparse.ArgumentTypeError(
            f"{text!r} must end in {', '.join(COMPILED_SUFFIXES)} "
            "(the format is chosen by the suffix)"
        )
    return Path(text)


def _image(text: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an image reference (e.g. registry.example.com/tao-kfp:v1)"
        )
    return text


# Kubernetes' own naming rules (a DNS-1123 subdomain; a label's name and value parts).
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


def _object_name(kind: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not _DNS_SUBDOMAIN.match(text):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a valid {kind} name (lower-case letters, digits, '-' and "
                "'.', starting and ending with a letter or digit)"
            )
        return text

    return parse


def _secret_ref(text: str) -> SecretRef:
    name, _, key = text.partition(":")
    _object_name("Secret")(name)
    key = key or "key"
    if not _SECRET_KEY.match(key):
        raise argparse.ArgumentTypeError(f"{key!r} is not a valid key inside a Secret")
    return SecretRef(name, key)


def _node_selector(text: str) -> tuple:
    label, sep, value = text.partition("=")
    prefix, slash, name = label.rpartition("/")
    if (not sep or not _LABEL_PART.match(name) or (slash and not _DNS_SUBDOMAIN.match(prefix))
            or (value and not _LABEL_PART.match(value))):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not KEY=VALUE with a valid node label, e.g. "
            "nvidia.com/gpu.product=NVIDIA-A100-SXM4-40GB"
        )
    return (label, value)


def _form_value(text: str) -> tuple:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    known = {p.name for p in profiles.all_parameters()}
    if name not in known:
        raise argparse.ArgumentTypeError(
            f"{name!r} is not a Create Run parameter (see the table in README.md)")
    return (name, value)


def _quantity(text: str) -> str:
    from kubernetes.utils import parse_quantity

    try:
        negative = parse_quantity(text) < 0
    except ValueError:
        negative = None
    if negative is not False:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Kubernetes quantity of at least 0 (e.g. 4, 500m, 16Gi; 0 for "
            "no request)"
        )
    return text


_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# The shortest --step-timeout taken. A pod's activeDeadlineSeconds counts from its
# status.startTime, when the kubelet takes it, before the image is pulled (PodStatus in
# k8s.io/api core/v1 types.go): pulling the multi-GB TAO image and loading Python and TAO
# count against it, so no step finishes within a few seconds.
MIN_STEP_TIMEOUT = 60


def _step_timeout(text: str) -> tuple:
    step, _, duration = text.rpartition("=")
    if duration.isdigit():
        raise argparse.ArgumentTypeError(
            f"{duration!r} is not a duration: the number needs a unit, s, m, h or d (e.g. "
            f"{int(duration) or 48}h)")
    match = _DURATION.match(duration)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{duration!r} is not a duration: a whole number with s, m, h or d (e.g. 48h)")
    if step and step not in STEP_NAMES:
        raise argparse.ArgumentTypeError(
            f"{step!r} is not a step; steps: {', '.join(STEP_NAMES)}"
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < MIN_STEP_TIMEOUT:
        raise argparse.ArgumentTypeError(
            f"{duration!r} is shorter than any step takes (the limit counts from the pod's "
            f"start, image pull included); give at least {MIN_STEP_TIMEOUT // 60}m")
    return (step or "*", seconds)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=Path(sys.argv[0]).name if sys.argv[0].endswith(".py") else None,
        description="Compile the TAO image-classification pipeline for Kubeflow Pipelines. "
        "With no option, the build runs like NVIDIA's original sample: hostPath workspace, "
        "key in the form.",
        epilog="Upload the result in the Kubeflow UI (Pipelines > Upload pipeline) or with "
        "'kfp pipeline upload -p NAME FILE'. README.md shows the Kubernetes objects the "
        "storage, secret and scheduling options expect.",
    )
    parser.add_argument(
        "--output", "-o", type=_output_path, metavar="PATH",
        help=f"where to write the compiled pipeline; .tar.gz (default, {DEFAULT_OUTPUT}), "
        ".zip or .yaml",
    )
    parser.add_argument(
        "--tao-version", choices=tuple(profiles.PROFILES), default=profiles.DEFAULT_VERSION,
        help="the TAO release to run (default: %(default)s): 3.0 runs 'classification' and "
        "tao-converter; 5.0 runs 'classification_tf1' in the TAO 5 TF1 image, exports ONNX "
        "and builds the engine with gen_trt_engine in the deploy image (README.md: which to "
        "pick)",
    )
    parser.add_argument(
        "--image", type=_image,
        help="container image of the TAO steps, as the cluster pulls it (default: "
        f"{ops.DEFAULT_IMAGE} for 3.0, the tag docker/build.sh gives; push it to your "
        "registry and name it here)",
    )
    parser.add_argument(
        "--deploy-image", type=_image,
        help="with --tao-version 5.0: the image of convert-trt (TAO Deploy's gen_trt_engine; "
        "default: the tag 'docker/build.sh --tao-version 5.0' gives)",
    )
    parser.add_argument(
        "--param", type=_form_value, action="append", default=[], metavar="NAME=VALUE",
        help="change a Create Run default (repeatable), to ship a pre-filled form; checked "
        "like the form itself",
    )
    rehearsal = parser.add_argument_group(
        "rehearsal", "run the whole pipeline on this machine against a fake TAO")
    rehearsal.add_argument(
        "--dry-run", action="store_true",
        help="execute the compiled pipeline locally, step by step in DAG order, with a "
        "small generated dataset; writes no package; exit status 0 only if every step passed",
    )
    rehearsal.add_argument(
        "--specs", type=Path, metavar="DIR",
        help="with --dry-run: spec files to rehearse with (default: specs/, or specs/tao5/ "
        "with --tao-version 5.0)",
    )
    rehearsal.add_argument(
        "--workspace", type=Path, metavar="DIR",
        help="with --dry-run: the workspace to use and keep (default: a temporary one); "
        "a second dry run on it reruns on the first one's results",
    )
    rehearsal.add_argument(
        "--outputs", type=Path, metavar="DIR",
        help="with --dry-run: keep each step's Kubeflow metrics and UI metadata in DIR (new "
        "or empty), with run.json (every step's status) and run-output.html, a preview of "
        "each step's Visualizations, the Run output tab, run list and Compare runs",
    )
    rehearsal.add_argument(
        "--kfp-release", metavar="X.Y",
        help="with --dry-run --outputs: the Kubeflow Pipelines release (e.g. 1.8, 2.17) "
        "whose UI the preview shows (default: the KFP of the current Kubeflow release; "
        "docs/kfp-releases.md says what differs)",
    )
    storage = parser.add_argument_group("storage")
    storage.add_argument(
        "--pvc", type=_object_name("PersistentVolumeClaim"), metavar="CLAIM",
        help="mount this existing PersistentVolumeClaim at tao_mount_dir in every step "
        "instead of the node's hostPath; parallel steps on several nodes need ReadWriteMany",
    )
    secrets = parser.add_argument_group("secrets")
    secrets.add_argument(
        "--key-secret", type=_secret_ref, metavar="NAME[:KEY]",
        help="take the TAO model key (-k) from this Secret (data key KEY, default 'key') "
        "instead of the api_key field, which leaves the form; the key never enters the "
        "pipeline",
    )
    secrets.add_argument(
        "--ngc-secret", type=_secret_ref, metavar="NAME[:KEY]",
        help="give download-model this Secret's NGC API key (as NGC_CLI_API_KEY) for "
        "private NGC models",
    )
    secrets.add_argument(
        "--image-pull-secret", type=_object_name("Secret"), action="append", default=[],
        metavar="NAME", help="pull the image with this docker-registry Secret (repeatable)",
    )
    scheduling = parser.add_argument_group("scheduling")
    scheduling.add_argument(
        "--node-selector", type=_node_selector, action="append", default=[],
        metavar="KEY=VALUE",
        help="run GPU steps only on nodes with this label (repeatable); with the hostPath "
        "workspace, every step, since they must all reach the same node's directory",
    )
    scheduling.add_argument(
        "--gpu-toleration", action="store_true",
        help="let GPU steps (every step, with the hostPath workspace) run on nodes tainted "
        "nvidia.com/gpu:NoSchedule",
    )
    scheduling.add_argument(
        "--cpu-request", type=_quantity, default=CompileOptions.cpu_request, metavar="CPU",
        help="CPU request of every TAO step (default: %(default)s; 0: none)",
    )
    scheduling.add_argument(
        "--memory-request", type=_quantity, default=CompileOptions.memory_request,
        metavar="MEMORY", help="memory request of every TAO step (default: %(default)s; 0: none)",
    )
    failures = parser.add_argument_group("failures")
    failures.add_argument(
        "--step-timeout", type=_step_timeout, action="append", default=[],
        metavar="[STEP=]DURATION",
        help="time limit of every step, or of STEP (repeatable; a number with its unit, s, "
        f"m, h or d, at least {MIN_STEP_TIMEOUT // 60}m; e.g. 96h, train-model=5d); "
        f"defaults: preflight and summary {DEFAULT_TIMEOUTS['summary'] // 60}m, "
        f"download-model {DEFAULT_TIMEOUTS['download-model'] // 3600}h, "
        f"train-model and retrain-model {DEFAULT_TIMEOUTS['train-model'] // 3600}h, "
        f"others {DEFAULT_TIMEOUT // 3600}h",
    )
    return parser


def options_from_args(args: argparse.Namespace) -> CompileOptions:
    """CompileOptions, or ValueError naming the options that do not go together."""
    selector = dict(args.node_selector)
    for label, value in args.node_selector:
        if selector[label] != value:
            raise ValueError(f"--node-selector: {label} is given two values "
                             f"({value!r} and {selector[label]!r})")
    profile = profiles.get(args.tao_version)
    # A release without a separate INT8 export has no export-int8-model step.
    steps = tuple(s for s in STEP_NAMES if profile.int8_export or s != "export-int8-model")
    timeouts = {}
    # A limit for all steps first, then per-step ones, whatever the order given.
    for step, seconds in sorted(args.step_timeout, key=lambda item: item[0] != "*"):
        if step != "*" and step not in steps:
            raise ValueError(f"--step-timeout: the TAO {profile.version} build has no step "
                             f"{step} (steps: {', '.join(steps)})")
        targets = steps if step == "*" else (step,)
        timeouts.update({name: seconds for name in targets})
    given = dict(args.param)
    if args.deploy_image and "deploy" not in dict(profile.image_dirs):
        raise ValueError(f"--deploy-image: TAO {profile.version} has no deploy image (it "
                         "goes with --tao-version 5.0)")
    form = [p.name for p in CompileOptions(tao_version=profile.version).parameters()]
    for name in given:
        if name not in form:
            raise ValueError(f"--param {name}: not a Create Run parameter of the TAO "
                             f"{profile.version} build (see the table in README.md)")
    if args.key_secret and "api_key" in given:
        raise ValueError("--param api_key cannot be combined with --key-secret: the key "
                         "comes from the Secret")
    for flag in ("specs", "workspace", "outputs"):
        if getattr(args, flag) is not None and not args.dry_run:
            raise ValueError(f"--{flag} goes with --dry-run")
    if args.kfp_release is not None:
        from rehearsal import kfp_releases

        if args.outputs is None:
            raise ValueError("--kfp-release goes with --dry-run --outputs DIR (it picks the "
                             "release the preview shows)")
        kfp_releases.line_of(args.kfp_release)
    if args.dry_run and args.output is not None:
        raise ValueError("--output does not go with --dry-run: a rehearsal writes no package")
    if args.specs is not None and not args.specs.is_dir():
        raise ValueError(f"--specs: {args.specs} is not a directory")
    if args.outputs is not None:
        from rehearsal.outputs import outputs_dir_problem

        problem = outputs_dir_problem(args.outputs)
        if problem:
            raise ValueError(problem)
    return CompileOptions(
        tao_version=profile.version,
        defaults=tuple(given.items()),
        image=args.image,
        deploy_image=args.deploy_image,
        pvc=args.pvc,
        key_secret=args.key_secret,
        ngc_secret=args.ngc_secret,
        image_pull_secrets=tuple(dict.fromkeys(args.image_pull_secret)),
        node_selector=tuple(sorted(selector.items())),
        gpu_toleration=args.gpu_toleration,
        cpu_request=args.cpu_request,
        memory_request=args.memory_request,
        timeouts=tuple(sorted(timeouts.items())),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    problems = options.problems()
    if problems:
        for problem in problems:
            print(f"{parser.prog}: error: {problem}", file=sys.stderr)
        return 2
    if args.dry_run:
        return _dry_run(options, args, parser)
    output = args.output or DEFAULT_OUTPUT
    if not output.parent.is_dir():
        parser.error(f"--output: directory {output.parent} does not exist")
    if output.is_dir():
        parser.error(f"--output: {output} is a folder; name a file to write, e.g. "
                     f"{output / DEFAULT_OUTPUT.name}")
    given = {"train": options.image, "deploy": options.deploy_image}
    unbuilt = [image for role, image in options.images().items() if not given[role]]
    if unbuilt:
        version = "" if options.tao_version == "3.0" else f" --tao-version {options.tao_version}"
        print(f"note: the steps run {' and '.join(unbuilt)}, which no registry holds until you "
              f"build and push {'them' if len(unbuilt) > 1 else 'it'} (docker/build.sh{version} "
              "REGISTRY --push); then compile "
              "with the --image options it prints", file=sys.stderr)
    try:
        _write_package(options, output)
    except OSError as error:
        parser.error(f"--output: cannot write {output} ({error.strerror or error}); "
                     "choose a folder you can write")
    if options.pvc is None:
        print(HOSTPATH_NOTE, file=sys.stderr)
    print(f"wrote {output}")
    return 0


def _write_package(options: CompileOptions, output: Path) -> None:
    """Compile into a scratch folder, then copy: a failed write leaves no partial file."""
    import shutil
    import tempfile

    existed = output.exists()
    with tempfile.TemporaryDirectory(prefix="tao-compile-") as scratch:
        package = Path(scratch) / f"pipeline{''.join(output.suffixes[-2:])}"
        compile_pipeline(options, package)
        try:
            shutil.copyfile(package, output)
        except OSError:
            if not existed and output.is_file():
                output.unlink()
            raise


def _dry_run(options: CompileOptions, args: argparse.Namespace,
             parser: argparse.ArgumentParser) -> int:
    from rehearsal import interrupts

    # SIGTERM stops a rehearsal as Ctrl-C does, with the same cleanup (exit status 143).
    with interrupts.sigterm_interrupts():
        return _rehearse(options, args, parser)


def _rehearse(options: CompileOptions, args: argparse.Namespace,
              parser: argparse.ArgumentParser) -> int:
    import shutil
    import tempfile

    import yaml

    from rehearsal import dry_run, interrupts

    def progress(line: str) -> None:
        print(f"  {line}", flush=True)

    def stopped(interrupt: KeyboardInterrupt) -> int:
        """Ctrl-C or SIGTERM: remove the scratch folder (its compiled package may hold the
        form's key), whatever the rehearsal had reached."""
        with interrupts.ignored():  # a second signal must not cut the removal short
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        kept = f"; the workspace {args.workspace} is kept as it was left" \
            if args.workspace is not None else ""
        print(f"{parser.prog}: dry run {interrupts.verb(interrupt)}; its temporary files are "
              f"removed{kept}", file=sys.stderr)
        return interrupts.exit_status(interrupt)

    scratch = None
    # A --workspace folder this run creates is removed again if the rehearsal cannot start.
    created = args.workspace is not None and not args.workspace.exists()
    try:
        fresh = True
        if args.workspace is not None:
            fresh = dry_run.check_workspace_option(args.workspace.absolute())
        scratch = Path(tempfile.mkdtemp(prefix="tao-dry-run-"))
        package = scratch / "pipeline.yaml"
        compile_pipeline(options, package)
        workspace = (args.workspace or scratch / "workspace").absolute()
        rehearsal = dry_run.Rehearsal(
            yaml.safe_load(package.read_text()), overrides=dict(options.defaults),
            specs_dir=args.specs, workspace=workspace, fresh=fresh,
            shipped_specs=Path(__file__).resolve().parent / options.profile.specs_dir,
            tao_version=options.profile.version)
        rehearsal.create_workspace()
        print(f"dry run: workspace {workspace}"
              + ("" if args.workspace is None else " (kept)")
              + f", mounted at tao_mount_dir {rehearsal.form['tao_mount_dir']}", flush=True)
        for line in rehearsal.describe():
            print(f"dry run: {line}", flush=True)
        rehearsal.seed()
        result = rehearsal.run(logs=scratch / "logs", progress=progress)
    except dry_run.RehearsalError as error:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        if created and args.workspace.is_dir():
            shutil.rmtree(args.workspace, ignore_errors=True)
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        return stopped(interrupt)
    try:
        return _dry_run_outcome(result, rehearsal, args, parser, scratch)
    except KeyboardInterrupt as interrupt:
        return stopped(interrupt)


def _dry_run_outcome(result, rehearsal, args: argparse.Namespace,
                     parser: argparse.ArgumentParser, scratch: Path) -> int:
    """Report a finished rehearsal, keep its outputs, and remove the scratch folder unless
    the logs of a failed step are in it."""
    import shutil

    print(result.format_report())
    if args.outputs is not None:
        from rehearsal import kfp_releases
        from rehearsal.outputs import write_outputs

        try:
            write_outputs(result, rehearsal.workflow, args.outputs,
                          args.kfp_release or kfp_releases.DEFAULT_MINOR)
        except (ValueError, OSError) as error:  # DIR taken or unwritable since the start
            print(f"{parser.prog}: error: {error}", file=sys.stderr)
            return 2
        print(f"dry run: what Kubeflow would show is in {args.outputs}: open "
              f"{args.outputs / 'run-output.html'}; every step's status is in "
              f"{args.outputs / 'run.json'}")
    if result.succeeded:
        shutil.rmtree(scratch)
        return 0
    print(f"dry run failed; step logs kept in {scratch / 'logs'}, workspace in "
          f"{rehearsal.workspace}")
    return 1


# The default build, which `dsl-compile --py` finds when it imports this module.
tao_iva_classification_pipeline = make_pipeline()

if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as interrupt:  # a dry run handles its own (and SIGTERM, as
        # rehearsal.interrupts.Terminated); a compile leaves no partial file
        print(f"{Path(sys.argv[0]).name}: {interrupt or 'interrupted'}", file=sys.stderr)
        sys.exit(getattr(interrupt, "exit_status", 130))
