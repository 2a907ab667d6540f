#!/bin/bash
# Boot the test kernel in mode $1 and report the results from its log.
. "$(dirname "$0")/lib.sh"

mode=${1:?usage: run-tests.sh MODE}
if [ -n "${KEMARI_VERBOSE:-}" ]; then
	"$TOP/scripts/boot.sh" "$mode"
else
	"$TOP/scripts/boot.sh" "$mode" >/dev/null
fi
log "results of $VARIANT/$mode (full log: $OUT/$mode.log):"
"$TOP/scripts/report.py" "$OUT/$mode.log"
