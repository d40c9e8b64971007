"""tao_step.outputs: every output of both builds follows the same rules, row by row of the
one table. Path rules, collisions and claims through preflight's value checks; keeping the
earlier run's copy and the summary through the compiled workflow a cluster receives."""

from __future__ import annotations

import posixpath

import pytest
import yaml
from conftest import MOUNT, REPO

import tao_iva_classification_pipeline as pipeline
from rehearsal.dry_run import seed_workspace
from rehearsal.workflow_view import CompiledWorkflow
from tao_step import claims, outputs, preflight, profiles

RELEASES = tuple(profiles.PROFILES)


def P(name: str) -> str:
    return "{{inputs.parameters." + name + "}}"


def W(name: str) -> str:
    return f"{P('tao_mount_dir')}/{P(name)}"


def form(version: str) -> dict:
    return {p.name: p.default for p in pipeline.CompileOptions(tao_version=version).form()}


ROWS = [(version, output) for version in RELEASES
        for output in preflight.outputs_of(profiles.get(version))]
IDS = [f"{version}-{output.parameter}" for version, output in ROWS]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    """Each release's default build, compiled in-process."""
    found = {}
    for version in RELEASES:
        path = tmp_path_factory.mktemp("outputs") / f"{version}.yaml"
        pipeline.compile_pipeline(pipeline.CompileOptions(tao_version=version), path)
        found[version] = CompiledWorkflow(yaml.safe_load(path.read_text()))
    return found


def test_the_table_covers_each_release():
    assert {o.parameter for o in preflight.outputs_of(profiles.TAO_3_0)} == {
        o.parameter for o in outputs.OUTPUTS} - {"convert_trt_results_dir"}
    assert {o.parameter for o in preflight.outputs_of(profiles.TAO_5_0)} == {
        o.parameter for o in outputs.OUTPUTS} - {"export_int8_model_output_file"}
    steps = {o.parameter: o.step for o in preflight.outputs_of(profiles.TAO_5_0)}
    assert steps["export_int8_cache_file"] == "convert-trt"  # gen_trt_engine writes it


@pytest.mark.parametrize("bad, fragment", [
    ("", "is empty"),
    ("/mnt/workspace/out", "is absolute"),
    ("a/../../b", "leads out of the workspace"),
    (claims.FOLDER, f"is inside {claims.FOLDER}"),
    (claims.FOLDER + "/x", f"is inside {claims.FOLDER}"),
])
@pytest.mark.parametrize("version, output", ROWS, ids=IDS)
def test_every_output_follows_the_path_rules(version, output, bad, fragment):
    found = [p for p in preflight.validate_values({**form(version), output.parameter: bad},
                                                  profiles.get(version))
             if p.startswith(output.parameter + ": ")]
    assert len(found) == 1 and fragment in found[0], found


@pytest.mark.parametrize("version, output", ROWS, ids=IDS)
def test_every_output_is_collision_checked(version, output):
    """Given another output's path, the run is refused, naming both."""
    values = form(version)
    for other in preflight.outputs_of(profiles.get(version)):
        if other.parameter == output.parameter:
            continue
        changed = {**values, output.parameter: values[other.parameter]}
        found = preflight.validate_values(changed, profiles.get(version))
        assert any(output.parameter in p and other.parameter in p for p in found), (
            other.parameter, found)


@pytest.mark.parametrize("version", RELEASES)
def test_every_output_is_claimed_with_the_step_that_writes_it(version):
    values = form(version)
    claimed = preflight.output_paths(values, profiles.get(version))
    expected = [(o.parameter, o.step, posixpath.normpath(values[o.parameter]) + o.suffix)
                for o in preflight.outputs_of(profiles.get(version))]
    assert claimed[:-1] == expected
    assert claimed[-1][:2] == ("pretrained_model_dir", "download-model")


def kept_paths(workflow: CompiledWorkflow, step: str) -> set:
    found = set()
    for template in workflow.steps(step):
        args = template["container"]["args"]
        options = args[:args.index("--")] if "--" in args else args
        found |= {args[i + 1] for i, a in enumerate(options) if a == "--keep-previous"}
    return found


@pytest.mark.parametrize("version", RELEASES)
def test_the_steps_keep_exactly_the_outputs_of_the_table(compiled, version):
    """Each step moves an earlier run's copy of what it writes aside (--keep-previous),
    and re-claims it; nothing else."""
    workflow = compiled[version]
    declared = {}
    for o in preflight.outputs_of(profiles.get(version)):
        declared.setdefault(o.step, set()).add(W(o.parameter) + o.suffix)
    steps = {workflow.display_name(t) for t in workflow.container_templates}
    kept = {step: kept_paths(workflow, step) for step in steps}
    assert {step: paths for step, paths in kept.items() if paths} == declared


@pytest.mark.parametrize("version", RELEASES)
def test_the_summary_lists_every_output(compiled, version):
    args = compiled[version].step("summary")["container"]["args"]
    listed = {args[i + 2] for i, a in enumerate(args) if a == "--artifact"}  # NAME PATH
    for o in preflight.outputs_of(profiles.get(version)):
        assert W(o.parameter) + o.suffix in listed, o.parameter


@pytest.mark.parametrize("version", RELEASES)
def test_preflight_warns_of_every_output_a_rerun_moves_aside(tmp_path, version):
    profile = profiles.get(version)
    values = form(version)
    seed_workspace(tmp_path, form=values, specs_dir=REPO / profile.specs_dir)
    expected = []
    for o in preflight.outputs_of(profile):
        path = tmp_path / (values[o.parameter] + o.suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        if o.kind == outputs.FOLDER:
            path.mkdir(exist_ok=True)
        else:
            path.write_text("from an earlier run")
        expected.append(f"{o.parameter}: {values[o.parameter]}{o.suffix} exists from an "
                        f"earlier run; {o.step} moves it to")
    warnings = preflight.Preflight(str(tmp_path), values, MOUNT, profile).run().warnings
    assert [w.split(" moves it to ")[0] + " moves it to" for w in warnings] == expected
