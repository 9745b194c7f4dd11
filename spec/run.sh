#!/bin/sh
# Runs the whole suite: the C unit tests, the busted specs against the
# sanitizer build of restockd, the browser tests of the widget and the
# console (spec/browser/run.py, headless Chromium), then each fuzz target
# for FUZZ_SECONDS (fuzz/run.sh; each target counts as one test). Ends with
# one line "N passed, N failed" that sums them all, and exits non-zero if
# anything failed.
set -u
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# A pipe loses the left side's status, so each part leaves it in a file.
# --specs-only skips the C unit tests (make tsan runs its own build of them).
if [ "${1:-}" = --specs-only ]; then
  echo 0 > "$out/unit.rc"; : > "$out/unit"
else
  { ./build/asan/unit_tests 2>&1; echo $? > "$out/unit.rc"; } | tee "$out/unit"
fi
{ lua5.4 /usr/bin/busted -o spec/support/summary.lua spec 2>&1
  echo $? > "$out/busted.rc"; } | tee "$out/busted"
# Debian's python3 (python3-selenium is installed for it, not for another
# python3 earlier on the PATH).
{ /usr/bin/python3 spec/browser/run.py 2>&1; echo $? > "$out/browser.rc"; } \
  | tee "$out/browser"
{ sh fuzz/run.sh 2>&1; echo $? > "$out/fuzz.rc"; } | tee "$out/fuzz"
unit_rc=$(cat "$out/unit.rc"); busted_rc=$(cat "$out/busted.rc")
fuzz_rc=$(cat "$out/fuzz.rc"); browser_rc=$(cat "$out/browser.rc")

# Each part prints "<part>: N passed, N failed" as its last summary line.
sum() { awk -v col="$1" '/^[a-z]+: [0-9]+ passed, [0-9]+ failed/ { n += $col } END { print n + 0 }' "$out/unit" "$out/busted" "$out/browser" "$out/fuzz"; }
passed=$(sum 2); failed=$(sum 4)
if [ "$unit_rc" != 0 ] || [ "$busted_rc" != 0 ] || [ "$fuzz_rc" != 0 ] ||
   [ "$browser_rc" != 0 ]; then
  [ "$failed" = 0 ] && failed=1
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
