# Helpers for CLI test scripts: source this, call the checks, end with `summary`.
# Each check prints "ok <what>", "FAIL <what>: <why>" or, for a check that cannot run on this
# machine (never for a missing project file), "skip <what>: <why>", counted as skipped.
MK=${MK_BUILD:-build}/moekit
FIX=tests/fixtures
_pass=0; _fail=0; _skip=0
_name=$(basename "${BASH_SOURCE[1]:-$0}" .sh)
TMPD=$(mktemp -d); trap 'rm -rf "$TMPD"' EXIT
ok()   { _pass=$((_pass + 1)); echo "ok   $1"; }
bad()  { _fail=$((_fail + 1)); echo "FAIL $1: $2"; }
skip() { _skip=$((_skip + 1)); echo "skip $1: $2"; }

# expect_error WHAT REGEX CMD...: the command must exit with status 1..127 (no crash, no signal),
# print nothing but one line on stderr that matches REGEX (extended), and no sanitizer report.
expect_error() {
  local what=$1 re=$2; shift 2
  local err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  if [ "$rc" -eq 0 ]; then bad "$what" "exit 0, expected an error"; return; fi
  if [ "$rc" -ge 128 ]; then bad "$what" "crashed (exit $rc): $err"; return; fi
  if grep -q -E 'Sanitizer|runtime error' <<<"$err"; then bad "$what" "sanitizer: $err"; return; fi
  local n; n=$(printf '%s\n' "$err" | grep -c .)
  if [ "$n" -ne 1 ]; then bad "$what" "expected one line on stderr, got $n: $err"; return; fi
  if ! grep -q -E -- "$re" <<<"$err"; then bad "$what" "message '$err' does not match /$re/"; return; fi
  ok "$what"
}

# expect_ok WHAT CMD...: exit 0.
expect_ok() {
  local what=$1; shift
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -ne 0 ]; then bad "$what" "exit $rc: $(tail -n 3 <<<"$out")"; return 1; fi
  ok "$what"
}

summary() { echo "$_name: $_pass passed, $_fail failed, $_skip skipped"; [ "$_fail" -eq 0 ]; }

# data PATH: the unpacked test data file or folder PATH (tests/data, relative), e.g.
# "$(data tokenizers/llama2)".
data() { echo "${MK_TESTDATA:-build/testdata}/$1"; }
