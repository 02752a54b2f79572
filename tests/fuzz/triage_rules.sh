# triage.py's verdicts (issue 14): a finding that matches a fixed bug's signature is a
# regression and fails; one that matches an open signature is known and passes; a
# libhdf5-internal one passes; a new one in our code fails. Fake harnesses print the
# sanitizer report each case would give.
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
triage="$TESTS_DIR/fuzz/triage.py"
fake() {  # fake NAME REPORT: a harness that prints REPORT and fails, as libFuzzer does
  printf '#!/bin/sh\ncat <<"END"\n%s\nEND\nexit 1\n' "$2" > "$1" && chmod +x "$1"
}
fake regression.sh "==1==ERROR: AddressSanitizer: stack-buffer-overflow on address 0x1
    #0 0x55 in ps_h5_attr_string /work/src/io/h5.c:120:3
SUMMARY: AddressSanitizer: stack-buffer-overflow in ps_h5_attr_string"
fake hdf5.sh "==1==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x1
    #0 0x55 in H5F_addr_decode (/usr/lib/x86_64-linux-gnu/hdf5/openmpi/libhdf5.so.103+0x1)
SUMMARY: AddressSanitizer: heap-buffer-overflow"
fake new.sh "==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x1
    #0 0x55 in ps_guides_read /work/src/io/guides.c:42:3
SUMMARY: AddressSanitizer: heap-use-after-free in ps_guides_read"
touch crash-1
fails=0
expect() {  # expect HARNESS RC WORD
  set +e; out=$("$PYTHON" "$triage" "./$1" crash-1); rc=$?; set -e
  if [[ $rc != "$2" || $out != *": $3"* ]]; then echo "FAIL: $1: exit $rc, '$out' (want exit $2, '$3')"; fails=1
  else echo "ok: $1 -> $out"; fi
}
expect regression.sh 1 "regression:attr-array"
expect hdf5.sh 0 "libhdf5"
expect new.sh 1 "ours"
# an open signature (copy of the table with attr-array open) is known, and passes
sed 's/^attr-array\tfixed/attr-array\topen/' "$TESTS_DIR/fuzz/known/signatures.tsv" > open.tsv
set +e; out=$(PS_FUZZ_SIGNATURES=open.tsv "$PYTHON" "$triage" ./regression.sh crash-1); rc=$?; set -e
if [[ $rc != 0 || $out != *": known:attr-array"* ]]; then echo "FAIL: open signature: exit $rc, '$out'"; fails=1
else echo "ok: open signature -> $out"; fi
exit $fails
