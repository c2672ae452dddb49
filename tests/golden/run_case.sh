#!/bin/bash
# Runs one golden case through convgen and compares the result with expected.npy.
#   run_case.sh CONVGEN CASE_DIR OUT_DIR
# CASE_DIR holds spec.txt, input.npy, weights.safetensors, expected.npy and optionally prefix.txt
# (see make_golden.py). The output goes to OUT_DIR/<case>.npy. Exit status: 0 when convgen's
# output is within tolerance, non-zero otherwise (convgen's own status is passed on).
set -euo pipefail

if [ $# -ne 3 ]; then
  echo "usage: $0 CONVGEN CASE_DIR OUT_DIR" >&2
  exit 2
fi
convgen=$1
case_dir=${2%/}
out_dir=$3
name=$(basename "$case_dir")

for f in spec.txt input.npy weights.safetensors expected.npy; do
  if [ ! -f "$case_dir/$f" ]; then
    echo "run_case.sh: $case_dir/$f is missing (was the case generated?)" >&2
    exit 2
  fi
done
if [ ! -x "$convgen" ]; then
  echo "run_case.sh: convgen binary '$convgen' not found or not executable" >&2
  exit 2
fi

spec=$(head -n 1 "$case_dir/spec.txt")
args=(run --layer "$spec" --weights "$case_dir/weights.safetensors" --input "$case_dir/input.npy")
if [ -f "$case_dir/prefix.txt" ]; then
  args+=(--prefix "$(head -n 1 "$case_dir/prefix.txt")")
fi
mkdir -p "$out_dir"
output="$out_dir/$name.npy"
rm -f "$output"
args+=(--output "$output")

echo "case $name: $spec"
[ -f "$case_dir/prefix.txt" ] && echo "prefix: $(head -n 1 "$case_dir/prefix.txt")"
echo "+ $convgen ${args[*]}"
"$convgen" "${args[@]}"

echo "+ $convgen compare $case_dir/expected.npy $output"
"$convgen" compare "$case_dir/expected.npy" "$output"
