#!/usr/bin/env bash
# Retrain from what officers found, and promote the candidate only if it
# ranks the recent random-sample labels better than the serving model.
#
#   scripts/retrain.sh --data-dir parcel-risk-data --serving models/current \
#       --since 2026-09-01 --holdout-from 2026-09-20 [--models models] \
#       [--version NAME] [--min-positives 20] [--pid PID] [--bin parcel-risk]
#       [--reporters NAME,NAME]
#
# 1. export: every inspection result received since --since, joined to the
#    declaration as it was scored (TrainingExample JSON Lines); with
#    --reporters, only results those callers reported (names from the access
#    file or client certificates, see docs/security.md);
# 2. train a candidate on the results lodged before --holdout-from;
# 3. evaluate candidate and serving model on the declarations lodged from
#    --holdout-from, against randomly selected inspections only (the
#    unbiased labels: risk-selected ones would flatter the serving model);
# 4. promote when the candidate's mean AUC over the three targets is higher
#    and the window has at least --min-positives fraudulent random picks:
#    copy it to MODELS/VERSION with comparison.md beside it, and repoint the
#    --serving symlink atomically. The server notices the new model.json
#    (file watch, or SIGHUP with --pid), validates it and swaps it in.
#
# Exit code: 0 promoted, 3 kept the serving model, other: failure.
# Needs bash, python3 (to read the two JSON reports) and the parcel-risk binary.
set -euo pipefail

data_dir=parcel-risk-data serving=models/current models=models since= holdout= version=
min_positives=20 pid= bin=${PARCEL_RISK_BIN:-parcel-risk} reporters=
while [[ $# -gt 0 ]]; do
  case $1 in
    --data-dir) data_dir=$2; shift 2 ;;
    --serving) serving=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --since) since=$2; shift 2 ;;
    --holdout-from) holdout=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --min-positives) min_positives=$2; shift 2 ;;
    --pid) pid=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --reporters) reporters=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n $since && -n $holdout ]] || { echo "--since and --holdout-from are required" >&2; exit 2; }
version=${version:-retrained-$(date -u +%Y%m%dT%H%M%SZ)}
work=$(mktemp -d "${TMPDIR:-/tmp}/retrain.XXXXXX")
echo "work directory: $work"

"$bin" export --data-dir "$data_dir" --since "$since" --out "$work/export.jsonl" \
  ${reporters:+--reporter "$reporters"}
"$bin" train --data "$work/export.jsonl" --until "$holdout" \
  --out "$work/candidate" --version "$version"
"$bin" evaluate --model "$serving" --data "$work/export.jsonl" --from "$holdout" \
  --json "$work/serving.json" > "$work/serving.txt"
"$bin" evaluate --model "$work/candidate" --data "$work/export.jsonl" --from "$holdout" \
  --json "$work/candidate.json" > "$work/candidate.txt"

verdict=$(python3 - "$work/serving.json" "$work/candidate.json" "$min_positives" "$work/comparison.md" <<'PY'
import json, sys
serving, candidate = (json.load(open(p)) for p in sys.argv[1:3])
min_positives = int(sys.argv[3])
targets = sorted(candidate["targets"])
mean = lambda r: sum(r["targets"][t]["auc"] for t in targets) / len(targets)
positives = candidate["targets"]["any"]["positives"]
better = mean(candidate) > mean(serving)
enough = positives >= min_positives
promote = better and enough
lines = [
    f"# {candidate['model_version']} against {serving['model_version']}",
    "",
    f"Labels: {candidate['labels']} ({candidate['evaluated']} declarations, {positives} fraudulent).",
    "",
    "| target | positives | AUC serving | AUC candidate | P@5% serving | P@5% candidate | revenue@5% serving | revenue@5% candidate |",
    "|---|---|---|---|---|---|---|---|",
]
for t in targets:
    s, c = serving["targets"][t], candidate["targets"][t]
    lines.append(f"| {t} | {c['positives']} | {s['auc']:.3f} | {c['auc']:.3f} | {s['precision_at']['5%']:.3f} | {c['precision_at']['5%']:.3f} | {s['revenue_at']['5%']:.3f} | {c['revenue_at']['5%']:.3f} |")
lines += ["", f"Mean AUC: serving {mean(serving):.3f}, candidate {mean(candidate):.3f}.",
          f"Decision: {'PROMOTE' if promote else 'KEEP the serving model'}"
          + ("" if enough else f" (only {positives} fraudulent random picks; at least {min_positives} needed)") + "."]
open(sys.argv[4], "w").write("\n".join(lines) + "\n")
print("promote" if promote else "keep")
PY
)
cat "$work/comparison.md"
cp "$work/serving.txt" "$work/candidate.txt" "$work/serving.json" "$work/candidate.json" "$work/candidate/"
cp "$work/comparison.md" "$work/candidate/"
if [[ $verdict != promote ]]; then
  echo "kept the serving model; the candidate is in $work/candidate"
  exit 3
fi
mkdir -p "$models"
rm -rf "${models:?}/$version"
cp -r "$work/candidate" "$models/$version"
# Repoint the serving link in one rename, so the server never sees a gap.
if [[ -L $serving || ! -e $serving ]]; then
  target=$(realpath --relative-to="$(dirname "$serving")" "$models/$version")
  ln -sfn "$target" "$serving.next"
  mv -T "$serving.next" "$serving"
else
  echo "$serving is a directory, not a link: copy $models/$version into place yourself" >&2
  exit 1
fi
[[ -n $pid ]] && kill -HUP "$pid"
echo "promoted $version: $serving -> $models/$version"
