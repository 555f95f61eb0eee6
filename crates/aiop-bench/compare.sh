#!/usr/bin/env bash
# aiop-bench and the Python anchors in one run, so that the two can be quoted as ratios.
# Usage: crates/aiop-bench/compare.sh [NAME_PREFIX ...]   (default: spawn_join floor)
# The Python side needs ../shared/anchors (or ANCHORS=dir) and installs aioprocessing and
# aiomultiprocess into a venv under target/ on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."
anchors=${ANCHORS:-../shared/anchors}
prefixes=("$@")
[ ${#prefixes[@]} -gt 0 ] || prefixes=(spawn_join floor)

cargo build --release -q -p aiop-bench
echo "# aiop-bench ${prefixes[*]}"
./target/release/aiop-bench "${prefixes[@]}"

if [ -f "$anchors/python/bench.py" ]; then
  venv=${VENV:-target/anchor-venv}
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q aioprocessing==2.0.1 aiomultiprocess==0.9.1
  fi
  only=()
  for p in "${prefixes[@]}"; do
    case "$p" in spawn_join*) only+=(process_spawn);; esac
  done
  if [ ${#only[@]} -gt 0 ]; then
    echo "# python anchors: ${only[*]}"
    "$venv/bin/python" "$anchors/python/bench.py" --only "$(IFS=,; echo "${only[*]}")"
  fi
else
  echo "# no anchors at $anchors: aiop side only" >&2
fi
