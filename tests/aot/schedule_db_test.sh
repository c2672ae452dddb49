#!/usr/bin/env bash
# AOT kernels built with convgen_add_kernels(... SCHEDULES db/schedules.json) use the database's
# schedules: exact records for two layers (measured on a "test fixture CPU", so marked as a
# fallback), the nearest tuned neighbour's for the third; and all three match the reference.
# usage: schedule_db_test.sh AOT_CHECK LAYERS
set -euo pipefail
out=$("$1" --suite "$2" --explain)
echo "$out"
expect() {
    if ! grep -qF -- "$1" <<< "$out"; then echo "FAIL: expected '$1' in the output" >&2; exit 1; fi
}
expect "schedule vec=8 tile_vectors=1 tile_rows=3 parallel_rows=2 channels=0 channel_tasks=0 dw_per_task=0 (tuned on another CPU, version or target (fallback): db "
expect "schedule vec=8 tile_vectors=1 tile_rows=2 parallel_rows=2 channels=0 channel_tasks=0 dw_per_task=1 (tuned on another CPU, version or target (fallback): db "
expect "(adapted from the nearest tuned layer: db "
expect "3 kernel runs, 0 failures"
