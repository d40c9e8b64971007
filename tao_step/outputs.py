"""What a run writes, by Create Run parameter: one table for both TAO releases.

Each row names the parameter that gives an output's path (relative to tao_mount_dir), what
is written there and by which step. Preflight derives its path categories from it (which
parameters name files, which results folders may hold nothing else, what is checked for
collisions, claimed and warned about on a re-run), and the tests hold the compiled steps'
``--keep-previous`` paths and the summary's artifacts against it. A release whose form has
no such parameter has no such output; a release where another step writes it says so in
its profile (``Profile.output_steps``).

Data only, so that it can grow into the table of the whole form. Runs inside the TAO images
(Python 3.6) and on the host: standard library only.
"""

from typing import NamedTuple

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


OUTPUTS = (
    Output("train_classification_output", FOLDER, "train-model", ""),
    Output("prune_model_output_file", FILE, "prune-model", ""),
    Output("retrain_classification_output", FOLDER, "retrain-model", ""),
    Output("test_infer_image_path", FILE, "test-infer", "/result.csv"),
    Output("export_model_output_file", FILE, "export-model", ""),
    Output("calibrate_output_file", FILE, "calibrate-model", ""),
    Output("export_int8_model_output_file", FILE, "export-int8-model", ""),
    Output("export_int8_cache_file", FILE, "export-int8-model", ""),
    Output("convert_trt_output_file", FILE, "convert-trt", ""),
    # TAO 5's gen_trt_engine -r: its status.json and log.
    Output("convert_trt_results_dir", FOLDER, "convert-trt", ""),
)


def of_release(profile, parameters):
    """The rows for a release whose form has ``parameters``, each with the step that writes
    it in that release (``profile.output_steps``)."""
    steps = dict(profile.output_steps)
    return tuple(output._replace(step=steps.get(output.parameter, output.step))
                 for output in OUTPUTS if output.parameter in parameters)
