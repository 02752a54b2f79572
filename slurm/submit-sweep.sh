#!/usr/bin/env bash
# Submit a job file's sweep: one array task per point, then a merge job that waits
# for all of them (--dependency=afterok). Resources come from the job file's
# `slurm:` section; sbatch options given here come after them and win.
#
#   bash slurm/submit-sweep.sh jobs/example.yaml [extra sbatch options]
#
# Prints the array and merge job ids.
set -euo pipefail
[ "$#" -ge 1 ] || { echo "usage: bash slurm/submit-sweep.sh JOB.yaml [sbatch options]" >&2; exit 2; }
job=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
PERTSCORE=${PERTSCORE:-pertscore}
points=$("$PERTSCORE" sweep --config "$job" --count)
read -r -a resources <<< "$("$PERTSCORE" sweep --config "$job" --slurm-args)"
array=$(sbatch --parsable --array=0-$((points - 1)) "${resources[@]}" "$@" "$here/sweep.sbatch" "$job")
array=${array%%;*}
merge=$(sbatch --parsable --dependency=afterok:"$array" "$here/merge.sbatch" "$job")
echo "submitted sweep of $points points: array job $array, merge job $merge"
echo "$array $merge"
