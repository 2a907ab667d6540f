#!/bin/bash
# Fetch the pinned QEMU source package (configs/qemu.pin), check both
# tarballs, and extract it once into $QPRISTINE with Debian's own patch
# stack applied.  Re-running with the same pin is a no-op.
. "$(dirname "$0")/lib.sh"
. "$TOP/configs/qemu.pin"

stamp="$QEMU_ORIG_SHA256 $QEMU_DEBIAN_SHA256"
[ "$(cat "$QPRISTINE/.kemari-pin" 2>/dev/null)" = "$stamp" ] && exit 0

dl=$QBUILD/download
mkdir -p "$dl"

have() { # FILE SHA256
	[ -f "$dl/$1" ] && [ "$(sha256sum "$dl/$1" | cut -d' ' -f1)" = "$2" ]
}

if ! have "$QEMU_ORIG" "$QEMU_ORIG_SHA256" || ! have "$QEMU_DEBIAN" "$QEMU_DEBIAN_SHA256"; then
	# apt-get source needs a deb-src entry; a fresh Debian 12 has none.
	if ! grep -rqs '^Types:.*deb-src\|^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		[ "$(id -u)" = 0 ] || die "no deb-src entry in apt's sources: run as root, or add one for bookworm"
		log "adding a deb-src entry for bookworm to apt's sources"
		cat > /etc/apt/sources.list.d/kemari-deb-src.sources <<-SRC
		Types: deb-src
		URIs: http://deb.debian.org/debian
		Suites: bookworm bookworm-updates
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
		SRC
		apt-get update -q
	fi
	log "fetching $QEMU_PACKAGE $QEMU_VERSION"
	(cd "$dl" && apt-get source -q --download-only "$QEMU_PACKAGE=$QEMU_VERSION") ||
		{ [ "$(id -u)" = 0 ] && apt-get update -q &&
		  (cd "$dl" && apt-get source -q --download-only "$QEMU_PACKAGE=$QEMU_VERSION"); } ||
		{ log "the archive no longer has $QEMU_VERSION; trying snapshot.debian.org"
		  for f in "$QEMU_ORIG" "$QEMU_DEBIAN"; do
			  curl -fsSL -o "$dl/$f" "$QEMU_SNAPSHOT/$f" || wget -q -O "$dl/$f" "$QEMU_SNAPSHOT/$f"
		  done; } ||
		die "cannot fetch $QEMU_PACKAGE $QEMU_VERSION"
	for f in "$QEMU_ORIG:$QEMU_ORIG_SHA256" "$QEMU_DEBIAN:$QEMU_DEBIAN_SHA256"; do
		have "${f%%:*}" "${f#*:}" ||
			die "$dl/${f%%:*} does not match configs/qemu.pin (sha256 ${f#*:})"
	done
fi

log "extracting QEMU $QEMU_VERSION and applying Debian's patches"
rm -rf "$QPRISTINE" "$QPRISTINE.tmp" "$QSRC" "$QOBJ"
mkdir -p "$QPRISTINE.tmp"
tar -C "$QPRISTINE.tmp" --strip-components=1 -xJf "$dl/$QEMU_ORIG"
tar -C "$QPRISTINE.tmp" -xJf "$dl/$QEMU_DEBIAN"
while read -r p _; do
	case "$p" in ''|'#'*) continue ;; esac
	patch -d "$QPRISTINE.tmp" -p1 -s -N --no-backup-if-mismatch \
		< "$QPRISTINE.tmp/debian/patches/$p" || die "Debian's $p does not apply"
done < "$QPRISTINE.tmp/debian/patches/series"
echo "$stamp" > "$QPRISTINE.tmp/.kemari-pin"
mv "$QPRISTINE.tmp" "$QPRISTINE"
