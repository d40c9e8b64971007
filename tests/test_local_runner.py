"""local_runner executes what kfp 1.8.22 compiles, the way Argo 3.3 would.

Each test compiles a small pipeline whose steps are ``python3 -c CODE ARGS...`` and runs
the compiled workflow with ``python3`` mapped to this interpreter.
"""

import json
import re
import sys
import time
import uuid
import warnings
from pathlib import Path

import kfp
import pytest
import yaml
from kfp import dsl, onprem
from kubernetes.client import (
    V1EmptyDirVolumeSource,
    V1EnvVar,
    V1HostPathVolumeSource,
    V1PersistentVolumeClaimVolumeSource,
    V1Volume,
    V1VolumeMount,
)

from rehearsal import local_runner
from rehearsal.dag_scheduler import fnv32a
from rehearsal.local_runner import UnsupportedWorkflowError, evaluate_when, expand_k8s, run_workflow
from rehearsal.workflow_identity import NAME_ALPHABET

# python3 -c WRITE PATH TEXT: write TEXT to PATH, creating its directory.
WRITE = ("import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
         "p.parent.mkdir(parents=True, exist_ok=True); p.write_text(sys.argv[2])")
# python3 -c WRITE_ARGV PATH ARGS...: write ARGS, one per line, to PATH.
WRITE_ARGV = ("import pathlib, sys; pathlib.Path(sys.argv[1]).write_text("
              "'\\n'.join(sys.argv[2:]))")
FAIL = "import sys; print('about to fail'); print('boom: bad spec', file=sys.stderr); sys.exit(3)"
OUT = "/tmp/outputs"  # where steps put their file outputs, off the volume


def compile_pipeline(func, tmp_path: Path) -> dict:
    """Compile with kfp 1.8.22 and load the Argo workflow, as a cluster would receive it."""
    package = tmp_path / "pipeline.yaml"
    with warnings.catch_warnings():
        # kfp 1.8 warns on every direct dsl.ContainerOp.
        warnings.filterwarnings("ignore", message="Please create reusable components",
                                category=FutureWarning)
        kfp.compiler.Compiler().compile(func, str(package))
    return yaml.safe_load(package.read_text())


def op(name: str, code: str, *args, file_outputs=None) -> dsl.ContainerOp:
    return dsl.ContainerOp(name=name, image="python:3.11", command=["python3", "-c", code],
                           arguments=list(args), file_outputs=file_outputs)


def mount_workspace(task: dsl.ContainerOp, mount: str) -> dsl.ContainerOp:
    """hostPath volume at the path given by a pipeline parameter, like the TAO pipeline."""
    task.add_volume(V1Volume(name="workspace", host_path=V1HostPathVolumeSource(path=mount)))
    task.container.add_volume_mount(V1VolumeMount(name="workspace", mount_path=mount))
    return task


def run(workflow: dict, tmp_path: Path, arguments=None, **kwargs):
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    options = {"workdir": tmp_path / "run", "host_paths": {"/mnt/ws": workspace},
               "per_step_dirs": [OUT], "executables": {"python3": sys.executable}}
    options.update(kwargs)
    return run_workflow(workflow, arguments, **options)


def statuses(result) -> dict[str, str]:
    return {step.path: step.status for step in result.steps}


# --- a straight flow: volume, parameters, outputs, display names, caching, metrics ----------


@dsl.pipeline(name="flow")
def flow_pipeline(mount: str = "/mnt/ws", message: str = "hello"):
    produce = mount_workspace(op(
        "produce", WRITE, f"{OUT}/greeting", message,
        file_outputs={"greeting": f"{OUT}/greeting",
                      "mlpipeline-metrics": f"{OUT}/metrics.json"}), mount)
    produce.set_display_name("Produce greeting")
    produce.execution_options.caching_strategy.max_cache_staleness = "P0D"
    produce.add_volume(V1Volume(name="shm", empty_dir=V1EmptyDirVolumeSource(medium="Memory")))
    produce.container.add_volume_mount(V1VolumeMount(name="shm", mount_path="/dev/shm"))
    consume = mount_workspace(
        op("consume", WRITE, f"{mount}/out/greeting.txt", produce.outputs["greeting"]), mount)
    consume.set_timeout(60)


