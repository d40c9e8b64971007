#!/usr/bin/env bash
# Build the pipeline's image, and optionally push it to a registry the cluster pulls from.
#   docker/build.sh                                  # local tag only
#   docker/build.sh registry.example.com/ml --push   # tag as registry.example.com/ml/<tag>, push
# The tag is docker/IMAGE plus a digest of what the image holds (python3 docker/image_tag.py), the
# same the pipeline uses by default. Then compile with the --image line printed at the end.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
image=$(python3 "$repo/docker/image_tag.py")
registry=${1:-}
push=${2:-}
if [[ -n "$registry" && "$registry" != --* ]]; then
    image="${registry%/}/$image"
elif [[ "$registry" == --* ]]; then
    echo "usage: $0 [REGISTRY [--push]]" >&2
    exit 2
fi
if [[ -n "$push" && "$push" != "--push" ]]; then
    echo "usage: $0 [REGISTRY [--push]]" >&2
    exit 2
fi
# The repository root is the build context, so the image carries this checkout's code.
docker build -t "$image" -f "$repo/docker/Dockerfile" "$repo"
if [[ "$push" == "--push" ]]; then
    docker push "$image"
fi
echo "built $image"
echo "compile with: python tao_iva_classification_pipeline.py --image $image"
