#!/bin/bash
# Re-check named mutmut mutants against test files as they are now, without a full mutmut run.
#
#   tools/check_mutants.sh TESTFILE... -- MUTANT...      (from the repository root, after `make mutate`)
#
# Copies the given test files into mutants/tests/ and runs each mutant in a fresh pytest process
# (MUTANT_UNDER_TEST=NAME), printing "killed(rc) NAME" or "SURVIVED NAME". A fresh process also
# activates mutants in code that runs at import time (dataclass field helpers), which mutmut's
# forked workers never do. See docs/mutation.md.
set -u
tests=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do tests+=("$1"); shift; done
[ $# -gt 0 ] || { echo "usage: $0 TESTFILE... -- MUTANT..." >&2; exit 2; }
shift
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/mutants" || { echo "no mutants/ folder: run make mutate first" >&2; exit 2; }
for t in "${tests[@]}"; do cp "../$t" "$t"; done
for m in "$@"; do
  MUTANT_UNDER_TEST="$m" OMP_NUM_THREADS=1 QT_QPA_PLATFORM=offscreen PYTHONDONTWRITEBYTECODE=1 \
    timeout 300 "$root/.venv/bin/python" -m pytest -x -q -p no:cacheprovider -o addopts= \
    "${tests[@]}" >/dev/null 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then echo "SURVIVED $m"; else echo "killed($rc) $m"; fi
done
