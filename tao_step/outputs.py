"""What a run writes, by Create Run parameter, for both TAO releases: derived from the form
(``tao_step.form``: the parameters a step writes, ``writer``).

Each row names the parameter that gives an output's path (relative to tao_mount_dir), what
is written there and by which step. Preflight derives its path checks from it (collisions,
claims, warnings on a re-run), and the tests hold the compiled steps' ``--keep-previous``
paths and the summary's artifacts against it. A release whose form has no such parameter
has no such output; a release where another step writes it says so in its profile's engine
(``Engine.writes``).

Runs inside the TAO images (Python 3.6) and on the host: standard library only.
"""

from typing import NamedTuple

from tao_step import form, profiles

# The step writes one file at the path.
FILE = "file"
# The step fills a results folder; a re-run moves the earlier one aside as a whole, so it
# may hold nothing the run reads or another step writes.
FOLDER = "folder"


class Output(NamedTuple):
    parameter: str
    kind: str  # FILE or FOLDER
    step: str  # the step that writes it in the default release
    # Appended to the parameter's value: the output is then a file inside the folder the
    # parameter names (test-infer writes result.csv into the images' folder).
    suffix: str


def _outputs():
    # In step order, as the run summary lists them; then any output it does not list.
    parameters = {p.name: p for p in profiles.all_parameters()}
    listed = [(name, suffix) for _, name, suffix in form.summary_artifacts(parameters.values())]
    written = [name for name, _ in listed] + [name for name in parameters
                                              if name not in dict(listed)]
    return tuple(
        Output(name, FOLDER if parameters[name].kind == form.FOLDER_OUT else FILE,
               parameters[name].writer, parameters[name].suffix)
        for name in written if parameters[name].writer)


OUTPUTS = _outputs()


def of_release(profile, parameters):
    """The rows for a release whose form has ``parameters``, each with the step that writes
    it in that release (``profile.output_steps``)."""
    steps = dict(profile.output_steps)
    return tuple(output._replace(step=steps.get(output.parameter, output.step))
                 for output in OUTPUTS if output.parameter in parameters)
