#!/usr/bin/env bash
# The fast suite under the conditions that expose tests which hold only on the machine they were
# written on: timing, ordering, shared files and ports, CPU-dependent floats.
#
#   scripts/stress-suite.sh [ROUNDS]     # make test-stress [ROUNDS=5]
#
# 1. ROUNDS rounds (default 5), each two copies of the fast suite started together beside a CPU
#    hog (one busy process per core), so every test runs slower than alone and its neighbours
#    compete for ports, files and the CPU;
# 2. the suite once for each other set of CPU kernels, which stands in for another processor:
#    torch's own (ATEN_CPU_CAPABILITY=default, the portable one, and avx2 where this CPU has
#    AVX-512) and MKL's matrix products (MKL_CBWR=COMPATIBLE, the code path any x86 CPU runs).
# Each run's output goes to $LOGS (default /tmp/mnist-stress.*); it stops at the first failing run
# and prints which. Needs the project's .venv (make test-stress sets it up).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
rounds="${1:-5}"
python="${VENV:-.venv}/bin/python"
logs="${LOGS:-$(mktemp -d /tmp/mnist-stress.XXXXXX)}"
hogs=()
started=$SECONDS

stop_hogs() {
  for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done
  hogs=()
}
trap stop_hogs EXIT

summary() {  # pytest's last line, e.g. "412 passed, 1 skipped in 61.2s"
  tail -n 1 "$1" | tr -d '='
}

for round in $(seq 1 "$rounds"); do
  for _ in $(seq 1 "$(nproc)"); do
    "$python" -c "while True: pass" &
    hogs+=($!)
  done
  pids=()
  for copy in 1 2; do
    "$python" -m pytest -q -p no:cacheprovider >"$logs/round-$round-copy-$copy.log" 2>&1 &
    pids+=($!)
  done
  failed=0
  for copy in 1 2; do
    if ! wait "${pids[$((copy - 1))]}"; then failed=1; fi
    echo "[stress] round $round/$rounds, copy $copy: $(summary "$logs/round-$round-copy-$copy.log")"
  done
  stop_hogs
  if [ "$failed" != 0 ]; then
    echo "[stress] FAILED in round $round; logs in $logs"
    exit 1
  fi
done

native="$("$python" -c 'import torch; print(torch.backends.cpu.get_cpu_capability())')"
for setting in ATEN_CPU_CAPABILITY=default ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=COMPATIBLE; do
  if [ "$setting" = "ATEN_CPU_CAPABILITY=${native,,}" ]; then
    echo "[stress] $setting is this CPU's own kernel set: run above"
    continue
  fi
  log="$logs/${setting//=/-}.log"
  if ! env "$setting" "$python" -m pytest -q -p no:cacheprovider >"$log" 2>&1; then
    echo "[stress] FAILED with $setting: $(summary "$log"); log in $log"
    exit 1
  fi
  echo "[stress] $setting: $(summary "$log")"
done
echo "[stress] passed: $rounds round(s) of 2 copies beside $(nproc) busy process(es), then the other kernel sets, in $((SECONDS - started)) s; logs in $logs"
