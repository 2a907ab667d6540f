#!/bin/bash
# Static checks that need no kernel build: the exported series must
# git-am onto the base with no checkpatch ERROR, and kemari.rst must be
# valid reStructuredText.
. "$(dirname "$0")/lib.sh"

"$TOP/scripts/export-series.sh" >/dev/null
if grep -q 'ERROR:' "$BUILD/series/checkpatch.txt"; then
	grep 'ERROR:' "$BUILD/series/checkpatch.txt"
	die "checkpatch.pl found errors in the series"
fi
log "series: $(grep -c 'WARNING:' "$BUILD/series/checkpatch.txt") checkpatch warnings (see build/series/checkpatch.txt)"

/usr/bin/python3 - "$TOP/kernel/Documentation/virt/kvm/kemari.rst" <<'PY' || die "kemari.rst is not valid reStructuredText"
import sys
import docutils.core
import docutils.utils

with open(sys.argv[1]) as f:
    text = f.read()
try:
    docutils.core.publish_doctree(text, source_path=sys.argv[1],
                                  settings_overrides={'halt_level': 2,
                                                      'report_level': 2})
except docutils.utils.SystemMessage as e:
    print(e, file=sys.stderr)
    sys.exit(1)
PY
log "docs: kemari.rst parses cleanly"

"$TOP/scripts/vendor-uapi.sh" --check