def test_steps_write_to_the_mapped_volume_and_pass_outputs(tmp_path):
    workflow = compile_pipeline(flow_pipeline, tmp_path)
    lines = []
    result = run(workflow, tmp_path, {"message": "hi there\n"}, echo=lines.append)

    assert result.succeeded, result.format_report()
    assert [s.name for s in result.steps] == ["produce", "consume"]
    # Argo drops one trailing newline from an output parameter.
    assert result.step("produce").outputs == {"produce-greeting": "hi there"}
    assert (tmp_path / "workspace/out/greeting.txt").read_text() == "hi there"
    consume = result.step("consume")
    assert consume.argv[-2:] == ["/mnt/ws/out/greeting.txt", "hi there"]
    assert consume.host_argv[-2] == str(tmp_path / "workspace/out/greeting.txt")
    assert consume.timeout == 60
    produce = result.step("produce")
    assert produce.mounts["/mnt/ws"] == tmp_path / "workspace"
    assert produce.mounts["/dev/shm"].is_dir()  # the emptyDir: a fresh directory
    assert produce.mounts[OUT].parent.parent == produce.log_path.parent


def test_record_keeps_display_name_annotations_and_optional_metrics(tmp_path):
    workflow = compile_pipeline(flow_pipeline, tmp_path)
    result = run(workflow, tmp_path)

    produce = result.step("Produce greeting")
    assert produce.name == "produce"
    assert produce.annotations["pipelines.kubeflow.org/max_cache_staleness"] == "P0D"
    # mlpipeline-metrics was not written: the KFP API server marks it optional.
    assert produce.artifacts["mlpipeline-metrics"] is None
    assert produce.artifacts["produce-greeting"].read_text() == "hello"
    assert produce.log_path.is_file()
    assert "Succeeded produce (Produce greeting)" in result.format_report()


def test_echo_prefixes_output_lines_with_the_display_name(tmp_path):
    @dsl.pipeline(name="talk")
    def talk():
        op("talk", "print('line one'); print('line two')").set_display_name("Talker")

    lines = []
    result = run(compile_pipeline(talk, tmp_path), tmp_path, echo=lines.append)

    assert result.succeeded
    assert "[Talker] line one" in lines and "[Talker] line two" in lines
    assert result.step("talk").log_path.read_text() == "line one\nline two\n"


def test_relative_workdir_and_host_directories(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ws").mkdir()
    result = run(compile_pipeline(flow_pipeline, tmp_path), tmp_path, workdir="relative-run",
                 host_paths={"/mnt/ws": "ws"})

    assert result.succeeded, result.format_report()
    assert (tmp_path / "ws/out/greeting.txt").read_text() == "hello"


def test_leftover_background_processes_die_with_the_step(tmp_path):
    # The child keeps the step's stdout open; the step must still end when its main exits.
    @dsl.pipeline(name="orphan")
    def orphan():
        op("spawn", "import subprocess, sys; "
                    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])")

    started = time.monotonic()
    result = run(compile_pipeline(orphan, tmp_path), tmp_path)

    assert result.succeeded, result.format_report()
    assert time.monotonic() - started < 10


def test_every_run_gets_a_fresh_name_and_uid_as_generate_name_gives(tmp_path):
    # Two rehearsals are two runs to the workspace claims (tao_step/claims.py), as two runs
    # on a cluster are: the API server completes generateName, KFP makes the uid a new UUID.
    @dsl.pipeline(name="names")
    def names():
        op("tell", WRITE_ARGV, f"{OUT}/names", "{{workflow.name}}", "{{workflow.uid}}",
           "{{pod.name}}", file_outputs={"names": f"{OUT}/names"})

    workflow = compile_pipeline(names, tmp_path)
    assert workflow["metadata"]["generateName"] == "names-"
    runs = [run(workflow, tmp_path, workdir=tmp_path / run_dir)
            for run_dir in ("run-a", "run-b")]
    first, second = (result.step("tell").artifacts["tell-names"].read_text().splitlines()
                     for result in runs)

    for (name, uid, pod), result in zip((first, second), runs, strict=True):
        assert re.fullmatch(f"names-[{NAME_ALPHABET}]{{5}}", name)
        assert result.workflow_name == name
        assert uuid.UUID(uid).version == 4
        assert re.fullmatch(re.escape(name) + r"-\d+", pod)
    assert first[0] != second[0] and first[1] != second[1]


