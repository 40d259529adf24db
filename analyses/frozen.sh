#!/bin/bash
# Run a study of analyses/ on the code of one commit, frozen, so that a study spanning sessions and machines
# trains every run with the same code while this checkout moves on (a run's config.toml must also match the code
# that resumes it), then bank it with this checkout's code: its per-run columns, curves.csv and summary.
#
#   bash analyses/frozen.sh COMMIT STUDY [study options]     # e.g. bash analyses/frozen.sh aa61e2c plateau_t_train
#
# The commit is checked out once (a shared clone: each run's meta.json names the commit as its git_revision) into
# $GRADLAB_SNAPSHOTS/COMMIT (default ../gradlab-snapshots beside this checkout). Runs go to runs/studies/STUDY, the bank is analyses/results/STUDY (--keep), both under
# $GRADLAB_STUDY_ROOT (default this checkout); the study runs at nice 19 with 2 workers unless the options say
# otherwise. Rerunning the same command resumes the study; stopping it (Ctrl-C, SIGTERM) keeps what finished.
set -u
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
mkdir -p "$out" "$keep"
(cd "$snap/analyses" && PYTHONPATH="$snap" nice -n 19 "$python" "$study.py" --workers 2 --out "$out" --keep "$keep" "$@")
status=$?
if [ -f "$out/ablation.json" ]; then  # bank again with this checkout's code: its rows from run directories win
  (cd "$root/analyses" && "$python" -c "import sys; from gradlab.ablate.ablation import keep_finished as k
print('frozen.sh: banked', k(sys.argv[1], sys.argv[2]), 'runs in', sys.argv[2])" "$out" "$keep" \
    && if [ -f "$keep/runs.csv" ]; then "$python" "$study.py" --keep "$keep" --summarize | tail -1; fi) || status=2
fi
exit $status
