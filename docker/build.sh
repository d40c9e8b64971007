#!/usr/bin/env bash
# Build the pipeline's images, and optionally push them to a registry the cluster pulls from.
#   docker/build.sh                                  # TAO 3.0 image, local tag only
#   docker/build.sh registry.example.com/ml --push   # tag as registry.example.com/ml/<tag>, push
#   docker/build.sh --tao-version 5.0 [REGISTRY [--push]]   # both TAO 5 images (TF1, deploy)
# Each tag is the folder's IMAGE plus a digest of what the image holds (python3
# docker/image_tag.py), the same the pipeline uses by default. Then compile with the
# options printed at the end.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
usage() {
    echo "usage: $0 [--tao-version VERSION] [REGISTRY [--push]]" >&2
    exit 2
}
version=3.0
if [[ "${1:-}" == "--tao-version" ]]; then
    [[ $# -ge 2 ]] || usage
    version=$2
    shift 2
fi
registry=${1:-}
push=${2:-}
if [[ "$registry" == --* || ( -n "$push" && "$push" != "--push" ) || $# -gt 2 ]]; then
    usage
fi
# "FOLDER TAG" per image of the release (tao_step/profiles.py says which).
images=$(python3 "$repo/docker/image_tag.py" --tao-version "$version")
options=()
while read -r folder image; do
    if [[ -n "$registry" ]]; then
        image="${registry%/}/$image"
    fi
    # The repository root is the build context, so the image carries this checkout's code.
    docker build -t "$image" -f "$repo/$folder/Dockerfile" "$repo"
    if [[ "$push" == "--push" ]]; then
        docker push "$image"
    fi
    echo "built $image"
    if [[ "$folder" == */deploy ]]; then
        options+=(--deploy-image "$image")
    else
        options+=(--image "$image")
    fi
done <<< "$images"
if [[ "$version" != 3.0 ]]; then
    options=(--tao-version "$version" "${options[@]}")
fi
echo "compile with: .venv/bin/python tao_iva_classification_pipeline.py ${options[*]}"
