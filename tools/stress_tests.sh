#!/usr/bin/env bash
# Run the same test files N times in a row and count the failures (issue 17: the GUI and trainer
# tests must not be flaky when the machine is busy). Start a load first, e.g. a training run with
# --threads 2 in the background; this script does not start one, so the load is whatever you chose.
#
#   tools/stress_tests.sh 50 runs/stress tests/test_gui.py tests/test_match_gui.py tests/test_trainer.py
#
# Writes LOGDIR/run-K.log per run and LOGDIR/summary.tsv (run, exit code, seconds, last line);
# a run's log is kept only when it failed. Exits 1 if any run failed.
set -u
n=${1:?number of runs}; logdir=${2:?log folder}; shift 2
[ $# -gt 0 ] || { echo "name the test files to run" >&2; exit 2; }
py=${PY:-.venv/bin/python}
mkdir -p "$logdir"
summary="$logdir/summary.tsv"
: > "$summary"
failed=0
for k in $(seq 1 "$n"); do
    log="$logdir/run-$k.log"
    start=$(date +%s)
    OMP_NUM_THREADS=1 QT_QPA_PLATFORM=offscreen "$py" -m pytest -q -p no:cacheprovider "$@" > "$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    printf '%s\t%s\t%s\t%s\n' "$k" "$rc" "$secs" "$(tail -n 1 "$log")" >> "$summary"
    if [ "$rc" -ne 0 ]; then failed=$((failed + 1)); else rm -f "$log"; fi
done
echo "$n runs, $failed failed; see $summary"
[ "$failed" -eq 0 ]