def test_base_env_and_container_env_but_not_the_host_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HOST_ONLY", "leak")

    @dsl.pipeline(name="env")
    def env():
        task = op("show", "import json, os; print(json.dumps(dict(os.environ)))")
        task.container.add_env_variable(V1EnvVar(name="MODE", value="container"))

    result = run(compile_pipeline(env, tmp_path), tmp_path,
                 base_env={"PATH": "/usr/bin:/bin", "MODE": "base", "LANG": "C.UTF-8"})

    seen = json.loads(result.step("show").log_path.read_text())
    assert seen["MODE"] == "container" and seen["LANG"] == "C.UTF-8"
    assert "HOST_ONLY" not in seen
    assert seen["PATH"] == "/usr/bin:/bin"


def test_unknown_pipeline_argument_is_rejected(tmp_path):
    workflow = compile_pipeline(flow_pipeline, tmp_path)
    with pytest.raises(ValueError, match="'mesage'"):
        run(workflow, tmp_path, {"mesage": "typo"})


def test_persistent_volume_claim_is_mapped_by_claim_name(tmp_path):
    @dsl.pipeline(name="claimed")
    def claimed(claim: str = "tao-workspace"):
        write = op("write", WRITE, "/workspace/note", "on the claim")
        write.add_volume(V1Volume(name="workspace", persistent_volume_claim=(
            V1PersistentVolumeClaimVolumeSource(claim_name=claim))))
        write.container.add_volume_mount(V1VolumeMount(name="workspace", mount_path="/workspace"))

    claim_dir = tmp_path / "claim"
    result = run(compile_pipeline(claimed, tmp_path), tmp_path, claims={"tao-workspace": claim_dir})

    assert result.succeeded, result.format_report()
    assert (claim_dir / "note").read_text() == "on the claim"


def test_host_path_of_type_directory_must_exist(tmp_path):
    @dsl.pipeline(name="strict")
    def strict(mount: str = "/mnt/ws"):
        task = op("write", WRITE, f"{mount}/x", "y")
        task.add_volume(V1Volume(name="workspace", host_path=V1HostPathVolumeSource(
            path=mount, type="Directory")))
        task.container.add_volume_mount(V1VolumeMount(name="workspace", mount_path=mount))

    workflow = compile_pipeline(strict, tmp_path)
    result = run(workflow, tmp_path, host_paths={"/mnt/ws": tmp_path / "missing"})

    assert result.step("write").status == "Failed"
    assert "hostPath type check failed: /mnt/ws is not a directory" in result.step(
        "write").message


def test_unmapped_literal_host_path_is_rejected_before_anything_runs(tmp_path):
    @dsl.pipeline(name="literal")
    def literal():
        op("first", "pass")
        mount_workspace(op("second", "pass"), "/data/elsewhere")

    with pytest.raises(ValueError, match="hostPath '/data/elsewhere'"):
        run(compile_pipeline(literal, tmp_path), tmp_path)
    assert not (tmp_path / "run").exists()


def test_unmapped_host_path_is_rejected(tmp_path):
    workflow = compile_pipeline(flow_pipeline, tmp_path)
    with pytest.raises(ValueError, match="hostPath '/elsewhere'"):
        run(workflow, tmp_path, {"mount": "/elsewhere"})


# --- conditions ---------------------------------------------------------------------------


