#!/bin/bash
# Make $QSRC = Debian's QEMU (qemu-fetch.sh) + patches/qemu/series + the
# files under qemu/ + the Kemari uapi header, vendored from the kernel
# overlay into QEMU's linux-headers/ as QEMU's update-linux-headers.sh
# would.  Only files that differ are copied (sync_stage), so a change to
# one of our files rebuilds only what includes it.
. "$(dirname "$0")/lib.sh"

pin=$(cat "$QPRISTINE/.kemari-pin" 2>/dev/null) || die "no QEMU tree: run scripts/qemu-fetch.sh"
if [ "$(cat "$QSRC/.kemari-base" 2>/dev/null)" != "$pin" ]; then
	log "creating $QSRC from Debian's QEMU"
	rm -rf "$QSRC" "$QSRC.tmp" "$QOBJ"
	cp -a "$QPRISTINE" "$QSRC.tmp"
	echo "$pin" > "$QSRC.tmp/.kemari-base"
	mv "$QSRC.tmp" "$QSRC"
fi

stage=$QBUILD/stage
rm -rf "$stage"
mkdir -p "$stage"

mapfile -t series < <(series_patches "$TOP/patches/qemu")
for f in $(patch_touches "${series[@]}"); do
	mkdir -p "$stage/$(dirname "$f")"
	if [ -f "$QPRISTINE/$f" ]; then cp "$QPRISTINE/$f" "$stage/$f"; fi
done
for p in "${series[@]}"; do
	patch -d "$stage" -p1 -s -F0 -N --no-backup-if-mismatch < "$p" ||
		die "patches/qemu/$(basename "$p") does not apply to QEMU"
done

(cd "$TOP/qemu" && find . -type f ! -path ./README.md | sed 's|^\./||') | while read -r f; do
	[ -e "$QPRISTINE/$f" ] && die "qemu/$f exists upstream: change it with a patch"
	mkdir -p "$stage/$(dirname "$f")"
	cp "$TOP/qemu/$f" "$stage/$f"
done
mkdir -p "$stage/linux-headers/linux"
cp "$TOP/kernel/include/uapi/linux/kemari.h" "$stage/linux-headers/linux/kemari.h"

changed=$(sync_stage "$stage" "$QSRC" "$QPRISTINE")
log "applied ${#series[@]} QEMU patches and the qemu/ overlay ($changed files updated)"
