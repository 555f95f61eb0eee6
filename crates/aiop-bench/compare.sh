#!/usr/bin/env bash
# aiop-bench, the Rust peer procspawn and the Python anchors in one run, so that they can be
# quoted as ratios.
# Usage: crates/aiop-bench/compare.sh [NAME_PREFIX ...]   (default: spawn_join floor)
# The Python side needs ../shared/anchors (or ANCHORS=dir) and installs aioprocessing and
# aiomultiprocess into a venv under target/ on first use. A `pool` prefix also runs aiop's
# same-run references for the pool ratios (queue/pingpong, queue/throughput_64B,
# spawn_join/spawn), procspawn's Pool(1) round trip, bench.py's `pool_map` and our own
# anchors/pool_apply.py (AioPool.coro_apply and aiomultiprocess Pool.apply round trips, pool
# start).
set -euo pipefail
cd "$(dirname "$0")/../.."
anchors=${ANCHORS:-../shared/anchors}
prefixes=("$@")
[ ${#prefixes[@]} -gt 0 ] || prefixes=(spawn_join floor)

want_spawn="" want_pool=""
for p in "${prefixes[@]}"; do
  case "$p" in
    spawn_join*) want_spawn=1;;
    pool*) want_pool=1;;
  esac
done
run=("${prefixes[@]}")
[ -z "$want_pool" ] || run+=(queue/pingpong queue/throughput_64B spawn_join/spawn)

cargo build --release -q -p aiop-bench
echo "# aiop-bench ${run[*]}"
./target/release/aiop-bench "${run[@]}"

# The Rust peer for process start and pools: procspawn (re-exec, like Spawn; its Pool(1) round
# trip for pool/apply_rtt).
if [ -n "$want_spawn$want_pool" ] && [ -d "$anchors/rust-peers/procspawn" ]; then
  root=$(pwd)
  (cd "$anchors/rust-peers/procspawn" && CARGO_TARGET_DIR="$root/target/anchors" cargo build --release --locked -q)
  cases=()
  [ -z "$want_spawn" ] || cases+=('case=spawn\+join')
  [ -z "$want_pool" ] || cases+=('case=Pool')
  echo "# rust peer: procspawn"
  SPAWN_ITERS=${SPAWN_ITERS:-$([ -n "$want_spawn" ] && echo 200 || echo 20)} POOL_ITERS=${POOL_ITERS:-500} \
    target/anchors/release/peer-procspawn | grep '^RESULT' | grep -E "$(IFS='|'; echo "${cases[*]}")"
fi

only=()
[ -z "$want_spawn" ] || only+=(process_spawn)
[ -z "$want_pool" ] || only+=(pool_map)
if [ ${#only[@]} -gt 0 ]; then
  venv=${VENV:-target/anchor-venv}
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q aioprocessing==2.0.1 aiomultiprocess==0.9.1
  fi
  if [ -f "$anchors/python/bench.py" ]; then
    echo "# python anchors: ${only[*]}"
    "$venv/bin/python" "$anchors/python/bench.py" --only "$(IFS=,; echo "${only[*]}")"
  fi
  if [ -n "$want_pool" ]; then
    echo "# python anchors: crates/aiop-bench/anchors/pool_apply.py"
    "$venv/bin/python" crates/aiop-bench/anchors/pool_apply.py
  fi
fi
[ -d "$anchors" ] || echo "# no anchors at $anchors: aiop side (and our own pool_apply.py) only" >&2
