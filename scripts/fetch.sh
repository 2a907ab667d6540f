#!/bin/bash
# Check the base tarball against configs/base.pin and extract it once.
. "$(dirname "$0")/lib.sh"
. "$TOP/configs/base.pin"

[ -f "$TARBALL" ] || die "$TARBALL not found: run 'make deps' (apt-get install $PACKAGE)"

sum=$(sha256sum "$TARBALL" | cut -d' ' -f1)
if [ "$sum" != "$SHA256" ]; then
	have=$(dpkg-query -W -f='${Version}' "$PACKAGE" 2>/dev/null || echo unknown)
	if [ "${KEMARI_BASE_OVERRIDE:-0}" != 1 ]; then
		die "$TARBALL is $PACKAGE $have (sha256 $sum), but the pinned base is $VERSION (sha256 $SHA256).
  To build on it anyway, run with KEMARI_BASE_OVERRIDE=1; if the series applies and
  'make check' passes, update configs/base.pin to the new version and sha256."
	fi
	log "warning: building on unpinned base $PACKAGE $have (KEMARI_BASE_OVERRIDE=1)"
fi

if [ "$(cat "$PRISTINE/.sha256" 2>/dev/null)" = "$sum" ]; then
	exit 0
fi

log "extracting $TARBALL"
rm -rf "$PRISTINE" "$PRISTINE.tmp" "$BUILD"/src "$BUILD"/bisect "$BUILD"/obj-*
mkdir -p "$PRISTINE.tmp"
tar -C "$PRISTINE.tmp" --strip-components=1 -xf "$TARBALL"
echo "$sum" > "$PRISTINE.tmp/.sha256"
mv "$PRISTINE.tmp" "$PRISTINE"