@dsl.pipeline(name="gates")
def gates_pipeline(mount: str = "/mnt/ws", score: str = "0.7", threshold: float = 0.5,
                   verdict: str = "pass"):
    evaluate = op("evaluate", WRITE, f"{OUT}/score", score,
                  file_outputs={"score": f"{OUT}/score"})
    with dsl.Condition(evaluate.output >= threshold):
        good = op("good", WRITE, f"{OUT}/verdict", verdict,
                  file_outputs={"verdict": f"{OUT}/verdict"})
        with dsl.Condition(good.output == "pass"):
            mount_workspace(op("publish", WRITE, f"{mount}/published", evaluate.output), mount)
    with dsl.Condition(evaluate.output < threshold):
        mount_workspace(op("retrain", WRITE, f"{mount}/retrain", evaluate.output), mount)
    with dsl.Condition(evaluate.output != "0.7"):
        op("unusual", "pass")
    # Ordered after a step inside the first condition: runs even when that group is skipped.
    op("report", "pass").after(good)


def test_numeric_and_string_conditions_true(tmp_path):
    result = run(compile_pipeline(gates_pipeline, tmp_path), tmp_path)

    assert result.succeeded, result.format_report()
    assert statuses(result) == {
        "evaluate": "Succeeded",
        "condition-1": "Succeeded", "condition-1.good": "Succeeded",
        "condition-1.condition-2": "Succeeded",
        "condition-1.condition-2.publish": "Succeeded",
        "condition-3": "Skipped",
        "condition-4": "Skipped",
        "report": "Succeeded",
    }
    assert (tmp_path / "workspace/published").read_text() == "0.7"
    assert not (tmp_path / "workspace/retrain").exists()
    assert result.step("condition-3").message == "when '0.7 < 0.5' evaluated false"
    assert result.step("condition-4").message == "when '\"0.7\" != \"0.7\"' evaluated false"


def test_numeric_and_string_conditions_false(tmp_path):
    result = run(compile_pipeline(gates_pipeline, tmp_path), tmp_path,
                 {"score": "0.25", "verdict": "hold"})

    assert result.succeeded, result.format_report()
    assert statuses(result) == {
        "evaluate": "Succeeded",
        "condition-1": "Skipped",  # nothing inside it starts
        "condition-3": "Succeeded", "condition-3.retrain": "Succeeded",
        "condition-4": "Succeeded", "condition-4.unusual": "Succeeded",
        "report": "Succeeded",  # a skipped dependency counts as done
    }
    assert (tmp_path / "workspace/retrain").read_text() == "0.25"
    assert not (tmp_path / "workspace/published").exists()


def test_nested_string_condition_false(tmp_path):
    result = run(compile_pipeline(gates_pipeline, tmp_path), tmp_path, {"verdict": "hold"})

    assert statuses(result)["condition-1.good"] == "Succeeded"
    assert statuses(result)["condition-1.condition-2"] == "Skipped"
    assert "condition-1.condition-2.publish" not in statuses(result)


def test_numeric_condition_on_a_non_number_fails_the_task(tmp_path):
    result = run(compile_pipeline(gates_pipeline, tmp_path), tmp_path, {"score": "85%"})

    assert not result.succeeded
    gate = result.step("condition-1")
    assert gate.status == "Failed"
    assert "Invalid 'when' expression '85% >= 0.5'" in gate.message
    assert statuses(result)["report"] == "Omitted"
    # The other branches do not depend on the failed one.
    assert statuses(result)["condition-4"] == "Succeeded"


def test_kfp_compiles_conditions_to_these_argo_expressions(tmp_path):
    workflow = compile_pipeline(gates_pipeline, tmp_path)
    whens = {task["name"]: task.get("when")
             for tmpl in workflow["spec"]["templates"] if "dag" in tmpl
             for task in tmpl["dag"]["tasks"] if "when" in task}
    assert whens == {
        "condition-1": "{{tasks.evaluate.outputs.parameters.evaluate-score}} >= "
                       "{{inputs.parameters.threshold}}",
        "condition-2": '"{{tasks.good.outputs.parameters.good-verdict}}" == "pass"',
        "condition-3": "{{tasks.evaluate.outputs.parameters.evaluate-score}} < "
                       "{{inputs.parameters.threshold}}",
        "condition-4": '"{{tasks.evaluate.outputs.parameters.evaluate-score}}" != "0.7"',
    }


