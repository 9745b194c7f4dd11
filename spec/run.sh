#!/bin/sh
# Runs the whole suite: the C unit tests, the busted specs against the
# sanitizer build of restockd once on SQLite files and once on PostgreSQL
# (a throwaway cluster spec/pg.sh makes, stopped at the end whatever
# happens), the browser tests of the widget and the console
# (spec/browser/run.py, headless Chromium), then each fuzz target for
# FUZZ_SECONDS (fuzz/run.sh; each target counts as one test). Ends with one line "N passed, N failed" that sums
# every part, and exits non-zero if anything failed.
#
#   sh spec/run.sh [--specs-only] [SPEC_FILE...]
#   --specs-only   skips the C unit tests and the fuzz targets (make tsan
#                  runs its own build of the unit tests)
#   SPEC_FILE...   only these spec files (and no fuzzing)
#   RESTOCK_TEST_BACKENDS="sqlite postgres"  the passes to run (both)
set -u
cd "$(dirname "$0")/.."
out=$(mktemp -d)
pgdir=""
cleanup() {
  [ -n "$pgdir" ] && sh spec/pg.sh stop "$pgdir"
  rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

specs_only=false
if [ "${1:-}" = --specs-only ]; then
  specs_only=true
  shift
fi
specs=${*:-spec}
backends=${RESTOCK_TEST_BACKENDS:-sqlite postgres}
status=0

# A pipe loses the left side's status, so each part leaves it in a file.
if $specs_only; then
  : > "$out/unit"
else
  { ./build/asan/unit_tests 2>&1; echo $? > "$out/unit.rc"; } | tee "$out/unit"
  [ "$(cat "$out/unit.rc")" = 0 ] || status=1
fi

for backend in $backends; do
  start=$(date +%s)
  if [ "$backend" = postgres ]; then
    pgdir=$(mktemp -d /tmp/restockd-pg.XXXXXX)
    if ! uri=$(sh spec/pg.sh start "$pgdir"); then
      echo "postgres: cannot start a throwaway PostgreSQL cluster"
      echo "postgres: 0 passed, 1 failed" > "$out/busted-$backend"
      status=1
      continue
    fi
    export RESTOCK_TEST_BACKEND=postgres RESTOCK_TEST_PG="$uri"
    export RESTOCK_TEST_PG_DIR="$pgdir"
  else
    export RESTOCK_TEST_BACKEND=sqlite
    unset RESTOCK_TEST_PG RESTOCK_TEST_PG_DIR
  fi
  echo "== specs on $backend"
  # shellcheck disable=SC2086
  { lua5.4 /usr/bin/busted -o spec/support/summary.lua $specs 2>&1
    echo $? > "$out/busted.rc"; } | tee "$out/busted-$backend"
  [ "$(cat "$out/busted.rc")" = 0 ] || status=1
  echo "$backend: the specs took $(( $(date +%s) - start )) s"
  if [ -n "$pgdir" ]; then
    sh spec/pg.sh stop "$pgdir"
    pgdir=""
  fi
done

if ! $specs_only && [ "$specs" = spec ]; then
  # Debian's python3 (python3-selenium is installed for it, not for another
  # python3 earlier on the PATH).
  { /usr/bin/python3 spec/browser/run.py 2>&1; echo $? > "$out/browser.rc"; } \
    | tee "$out/browser"
  [ "$(cat "$out/browser.rc")" = 0 ] || status=1
  { sh fuzz/run.sh 2>&1; echo $? > "$out/fuzz.rc"; } | tee "$out/fuzz"
  [ "$(cat "$out/fuzz.rc")" = 0 ] || status=1
fi

# Each part prints "<part>: N passed, N failed" as its last summary line.
sum() { cat "$out"/unit "$out"/busted-* "$out"/browser "$out"/fuzz 2>/dev/null | awk -v col="$1" '/^[a-z]+: [0-9]+ passed, [0-9]+ failed/ { n += $col } END { print n + 0 }'; }
passed=$(sum 2); failed=$(sum 4)
if [ "$status" != 0 ] && [ "$failed" = 0 ]; then
  failed=1
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
