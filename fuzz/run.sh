#!/bin/sh
# Runs each fuzz target (build/fuzz/fuzz_*) for FUZZ_SECONDS (10 by default)
# from its seed corpus in fuzz/corpus/TARGET, and reports each as one test:
# "ok - fuzz TARGET (N runs)", or "FAIL - ..." with the end of its log when
# libFuzzer found a crash, a sanitizer report, a leak, a hang or an invariant
# that failed. The input that did it is saved in build/fuzz/artifacts/.
# Ends with "fuzz: N passed, N failed" and exits non-zero if any failed.
#
# New inputs go to build/fuzz/work/TARGET, never to the seed corpus: it
# stays a small, chosen set (add a regression seed there by hand).
set -u
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-10}
targets=${FUZZ_TARGETS:-"email url router token utf8 json_text lua_json http api"}
mkdir -p build/fuzz/artifacts
passed=0
failed=0
for t in $targets; do
  bin=build/fuzz/fuzz_$t
  log=build/fuzz/$t.log
  mkdir -p "build/fuzz/work/$t"
  case $t in
    http|api) max_len=8192 ;;
    json_text) max_len=16384 ;;
    *) max_len=4096 ;;
  esac
  if [ ! -x "$bin" ]; then
    echo "FAIL - fuzz $t: $bin is not built (make fuzz-build)"
    failed=$((failed + 1))
    continue
  fi
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=$max_len -print_final_stats=1 \
    -artifact_prefix="build/fuzz/artifacts/$t-" \
    "build/fuzz/work/$t" "fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ "$rc" = 0 ]; then
    echo "ok - fuzz $t (${runs:-?} runs in ${seconds} s)"
    passed=$((passed + 1))
  else
    echo "FAIL - fuzz $t (exit $rc; log $log):"
    grep -E 'ERROR|invariant failed|runtime error|Test unit written' "$log" |
      head -20 | sed 's/^/    /'
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