@pytest.mark.parametrize(("expression", "expected"), [
    ('"pass" == "pass"', True),
    ('"pass " == "pass"', False),
    ('"0.50" == "0.5"', False),  # kfp quotes == and != operands: strings
    ("0.50 >= 0.5", True),
    ("10 > 9", True),  # unquoted numbers compare as numbers
    ("-1 < 0", True),
    ("abc < abd", True),  # two bare words compare as strings
    ("0.7 >= 0.5 && pass == pass", True),
    ("(1 > 2) || !(1 > 2)", True),
])
def test_when_expressions(expression, expected):
    assert evaluate_when(expression) is expected


@pytest.mark.parametrize(("expression", "error"), [
    ("high >= 0.5", "cannot be used with the comparator '>=', it is not a number"),
    ("85% >= 0.5", "Invalid 'when' expression"),
    ("1e-3 >= 0.5", "Invalid 'when' expression"),
    (" >= 0.5", "Invalid 'when' expression"),
    ("1.2.3 >= 1", "Unable to parse numeric value '1.2.3'"),
    ("0.7", "Expected boolean evaluation"),
])
def test_when_expressions_that_fail_the_task(expression, error):
    with pytest.raises(local_runner.WhenError, match=error):
        evaluate_when(expression)


# --- failures -----------------------------------------------------------------------------


@dsl.pipeline(name="breaks")
def breaks_pipeline(mount: str = "/mnt/ws"):
    exit_step = mount_workspace(
        op("cleanup", WRITE_ARGV, f"{mount}/exit-status", "{{workflow.status}}",
           "{{workflow.failures}}"), mount)
    with dsl.ExitHandler(exit_step):
        train = op("train", FAIL).set_retry(2)
        evaluate = op("evaluate", "pass").after(train)
        op("export", "pass").after(evaluate)
        mount_workspace(op("independent", WRITE, f"{mount}/independent", "ran"), mount)


def test_failure_omits_downstream_runs_the_rest_and_the_exit_handler(tmp_path):
    result = run(compile_pipeline(breaks_pipeline, tmp_path), tmp_path)

    assert not result.succeeded
    assert statuses(result) == {
        "exit-handler-1": "Failed",
        "exit-handler-1.independent": "Succeeded",
        "exit-handler-1.train": "Failed",
        "exit-handler-1.evaluate": "Omitted",
        "exit-handler-1.export": "Omitted",
        "onExit": "Succeeded",
    }
    assert [s.path for s in result.steps] == [
        "exit-handler-1", "exit-handler-1.independent", "exit-handler-1.train",
        "exit-handler-1.evaluate", "exit-handler-1.export", "onExit"]
    train = result.step("train")
    assert train.exit_code == 3
    assert train.retry_strategy == {"limit": 2}  # recorded, not retried
    assert train.log_path.read_text().count("about to fail") == 1
    assert result.step("export").message == "upstream evaluate omitted"
    assert (tmp_path / "workspace/independent").read_text() == "ran"
    status, failures = (tmp_path / "workspace/exit-status").read_text().split("\n")
    assert status == "Failed"
    # workflow.failures as Argo passes it: strconv.Quote of the JSON list of failed nodes
    # (operator.go failedNodeStatus, v3.3.8 to v4.0.5): the pod with its message, and the
    # DAGs holding it (the group and the root) without one; pod names are node ids (v3.3).
    assert failures.startswith('"[{\\"displayName\\":\\"') and failures.endswith(']"')
    nodes = json.loads(json.loads(failures))
    assert [{k: n[k] for k in ("displayName", "message", "templateName", "phase")}
            for n in nodes] == [
        {"displayName": "exit-handler-1", "message": "", "templateName": "exit-handler-1",
         "phase": "Failed"},
        {"displayName": "train", "message": "Error (exit code 3)", "templateName": "train",
         "phase": "Failed"},
        {"displayName": result.workflow_name, "message": "", "templateName": "breaks",
         "phase": "Failed"}]
    name = result.workflow_name
    assert nodes[1]["podName"] == f"{name}-{fnv32a(name + '.exit-handler-1.train')}"
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", n["finishedAt"])
               for n in nodes)


