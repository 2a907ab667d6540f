#!/bin/bash
# Install the Debian packages the pipeline needs, only if any is missing.
. "$(dirname "$0")/lib.sh"
. "$TOP/configs/base.pin"

pkgs=(
	"$PACKAGE" build-essential flex bison bc cpio kmod xz-utils
	libelf-dev libssl-dev ccache python3 python3-docutils git patch diffutils
	qemu-system-x86 busybox-static libnl-3-dev libnl-route-3-dev
	# The replicator's fuzzers (scripts/run-fuzz.sh): libFuzzer, sanitizers.
	clang libclang-rt-14-dev
	# The QEMU side (scripts/build-qemu.sh): Debian's tarball has no meson;
	# libfdt is mandatory for x86_64 in 7.2; gnutls for TLS on the link.
	meson ninja-build pkg-config libglib2.0-dev libpixman-1-dev libfdt-dev
	libgnutls28-dev seabios ipxe-qemu
)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing+=("$p")
done
# The base at another version (the machine's image came with a newer one,
# say) is installed again at the pinned one.
if [ "$(dpkg-query -W -f='${Version}' "$PACKAGE" 2>/dev/null)" != "$VERSION" ] &&
	! printf '%s\n' "${missing[@]}" | grep -qx "$PACKAGE"; then
	missing+=("$PACKAGE")
fi
[ ${#missing[@]} -eq 0 ] && exit 0

[ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]}; run as root or install them"
log "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# Prefer the pinned base version; fall back to what the archive has, and
# let fetch.sh say whether that is acceptable.
if printf '%s\n' "${missing[@]}" | grep -qx "$PACKAGE"; then
	apt-get install -y -q --no-install-recommends --allow-downgrades "$PACKAGE=$VERSION" ||
		apt-get install -y -q --no-install-recommends "$PACKAGE"
fi
rest=()
for p in "${missing[@]}"; do
	[ "$p" = "$PACKAGE" ] || rest+=("$p")
done
[ ${#rest[@]} -eq 0 ] || apt-get install -y -q --no-install-recommends "${rest[@]}"
