"""Code that runs inside the TAO container, next to the TAO commands.

It is shipped in the image that ``docker/`` builds (copied to ``/opt/tao-kfp``, on
``PYTHONPATH``) and runs on that image's Python 3.6, so it must stay 3.6-compatible and
use only the standard library plus what the TAO image already ships (protobuf).
The same code runs on the host for tests and the local dry run.
"""

# Bump whenever the command line of ``python3 -m tao_step`` changes in a way the compiled
# pipeline depends on: the pipeline asks for this version and an older image refuses to run.
RUNTIME_VERSION = 3