def test_report_shows_the_failed_command_and_its_last_error_lines(tmp_path):
    result = run(compile_pipeline(breaks_pipeline, tmp_path), tmp_path)
    report = result.format_report()

    assert re.match(r"Workflow breaks-\w{5}: Failed ", report)
    assert "Step exit-handler-1.train (template train) failed: Error (exit code 3)" in report
    assert "command: python3 -c 'import sys;" in report
    assert "boom: bad spec" in report
    assert "Omitted   export: upstream evaluate omitted" in report


def test_missing_output_file_fails_the_step(tmp_path):
    @dsl.pipeline(name="silent")
    def silent():
        quiet = op("quiet", "pass", file_outputs={"result": f"{OUT}/result"})
        op("after", "pass", quiet.output)

    result = run(compile_pipeline(silent, tmp_path), tmp_path)

    assert statuses(result) == {"quiet": "Failed", "after": "Omitted"}
    assert "output parameter quiet-result" in result.step("quiet").message
    assert "no such file or directory" in result.step("quiet").message


@dsl.pipeline(name="handoff")
def handoff_pipeline(flag: str = "yes"):
    with dsl.Condition(flag == "yes"):
        inner = op("inner", WRITE, f"{OUT}/r", "from inside", file_outputs={"r": f"{OUT}/r"})
        op("inner-use", "pass", inner.output)
    op("outer-use", WRITE_ARGV, f"{OUT}/args", inner.output)


def test_condition_group_outputs_reach_tasks_outside_it(tmp_path):
    result = run(compile_pipeline(handoff_pipeline, tmp_path), tmp_path)

    assert result.succeeded, result.format_report()
    assert result.step("outer-use").argv[-1] == "from inside"


def test_output_of_a_skipped_group_cannot_be_resolved(tmp_path):
    result = run(compile_pipeline(handoff_pipeline, tmp_path), tmp_path, {"flag": "no"})

    assert statuses(result) == {"condition-1": "Skipped", "outer-use": "Failed"}
    assert result.step("outer-use").message == (
        "unable to resolve {{tasks.condition-1.outputs.parameters.inner-r}}: "
        "task condition-1 produced no outputs")
    assert result.message == "failed: outer-use"


def test_failing_exit_handler_fails_the_workflow(tmp_path):
    @dsl.pipeline(name="bad-exit")
    def bad_exit():
        with dsl.ExitHandler(op("cleanup", FAIL)):
            op("work", "pass")

    result = run(compile_pipeline(bad_exit, tmp_path), tmp_path)

    assert statuses(result) == {"exit-handler-1": "Succeeded",
                                "exit-handler-1.work": "Succeeded", "onExit": "Failed"}
    assert result.message == "exit handler failed: Error (exit code 3)"


def test_workflow_deadline_stops_the_run_but_not_the_exit_handler(tmp_path):
    @dsl.pipeline(name="late")
    def late():
        with dsl.ExitHandler(op("cleanup", "pass")):
            first = op("first", "import time; time.sleep(30)")
            op("second", "pass").after(first)
        dsl.get_pipeline_conf().set_timeout(1)

    result = run(compile_pipeline(late, tmp_path), tmp_path)

    assert statuses(result) == {"exit-handler-1": "Failed", "exit-handler-1.first": "Failed",
                                "onExit": "Succeeded"}
    assert result.message == "workflow activeDeadlineSeconds (1) exceeded"
    assert result.step("first").duration < 10


def test_step_deadline_is_enforced(tmp_path):
    @dsl.pipeline(name="slow")
    def slow():
        op("sleep", "import time; time.sleep(30)").set_timeout(1)

    result = run(compile_pipeline(slow, tmp_path), tmp_path)

    step = result.step("sleep")
    assert step.status == "Failed"
    assert "longer than the specified deadline" in step.message
    assert step.duration < 10


