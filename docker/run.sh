#!/usr/bin/env bash
# Open a shell in the pipeline's image with a workspace mounted where the pipeline mounts
# it, to try TAO commands by hand before running them in Kubeflow.
#   docker/run.sh [WORKSPACE_DIR]        (default: /mnt/workspace)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
image=${TAO_KFP_IMAGE:-$(python3 "$repo/docker/image_tag.py")}
workspace=${1:-/mnt/workspace}
if [[ ! -d "$workspace" ]]; then
    echo "run.sh: workspace $workspace does not exist; pass the directory to mount" >&2
    exit 2
fi
exec docker run --rm -it --gpus all --shm-size 16g --ulimit memlock=-1 \
    --ulimit stack=67108864 -v "$workspace:/mnt/workspace" "$image" bash
