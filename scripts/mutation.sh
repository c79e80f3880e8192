#!/usr/bin/env bash
# Mutation testing of the core definitions (wsol/localize.py, _threshold_sweep.py, metrics.py, methods/,
# models/, cam.py) with mutmut; the modules and the tests it runs are set in pyproject.toml
# [tool.mutmut]. Not part of CI: the protocol's run took 40 minutes on 2 busy cores, methods/ and
# models/ more than 105 minutes.
# docs/testing.md records the last score and the equivalent mutants.
#
#   scripts/mutation.sh                  # every mutant
#   scripts/mutation.sh "wsol.methods*"  # one package's mutants
#   mutmut show NAME                     # the diff of one mutant, afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1  # one thread per mutant process
rm -rf mutants
start=$(date +%s)
mutmut run "$@" >/dev/null || true
echo "mutation run: $(( $(date +%s) - start )) s"
mutmut results --all true | awk -F': ' '{print $2}' | sort | uniq -c
mutmut results
