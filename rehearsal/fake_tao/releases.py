"""What the fake TAO emulates of each TAO release, in one table.

These are facts about TAO itself (the references ``shared/reference/tao-classification-
cli.md`` and ``tao5-classification-tf1.md``, NVIDIA's source where they cite it), written
down again here on purpose rather than read from ``tao_step``: the fake exists to check the
project's view of TAO, so it must not share it. Each release the project supports
(``tao_step.profiles.PROFILES``) has an entry; ``tests/test_fake_tao.py`` checks that they
match. ``rehearsal.dry_run`` derives what ``FAKE_TAO_FAIL`` may name from this table.
"""

from collections import OrderedDict
from typing import NamedTuple

from rehearsal.fake_tao.experiment import MESSAGES_3_0, MESSAGES_5_0, REQUIRED_3_0, SpecFormat

# Rehearsing failures: FAKE_TAO_FAIL=prune,export makes those subtasks crash as TAO does.
FAIL_ENV = "FAKE_TAO_FAIL"
# The subtasks of TAO's classification CLI (3.0's ``classification``, and TF1 5.0's
# ``classification_tf1`` in nvidia_tao_tf1/cv/makenet/scripts/).
# FAKE_TAO_FAIL=engine:lossy: TAO Deploy's evaluate finds the engine 25 points less
# accurate than the model it was built from (INT8 calibrated on too few batches).
LOSSY_ENGINE = "engine:lossy"
CLASSIFICATION_SUBTASKS = ("train", "evaluate", "prune", "inference", "export",
                           "calibration_tensorfile")


class FakeRelease(NamedTuple):
    version: str
    # The subtasks the release's classification command runs (TAO 5's one command serves
    # the TF1 and the deploy image here, so it has gen_trt_engine too).
    subtasks: tuple[str, ...]
    # How TAO logs (Python logging's format) and to which stream.
    log_format: str
    log_stream: str
    # What training writes each epoch: weights/<arch>_<epoch:03d><suffix> (train.py's
    # '%s_{epoch:03d}.hdf5' in 5.0; .tlt in 3.0), and whether it is encrypted with -k.
    checkpoint_suffix: str
    model_format: str
    encrypts: bool
    # Whether a subtask may record a failure in status.json and still exit 0, which
    # FAKE_TAO_FAIL=SUBTASK:status rehearses.
    status_failures: bool
    # How the release reads a spec (its protos and its validator).
    spec_format: SpecFormat
    # Other ways FAKE_TAO_FAIL can make TAO misbehave (LOSSY_ENGINE).
    misbehaviours: tuple[str, ...] = ()

    @property
    def failable(self) -> tuple[str, ...]:
        """What FAKE_TAO_FAIL may name for this release."""
        return self.subtasks + tuple(
            f"{s}:status" for s in self.subtasks if self.status_failures) + self.misbehaviours


TAO_3_0 = FakeRelease(
    version="3.0",
    subtasks=CLASSIFICATION_SUBTASKS,
    log_format="{stamp} [{level}] {logger}: {message}",
    log_stream="stderr",
    checkpoint_suffix=".tlt",
    model_format="tlt",
    encrypts=True,
    status_failures=False,
    spec_format=SpecFormat(MESSAGES_3_0, checks_unset=False, required_scalars=REQUIRED_3_0),
)
TAO_5_0 = FakeRelease(
    version="5.0",
    subtasks=CLASSIFICATION_SUBTASKS + ("gen_trt_engine",),
    # TF1's logging format; its wrapper sends the script's every line to stdout.
    log_format="{stamp} [TAO Toolkit] [{level}] {logger} 42: {message}",
    log_stream="stdout",
    checkpoint_suffix=".hdf5",
    model_format="hdf5",
    encrypts=False,
    status_failures=True,
    spec_format=SpecFormat(MESSAGES_5_0, checks_unset=True, required_scalars={}),
    misbehaviours=(LOSSY_ENGINE,),
)
RELEASES = OrderedDict((release.version, release) for release in (TAO_3_0, TAO_5_0))
