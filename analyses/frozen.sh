#!/bin/bash
# Run a study of analyses/ on the code of one commit, frozen, so that a study spanning sessions and machines
# trains every run with the same code while this checkout moves on (a run's config.toml must also match the code
# that resumes it), then bank it with this checkout's code: its per-run columns, curves.csv, summary and the EM
# branch knockout of each run (analyses/knockout.py, from the checkpoints, which do not outlive the machine).
#
#   bash analyses/frozen.sh COMMIT STUDY [study options]     # e.g. bash analyses/frozen.sh aa61e2c plateau_t_train
#
# The commit is checked out once (a shared clone: each run's meta.json names the commit as its git_revision) into
# $GRADLAB_SNAPSHOTS/COMMIT (default ../gradlab-snapshots beside this checkout). Runs go to runs/studies/STUDY, the
# bank is analyses/results/STUDY, both under $GRADLAB_STUDY_ROOT (default this checkout); the commit's code reads
# and writes a copy of the bank (runs/studies/STUDY.snapshot-bank), this checkout's code banks before and after.
# The study runs at nice 19 with 2 workers unless the options say otherwise. Rerunning the same command resumes
# the study; stopping it (Ctrl-C, SIGTERM) stops its trials at their last checkpoint, banks what finished and
# exits 130 or 143.
set -u -o pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash analyses/frozen.sh COMMIT STUDY [study options]" >&2
  exit 2
fi
commit=$1 study=$2
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
python=${GRADLAB_PYTHON:-$root/.venv/bin/python}
base=${GRADLAB_STUDY_ROOT:-$root}
full=$(git -C "$root" rev-parse --verify --quiet "$commit^{commit}") || {
  echo "frozen.sh: error: $commit is not a commit of $root" >&2
  exit 2
}
[ -f "$root/analyses/$study.py" ] || { echo "frozen.sh: error: no study analyses/$study.py" >&2; exit 2; }
snap=${GRADLAB_SNAPSHOTS:-$root/../gradlab-snapshots}/${full:0:12}
if [ ! -f "$snap/.git/frozen" ]; then  # made once (a half-made one is made again); runs record its commit
  rm -rf "$snap" && mkdir -p "$(dirname "$snap")" && git clone -q --shared --no-checkout "$root" "$snap" \
    && git -C "$snap" checkout -q --detach "$full" && touch "$snap/.git/frozen" \
    || { echo "frozen.sh: error: could not check out $commit into $snap" >&2; exit 2; }
fi
[ -f "$snap/analyses/$study.py" ] || { echo "frozen.sh: error: commit $commit has no analyses/$study.py" >&2; exit 2; }
out=$base/runs/studies/$study
keep=$base/analyses/results/$study
copy=$out.snapshot-bank  # the commit's code banks into this copy, never into the bank: older code writes rows
mkdir -p "$out" "$keep"  # without the newer columns (banked again after, but wrong in between)

for option in "$@"; do  # the script sets these: the study's folder, and the copy of the bank
  case $option in --out|--out=*|--keep|--keep=*|--summarize)
    echo "frozen.sh: error: $option is set by frozen.sh (runs in $out, the bank in $keep)" >&2; exit 2;;
  esac
done
export GRADLAB_STUDY_ROOT=$base  # where the studies' code looks for other studies' banks

bank() {  # the runs finished in $out into the bank with this checkout's code (its rows from run directories
  # win), then the EM branch knockout of each run new here, while its checkpoint is on this machine
  [ -f "$out/ablation.json" ] || return 0
  (cd "$root/analyses" && "$python" - "$out" "$keep" <<'PY'
import sys
from gradlab.ablate.ablation import keep_finished
from gradlab.cli import one_line
from gradlab.errors import GradlabError
try:
    print("frozen.sh: banked", keep_finished(sys.argv[1], sys.argv[2]), "runs in", sys.argv[2])
except GradlabError as err:
    sys.exit(f"frozen.sh: error: {one_line(err)}")
PY
  ) && (cd "$root/analyses" && "$python" knockout.py "$study" --runs "$out" --bank "$keep" | tail -1)
}

bank || exit 2  # what finished in an interrupted session first
rm -rf "$copy" && mkdir -p "$copy" && cp -a "$keep/." "$copy/" \
  || { echo "frozen.sh: error: could not copy the bank $keep to $copy" >&2; exit 2; }
# The study runs in the background so that a signal reaches this script at once: it is passed on as SIGTERM (a
# background job ignores SIGINT), the study stops its trials at their last checkpoint, and what finished is banked.
signal=0
trap 'signal=143; kill -TERM "$pid" 2>/dev/null' TERM
trap 'signal=130; kill -TERM "$pid" 2>/dev/null' INT
(cd "$snap/analyses" && PYTHONPATH="$snap" exec nice -n 19 "$python" "$study.py" --workers 2 --out "$out" \
  --keep "$copy" "$@") &
pid=$!
wait "$pid"
status=$?
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; status=$?; done  # a trapped signal ends the first wait early
[ "$signal" -ne 0 ] && status=$signal
bank || exit 2
if [ -f "$keep/runs.csv" ]; then  # a failed summary says so (exit 2) unless the study's own status already does
  (cd "$root/analyses" && "$python" "$study.py" --keep "$keep" --summarize | tail -1) \
    || { [ "$status" -eq 0 ] && status=2; }
fi
exit $status
