#!/usr/bin/env bash
# Copy experiment folders that run in another checkout (a git worktree, so that code changes here cannot reach a
# running experiment) into this one, to commit them part-way. Locks and checkpoints stay behind; weights come too,
# and git ignores them (experiments/results/**/weights.safetensors), so a later session on this checkout resumes a
# comparison whose last-rung pilots can still be rescored as its final runs instead of trained again.
#   bash experiments/snapshot.sh /work/exp2 compare-methods/science-exam glue-fair/rte-all-seeded
set -euo pipefail
src=$1; shift
here=$(cd "$(dirname "$0")/.." && pwd)
for folder in "$@"; do
  [ -d "$src/experiments/results/$folder" ] || { echo "snapshot: no folder $src/experiments/results/$folder" >&2; exit 2; }
  mkdir -p "$here/experiments/results/$(dirname "$folder")"
  (cd "$src/experiments/results" && tar --exclude=.sweep.lock --exclude=checkpoint -cf - "$folder") \
    | (cd "$here/experiments/results" && tar -xf -)
  echo "$folder: $(du -sh --exclude=weights.safetensors "$here/experiments/results/$folder" | cut -f1) without weights"
done
