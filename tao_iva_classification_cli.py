"""The compile command: ``python tao_iva_classification_pipeline.py [OPTIONS]``.

Turns the options into ``CompileOptions``, checks them and the pre-filled form the way the
preflight step will, and then either writes the package (``compile_pipeline``) or, with
``--dry-run``, hands the compiled workflow to the local rehearsal (``rehearsal/``). The
rehearsal is imported only for a dry run, so compiling never needs it; the pipeline module
never imports this one except to run it as a script.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import tao_iva_classification_ops as ops
import tao_iva_classification_pipeline as pipeline
from tao_iva_classification_pipeline import (
    DEFAULT_TIMEOUT,
    DEFAULT_TIMEOUTS,
    STEP_NAMES,
    CompileOptions,
    SecretRef,
    compile_pipeline,
)
from tao_step import profiles

# Printed when compiling with the hostPath workspace: where such pods are refused at
# creation (docs/storage.md gives the sources and how to keep the node directory).
HOSTPATH_NOTE = (
    "note: namespaces that enforce the Baseline Pod Security Standard (Kubeflow 1.10.2+ "
    "profiles, KFP >= 2.16) refuse hostPath volumes; use --pvc CLAIM (docs/storage.md)"
)

COMPILED_SUFFIXES = (".tar.gz", ".zip", ".yaml")
# Next to the pipeline module, named after it, wherever the command is run from.
DEFAULT_OUTPUT = Path(pipeline.__file__).resolve().with_name(
    Path(pipeline.__file__).name + ".tar.gz")


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
    _add_rehearsal_options(parser)
    _add_cluster_options(parser)
    return parser


def _add_rehearsal_options(parser: argparse.ArgumentParser) -> None:
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


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """What a real cluster needs: storage, secrets, scheduling, failure policy."""
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


def options_from_args(args: argparse.Namespace) -> CompileOptions:
    """CompileOptions, or ValueError naming the options that do not go together."""
    selector = dict(args.node_selector)
    for label, value in args.node_selector:
        if selector[label] != value:
            raise ValueError(f"--node-selector: {label} is given two values "
                             f"({value!r} and {selector[label]!r})")
    profile = profiles.get(args.tao_version)
    # A release without a separate INT8 export has no export-int8-model step.
    steps = profiles.step_names(profile)
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


def run() -> None:
    """The script's entry point: ``main`` with its exit status, and Ctrl-C as one line."""
    try:
        sys.exit(main())
    except KeyboardInterrupt as interrupt:  # a dry run handles its own (and SIGTERM, as
        # rehearsal.interrupts.Terminated); a compile leaves no partial file
        print(f"{Path(sys.argv[0]).name}: {str(interrupt) or 'interrupted'}", file=sys.stderr)
        sys.exit(getattr(interrupt, "exit_status", 130))
