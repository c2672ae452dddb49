#!/bin/bash
# Runs a command and checks how it fails.
#   expect_error.sh [--exit N] [--re REGEX]... -- COMMAND [ARGS...]
# (an argument "@EMPTY@" is passed to COMMAND as an empty string)
# With the default --exit 2 (a user error), the command must:
#   - exit with status exactly 2 (not a signal, not 1, not CLI11's own codes),
#   - write exactly ONE non-empty line to stderr, of the form "convgen: error: <message>",
#   - match every --re (extended regex, case-insensitive) on that line,
#   - never mention Segmentation / Abort / terminate / core dumped / Sanitizer.
# With --exit 0 or 1 only the status is checked (plus the crash words in stderr).
set -euo pipefail

want_exit=2
regexes=()
while [ $# -gt 0 ]; do
  case "$1" in
    --exit) want_exit=$2; shift 2 ;;
    --re) regexes+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "expect_error.sh: unknown option '$1' (usage: [--exit N] [--re REGEX]... -- COMMAND...)" >&2; exit 64 ;;
  esac
done
if [ $# -eq 0 ]; then
  echo "expect_error.sh: no command given" >&2
  exit 64
fi
if [ ! -x "$1" ]; then
  echo "expect_error.sh: '$1' is not an executable (is convgen built?)" >&2
  exit 64
fi
# CTest cannot pass an empty argument through a CMake list: "@EMPTY@" stands for one.
cmd=()
for a in "$@"; do
  if [ "$a" = "@EMPTY@" ]; then cmd+=(""); else cmd+=("$a"); fi
done
set -- "${cmd[@]}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

printf '+'; printf ' %q' "$@"; printf '\n'
status=0
"$@" >"$tmp/stdout" 2>"$tmp/stderr" </dev/null || status=$?

fail() {
  echo "FAIL: $*"
  echo "--- exit status: $status (expected $want_exit)"
  echo "--- stderr ($(wc -l <"$tmp/stderr") newline(s), $(wc -c <"$tmp/stderr") bytes):"
  cat "$tmp/stderr"
  echo "--- stdout (first 20 lines):"
  head -n 20 "$tmp/stdout"
  exit 1
}

if grep -Eqi 'segmentation|abort|terminate|core dumped|sanitizer' "$tmp/stderr"; then
  fail "stderr mentions a crash"
fi
if [ "$status" -ne "$want_exit" ]; then
  fail "wrong exit status"
fi
if [ "$want_exit" -ne 2 ]; then
  echo "ok: exit status $status"
  exit 0
fi

# Exactly one line: one trailing newline at most, none inside.
stderr_text=$(cat "$tmp/stderr"; printf x)
stderr_text=${stderr_text%x}
stderr_text=${stderr_text%$'\n'}
case "$stderr_text" in
  *$'\n'*) fail "stderr has more than one line" ;;
esac
if [ -z "${stderr_text//[[:space:]]/}" ]; then
  fail "stderr is empty"
fi
case "$stderr_text" in
  "convgen: error: "?*) ;;
  *) fail "stderr does not start with 'convgen: error: '" ;;
esac
for re in "${regexes[@]+"${regexes[@]}"}"; do
  if ! printf '%s\n' "$stderr_text" | grep -Eqi -- "$re"; then
    fail "stderr does not match /$re/"
  fi
done
echo "ok: exit 2, stderr: $stderr_text"
