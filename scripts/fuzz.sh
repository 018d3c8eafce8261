#!/usr/bin/env bash
# Runs the cargo-fuzz targets (fuzz/fuzz_targets): the model loader, graphs over fixed tensors, the planner (on
# the GPU: lavapipe here), image decoding.
#   scripts/fuzz.sh [SECONDS] [TARGET...]    default: 600 seconds each, every target
# New interesting inputs land in fuzz/corpus/TARGET; a crash stops the run and leaves its input in
# fuzz/artifacts/TARGET: move it to fuzz/regressions/TARGET, where tests/fuzz_corpus.rs replays it forever.
#
# cargo-fuzz needs nightly-only compiler flags (the sanitizers). With only a stable toolchain, as on the CI
# machines, RUSTC_BOOTSTRAP=1 lets stable accept them.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(model_file graph_json plan image_decode)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
export RUSTC_BOOTSTRAP=1
cd fuzz
log=$(mktemp)
# One build for every target first, so that a failure to build (a full disk, say) is not taken for a crash.
for target in "${targets[@]}"; do
  if ! cargo fuzz build -O "$target" >"$log" 2>&1; then
    grep -E '^error|fatal error|No space' "$log" >&2 || tail -n 40 "$log" >&2
    echo "fuzz: $target did not build ($(df -h --output=avail . | tail -n 1 | tr -d ' ') free on disk)" >&2
    exit 1
  fi
done
for target in "${targets[@]}"; do
  echo "== fuzzing $target for $seconds s"
  status=0
  corpora=("corpus/$target")
  lsan_options=${LSAN_OPTIONS:-}
  asan_options=${ASAN_OPTIONS:-}
  if [ "$target" = plan ]; then
    # The planner starts from the graphs the graph fuzzer kept. The GPU driver keeps some allocations until
    # the process ends; they are not leaks of ours, and only they are suppressed. The driver's code is built
    # without frame pointers, so LeakSanitizer's fast unwinder often records only the allocating frame and
    # the suppressions cannot see whose it is; which of those allocations are still unreachable at exit
    # depends on the machine (one CI machine reported them at exit, others did not).
    # So the check at exit is off for this target: libFuzzer's own leak check after every input that
    # allocates more than it frees stays on, and that is the one that finds a planner leaking per graph.
    corpora+=(corpus/graph_json)
    lsan_options="suppressions=$PWD/lsan-gpu-driver.supp${lsan_options:+:$lsan_options}"
    asan_options="leak_check_at_exit=0${asan_options:+:$asan_options}"
  fi
  LSAN_OPTIONS=$lsan_options ASAN_OPTIONS=$asan_options cargo fuzz run -O "$target" "${corpora[@]}" -- \
    -max_total_time="$seconds" -max_len=16384 -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^stat::(number_of_executed_units|new_units_added)|Done [0-9]+ runs' "$log" || true
  if [ "$status" -ne 0 ]; then
    # The sanitizer's or libFuzzer's own report (what failed and where), then cargo-fuzz's summary.
    first=$(grep -n -m1 -E '==[0-9]+== ?ERROR|ERROR: libFuzzer|deadly signal|panicked at' "$log" | cut -d: -f1 || true)
    [ -z "$first" ] || sed -n "${first},$((first + 60))p" "$log" >&2
    tail -n 25 "$log" >&2
    echo "fuzz: $target failed (status $status); a failing input is in fuzz/artifacts/$target" >&2
    exit 1
  fi
done