def test_missing_executable_fails_the_step(tmp_path):
    @dsl.pipeline(name="nothing")
    def nothing():
        dsl.ContainerOp(name="ghost", image="x", command=["no-such-tool-here", "--help"])

    result = run(compile_pipeline(nothing, tmp_path), tmp_path)

    assert 'exec: "no-such-tool-here": executable file not found' in result.step(
        "ghost").message


# --- secrets, $(VAR) expansion, executables on PATH ---------------------------------------


@dsl.pipeline(name="keyed")
def keyed_pipeline(mount: str = "/mnt/ws"):
    task = mount_workspace(op("train", WRITE_ARGV, f"{mount}/argv", "-k", "$(TAO_KEY)",
                              "$$(TAO_KEY)", "$(UNDEFINED)", "--out=$(RESULTS)"), mount)
    task.apply(onprem.use_k8s_secret("tao-secrets", {"model-key": "TAO_KEY"}))
    task.container.add_env_variable(V1EnvVar(name="RESULTS", value=f"{mount}/results"))


def test_secret_reaches_the_process_but_never_the_record(tmp_path):
    result = run(compile_pipeline(keyed_pipeline, tmp_path), tmp_path,
                 secrets={("tao-secrets", "model-key"): "s3cr3t-key"})

    assert result.succeeded, result.format_report()
    written = (tmp_path / "workspace/argv").read_text().splitlines()
    # Kubernetes expands $(VAR) from the container env; $$ escapes; unknown stays.
    assert written == ["-k", "s3cr3t-key", "$(TAO_KEY)", "$(UNDEFINED)",
                       f"--out={tmp_path / 'workspace/results'}"]
    step = result.step("train")
    assert step.argv[-5:] == ["-k", "******", "$(TAO_KEY)", "$(UNDEFINED)",
                              "--out=/mnt/ws/results"]
    assert not any("s3cr3t" in a for a in step.argv + step.host_argv)
    assert "s3cr3t" not in result.format_report()


def test_missing_secret_is_named_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="'model-key' of secret 'tao-secrets'"):
        run(compile_pipeline(keyed_pipeline, tmp_path), tmp_path)
    assert not (tmp_path / "run").exists()


def test_fake_executable_found_through_path_prefix(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "classification"
    fake.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    "print(sys.argv[1:], json.loads(os.environ['LOCAL_RUNNER_PATH_MAP']))\n")
    fake.chmod(0o755)

    @dsl.pipeline(name="tao")
    def tao(mount: str = "/mnt/ws"):
        mount_workspace(dsl.ContainerOp(name="train", image="nvcr.io/tao", command=[
            "classification", "train", "-e", f"{mount}/specs/train.cfg"]), mount)

    result = run(compile_pipeline(tao, tmp_path), tmp_path, path_prefix=[bin_dir])

    assert result.succeeded, result.format_report()
    log = result.step("train").log_path.read_text()
    workspace = str(tmp_path / "workspace")
    assert f"['train', '-e', '{workspace}/specs/train.cfg']" in log
    assert f"'/mnt/ws': '{workspace}'" in log


# --- resources ----------------------------------------------------------------------------


def test_parameterised_gpu_limit_is_read_from_pod_spec_patch(tmp_path):
    @dsl.pipeline(name="gpu")
    def gpu(gpus: int = 1):
        op("train", "pass").container.add_resource_limit("nvidia.com/gpu", gpus)
        op("evaluate", "pass")

    workflow = compile_pipeline(gpu, tmp_path)
    train_template = next(t for t in workflow["spec"]["templates"] if t["name"] == "train")
    assert "{{inputs.parameters.gpus}}" in train_template["podSpecPatch"]

    result = run(workflow, tmp_path, {"gpus": 2})

    assert result.succeeded, result.format_report()
    assert result.step("train").resources == {"limits": {"nvidia.com/gpu": "2"}}
    assert result.step("evaluate").resources == {}


