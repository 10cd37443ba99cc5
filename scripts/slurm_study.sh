#!/usr/bin/env bash
# Submit a pipeline's units as SLURM job arrays, one array per stage, each stage waiting for the previous one
# (docs/cluster.md). Run from the project folder on the shared file system, in the project's environment:
#   bash scripts/slurm_study.sh [pipeline] [kedro env]      e.g. bash scripts/slurm_study.sh study cifar10
# Each array task runs `python -m dhat.units run --pipeline P --stage S --task $SLURM_ARRAY_TASK_ID`:
# a finished unit does nothing, a killed one resumes, so resubmitting the whole script is safe.
set -euo pipefail
pipeline="${1:-study}"
env="${2:-${KEDRO_ENV:-}}"
envflag=${env:+--env $env}
resources="${SBATCH_RESOURCES:---cpus-per-task=2 --mem=16G --time=04:00:00}"   # add --gres=gpu:1 on GPU nodes
# shellcheck disable=SC2086
counts=$(python -m dhat.units list --pipeline "$pipeline" $envflag | sed -n 's/^# units per stage: //p')
previous=""
IFS=',' read -ra stages <<< "$counts"
for item in "${stages[@]}"; do
  stage="${item%%:*}"; stage="${stage// /}"
  n="${item##*: }"
  dependency=${previous:+--dependency=afterok:$previous}
  # shellcheck disable=SC2086
  previous=$(sbatch --parsable --job-name="dhat-$pipeline-s$stage" --array="0-$((n - 1))" $resources $dependency \
    --wrap="python -m dhat.units run --pipeline $pipeline $envflag --stage $stage --task \$SLURM_ARRAY_TASK_ID")
  echo "stage $stage: $n units, job array $previous"
done
