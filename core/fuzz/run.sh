#!/usr/bin/env bash
# Runs every fuzz target for a fixed time, from a corpus seeded with fixtures/.
#
#   core/fuzz/run.sh [SECONDS]     # per target; default 20 (CI); use 600+ for a real hunt
#   FUZZ_TARGETS="stream_json job_record" core/fuzz/run.sh 60
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). It runs on the stable toolchain
# with `-s none` (no sanitizer: the core forbids unsafe code, so ASan would find little);
# cargo-fuzz still builds with debug assertions and overflow checks. libFuzzer's seed is
# fixed (-seed=1). Seeds are written to corpus/<target>/seed-<hash> from fixtures/ (scenario
# client lines and configs, recorded claude stdout, job records written by core::jobs); what
# the fuzzer finds is added beside them (corpus/ is not committed). A crash, panic or hang
# (-timeout=10 s per input) stops the run with a non-zero exit and leaves the input in
# artifacts/<target>/; replay it with `cargo fuzz run -s none <target> <file>` from core/.
set -euo pipefail

SECONDS_PER_TARGET=${1:-20}
TARGETS=${FUZZ_TARGETS:-mcp_lines stream_json agents_yaml job_record}

cd "$(dirname "${BASH_SOURCE[0]}")/.."   # core/
CORE=$PWD

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "error: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)" >&2
    exit 1
fi

echo "==> seeding fuzz/corpus from fixtures/"
AGENT_DISPATCH_FUZZ_SEEDS=$CORE/fuzz/corpus \
    cargo test --quiet -p agent-dispatch-core --test properties -- \
    --ignored --exact fuzz_seeds --nocapture

echo "==> cargo fuzz build -s none"
cargo fuzz build -s none

for target in $TARGETS; do
    echo "==> $target: ${SECONDS_PER_TARGET}s"
    start=$(date +%s)
    log=fuzz/artifacts/$target.log
    mkdir -p fuzz/artifacts
    # Whole sessions need no more than a few KiB to reach every path; longer inputs only
    # make each run slower. The other targets take the largest seed (a recorded transcript).
    extra=()
    [ "$target" = mcp_lines ] && extra=(-max_len=8192)
    status=0
    cargo fuzz run -s none "$target" "fuzz/corpus/$target" -- \
        -seed=1 -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=4096 \
        -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "    $target: $(($(date +%s) - start))s, ${runs:-?} runs, exit $status," \
        "corpus $(find "fuzz/corpus/$target" -type f | wc -l) inputs"
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log" >&2
        echo "error: fuzz target $target failed (log: core/$log, input: core/fuzz/artifacts/$target/)" >&2
        exit "$status"
    fi
done
