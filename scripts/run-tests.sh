#!/bin/bash
# Boot the test kernel of each given variant (default: $KEMARI_VARIANT) in
# mode $1 and report the results of all the boots together.
. "$(dirname "$0")/lib.sh"

mode=${1:?usage: run-tests.sh MODE [VARIANT...]}
shift
[ $# -gt 0 ] || set -- "$VARIANT"

logs=()
for v in "$@"; do
	if [ -n "${KEMARI_VERBOSE:-}" ]; then
		KEMARI_VARIANT=$v "$TOP/scripts/boot.sh" "$mode"
	else
		KEMARI_VARIANT=$v "$TOP/scripts/boot.sh" "$mode" >/dev/null
	fi
	logs+=("$BUILD/out-$v/$mode.log")
done
log "results of $mode on $* (full logs: ${logs[*]}):"
"$TOP/scripts/report.py" "${logs[@]}"
