#!/usr/bin/env bash
# The image's entrypoint. SageMaker runs a training image as `docker run IMAGE train`: boot Ray across the job's
# instances and run the pipeline (kon_ray/cluster/sagemaker_entry.py). Every other command passes through
# unchanged, so the image also serves as a Ray cluster node (cluster=ray / ec2) and for one-off commands.
set -euo pipefail

if [[ "${1:-}" == "train" ]]; then
    shift
    # conf/ is read relative to the project folder (the Dockerfile's WORKDIR): `python -m` imports kon_ray from the
    # current folder first. KON_PROJECT_DIR stands in for it only in the rehearsal (tests/cluster/test_cloud_rehearsal.py).
    cd "${KON_PROJECT_DIR:-/home/ray/kon_ray}"
    exec python -m kon_ray.cluster.sagemaker_entry "$@"
fi

exec "$@"