def test_set_gpu_limit_with_a_parameter_is_rejected(tmp_path):
    # kfp writes limits {nvidia: '{{inputs.parameters.gpus}}'}: not a quantity Argo can load.
    @dsl.pipeline(name="gpu-trap")
    def gpu_trap(gpus: int = 1):
        op("train", "pass").container.set_gpu_limit(gpus)

    with pytest.raises(UnsupportedWorkflowError, match="resource quantities"):
        run(compile_pipeline(gpu_trap, tmp_path), tmp_path)


def test_invalid_resource_name_fails_the_step_like_the_pod(tmp_path):
    @dsl.pipeline(name="bad-resource")
    def bad_resource():
        op("train", "pass").container.add_resource_limit("nvidia", "1")
        op("evaluate", "pass")

    result = run(compile_pipeline(bad_resource, tmp_path), tmp_path)

    assert statuses(result) == {"train": "Failed", "evaluate": "Succeeded"}
    assert "resource name 'nvidia' must be a standard resource type or fully qualified" \
        in result.step("train").message
    assert result.step("train").exit_code is None


# --- what Argo or this runner rejects up front --------------------------------------------


def test_conditional_output_used_only_outside_its_condition_is_rejected(tmp_path):
    # kfp 1.8.22 then omits the output parameter from the producing template.
    @dsl.pipeline(name="leak")
    def leak(flag: str = "yes"):
        with dsl.Condition(flag == "yes"):
            inner = op("inner", WRITE, f"{OUT}/r", "x", file_outputs={"r": f"{OUT}/r"})
        op("outer", "pass", inner.output)

    with pytest.raises(UnsupportedWorkflowError,
                       match="template 'inner' declares no output parameter 'inner-r'"):
        run(compile_pipeline(leak, tmp_path), tmp_path)


def test_workflow_failures_outside_a_workflow_with_an_exit_handler_is_rejected(tmp_path):
    # Argo's validation knows {{workflow.failures}} only when spec.onExit is set
    # (workflow/validate/validate.go, v3.3.8 to v4.0.5): a typo'd use fails before any step.
    @dsl.pipeline(name="no-exit")
    def no_exit():
        op("report", WRITE_ARGV, f"{OUT}/f", "{{workflow.failures}}")

    with pytest.raises(UnsupportedWorkflowError, match="set only in a workflow with spec.onExit"):
        run(compile_pipeline(no_exit, tmp_path), tmp_path)


def test_parallel_for_is_rejected_with_the_field(tmp_path):
    @dsl.pipeline(name="loop")
    def loop():
        with dsl.ParallelFor(["a", "b"]) as item:
            op("each", "pass", item)

    with pytest.raises(UnsupportedWorkflowError, match="withItems"):
        run(compile_pipeline(loop, tmp_path), tmp_path)


def test_depends_is_rejected_with_the_field(tmp_path):
    # kfp 1.8.22 only emits "dependencies"; a hand-edited "depends" is not executed.
    workflow = compile_pipeline(breaks_pipeline, tmp_path)
    dag = next(t for t in workflow["spec"]["templates"] if t["name"] == "exit-handler-1")
    evaluate = next(t for t in dag["dag"]["tasks"] if t["name"] == "evaluate")
    evaluate["depends"] = "train.Failed"
    del evaluate["dependencies"]

    with pytest.raises(UnsupportedWorkflowError, match=r"dag.tasks\[evaluate\].depends"):
        run(workflow, tmp_path)


def test_output_outside_volumes_and_per_step_dirs_is_rejected(tmp_path):
    workflow = compile_pipeline(flow_pipeline, tmp_path)
    with pytest.raises(UnsupportedWorkflowError, match="/tmp/outputs/greeting"):
        run(workflow, tmp_path, per_step_dirs=[])


@pytest.mark.parametrize(("text", "expected"), [
    ("-k=$(KEY)", "-k=v"),
    ("$(KEY)$(KEY)", "vv"),
    ("$$(KEY)", "$(KEY)"),
    ("$(NOPE)", "$(NOPE)"),
    ("$(KEY", "$(KEY"),
    ("cost: $5", "cost: $5"),
    ("$", "$"),
])
def test_kubernetes_expansion(text, expected):
    assert expand_k8s(text, {"KEY": "v"}) == expected
