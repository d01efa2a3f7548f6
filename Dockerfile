# kon_ray's image: the pipeline and its locked dependencies on the official Ray image.
# One image serves every cluster kind: Ray cluster nodes (cluster=ray / ec2: the job's working_dir brings the code,
# the image brings the dependencies) and SageMaker training jobs (cluster=sagemaker: `train` boots Ray across the
# job's instances). Build: docker build -t kon-ray:0.1.0 .
#
# The base tag follows rayproject/ray's {ray version}-{python version}-{platform} scheme and matches
# requirements.lock (ray==2.60.0) and the project's Python (3.12).
FROM rayproject/ray:2.60.0-py312-cpu

# The ray image's non-root `ray` user (uid 1000, group 100 `users`), numeric so hosts need not resolve it;
# its Python (on PATH) is owned by that user, so pip installs into it without root.
USER 1000:100
WORKDIR /home/ray/kon_ray

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0

# The locked dependencies first (their layer is reused while only the code changes). The lock pins the same
# ray as the base image, so pip keeps the installed one. Every download must match a sha256 of the lock
# (--require-hashes); --no-deps: the lock is complete, nothing outside it may be resolved. The lock holds the
# sagemaker-mlflow plugin, so tracking.uri=arn:aws:sagemaker:...:mlflow-tracking-server/NAME works in the image.
COPY --chown=1000:100 requirements.lock ./
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock

# The package itself, without re-resolving dependencies, and the Hydra config tree it reads.
COPY --chown=1000:100 pyproject.toml ./
COPY --chown=1000:100 kon_ray ./kon_ray
COPY --chown=1000:100 conf ./conf
RUN pip install --no-cache-dir --no-deps .

COPY --chown=1000:100 --chmod=0755 docker/entrypoint.sh /usr/local/bin/kon-entrypoint

# `train` (how SageMaker starts a training image): the Ray bootstrap of kon_ray/cluster/sagemaker_entry.py.
# Anything else runs as given (the Ray cluster launcher's `bash`, `ray start ...`, `python -m kon_ray.run ...`).
ENTRYPOINT ["/usr/local/bin/kon-entrypoint"]
CMD ["bash"]
