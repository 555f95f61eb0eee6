#!/usr/bin/env bash
# aiop-bench, the Rust peer procspawn and the Python anchors in one run, so that they can be
# quoted as ratios.
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

# The Rust peer for process start: procspawn (re-exec, like Spawn).
want_spawn=""
for p in "${prefixes[@]}"; do case "$p" in spawn_join*) want_spawn=1;; esac; done
if [ -n "$want_spawn" ] && [ -d "$anchors/rust-peers/procspawn" ]; then
  root=$(pwd)
  (cd "$anchors/rust-peers/procspawn" && CARGO_TARGET_DIR="$root/target/anchors" cargo build --release --locked -q)
  echo "# rust peer: procspawn"
  SPAWN_ITERS=${SPAWN_ITERS:-200} POOL_ITERS=${POOL_ITERS:-500} target/anchors/release/peer-procspawn | grep '^RESULT'
fi

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
