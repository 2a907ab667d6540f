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

# The userspace side follows kernel style too.  Ignored: the kernel-only
# attribute macros, argv arrays (they cannot be const), and function
# names that happen to appear in strings.
out=$(for f in "$TOP"/replicator/*.[ch] "$TOP"/replicator/guest/*.[ch] \
		"$TOP"/replicator/test/*.[ch] "$TOP"/bench/*.[ch] "$TOP"/tests/qemu/*.c; do
	"$PRISTINE/scripts/checkpatch.pl" --no-tree -f --terse --show-types \
		--ignore SPDX_LICENSE_TAG,NEW_TYPEDEFS,STATIC_CONST_CHAR_ARRAY,EMBEDDED_FUNCTION_NAME,PREFER_DEFINED_ATTRIBUTE_MACRO \
		"$f" | grep -v '^total: ' || true
done)
if printf '%s\n' "$out" | grep -q 'ERROR:'; then
	printf '%s\n' "$out"
	die "checkpatch.pl found errors in replicator/ or bench/"
fi
log "userspace: $(printf '%s\n' "$out" | grep -c 'WARNING:' || true) checkpatch warnings in replicator/ and bench/"

# The QEMU side follows QEMU's style, checked by QEMU's own checkpatch.pl:
# each patch of patches/qemu/series and each file under qemu/.
qcp=$QPRISTINE/scripts/checkpatch.pl
out=$(for f in "$TOP"/patches/qemu/*.patch; do "$qcp" --no-tree --terse "$f" 2>&1 || true; done
      find "$TOP/qemu" -name '*.[ch]' | sort | while read -r f; do
	      "$qcp" --no-tree --terse -f "$f" 2>&1 || true
      done)
if printf '%s\n' "$out" | grep -q 'ERROR:'; then
	printf '%s\n' "$out"
	die "QEMU's checkpatch.pl found errors in patches/qemu/ or qemu/"
fi
log "qemu: $(printf '%s\n' "$out" | grep -c 'WARNING:' || true) checkpatch warnings in patches/qemu/ and qemu/"
