#!/bin/bash
# make check: boot each kernel variant in mode "check" (the Kemari tests and
# the upstream regression set) and report all of them together.  The kemari
# variant is built with KVM_WERROR; the debug variant runs the same tests
# under KASAN, lockdep and DEBUG_ATOMIC_SLEEP.
. "$(dirname "$0")/lib.sh"

variants=${KEMARI_CHECK_VARIANTS:-kemari debug}
logs=()
for v in $variants; do
	KEMARI_VARIANT=$v "$TOP/scripts/boot.sh" check >/dev/null
	logs+=("$BUILD/out-$v/check.log")
done
log "results (full logs: ${logs[*]}):"
"$TOP/scripts/report.py" "${logs[@]}"
