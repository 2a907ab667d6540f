#!/bin/bash
# Make $SRC = pristine base + patches/series + the files under kernel/.
#
# The patched and overlaid files are first assembled in a staging
# directory; only those that differ from what $SRC holds are copied in.
# Unchanged files keep their mtimes, so kbuild rebuilds only what a
# change really touches.  Re-running is a no-op.
. "$(dirname "$0")/lib.sh"

base=$(cat "$PRISTINE/.sha256" 2>/dev/null) || die "no base tree: run 'make fetch'"
if [ "$(cat "$SRC/.kemari-base" 2>/dev/null)" != "$base" ]; then
	log "creating $SRC from the pristine base"
	# Objects built from an older tree would look newer than its files.
	if [ "$VARIANT" = bisect ]; then
		rm -rf "$SRC" "$OBJ" "$OUT"
		mkdir -p "$(dirname "$SRC")"
	else
		rm -rf "$SRC" "$BUILD"/obj-kemari "$BUILD"/obj-debug
	fi
	cp -a "$PRISTINE" "$SRC.tmp"
	rm -f "$SRC.tmp/.sha256"
	echo "$base" > "$SRC.tmp/.kemari-base"
	mv "$SRC.tmp" "$SRC"
fi

stage=$BUILD/stage
rm -rf "$stage"
mkdir -p "$stage"

mapfile -t series < <(series_patches)

# Every file under kernel/ is added by exactly one patch (its "Adds:" line),
# so that the series can be exported and bisected.
claimed=$(for p in "${series[@]}"; do patch_adds "$p"; done | sort)
present=$(cd "$TOP/kernel" && find . -type f | sed 's|^\./||' | sort)
[ -z "$(echo "$claimed" | uniq -d)" ] || die "a file is added by two patches: $(echo "$claimed" | uniq -d)"
[ "$claimed" = "$present" ] || die "kernel/ and the patches' Adds: lines disagree:
$(diff <(echo "$claimed") <(echo "$present") | grep '^[<>]')"

# KEMARI_SERIES_UPTO=N applies only the first N patches (for bisecting).
if [ -n "${KEMARI_SERIES_UPTO:-}" ]; then
	series=("${series[@]:0:$KEMARI_SERIES_UPTO}")
fi

# Upstream files the series touches, patched from pristine copies.
for f in $(patch_touches "${series[@]}"); do
	mkdir -p "$stage/$(dirname "$f")"
	if [ -f "$PRISTINE/$f" ]; then cp "$PRISTINE/$f" "$stage/$f"; fi
done
for p in "${series[@]}"; do
	patch -d "$stage" -p1 -s -F0 -N --no-backup-if-mismatch < "$p" ||
		die "$(basename "$p") does not apply to the base"
done

# New files, which live in kernel/ at their kernel-tree paths.
for p in "${series[@]}"; do patch_adds "$p"; done | while read -r f; do
	mkdir -p "$stage/$(dirname "$f")"
	cp "$TOP/kernel/$f" "$stage/$f"
done

changed=$(sync_stage "$stage" "$SRC" "$PRISTINE")
log "applied ${#series[@]} patches and the kernel/ overlay ($changed files updated)"
