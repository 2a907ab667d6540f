#!/bin/bash
# Build qemu-system-x86_64 from $QSRC out of tree in $QOBJ, with KVM and
# TCG, with ccache, and stage it with its firmware in $QOUT.  One binary,
# two roles: QEMU's Kemari mode in the kemari kernel's initramfs (KVM), and
# the emulator that scripts/boot.sh boots every test kernel on (TCG, with
# the SVM fix of patches/qemu 0007).
# configure runs again only when its arguments change; ninja then rebuilds
# only what a changed file touches.
. "$(dirname "$0")/lib.sh"

args=(
	--target-list=x86_64-softmmu --without-default-features
	--enable-kvm --enable-tcg --enable-replication --enable-gnutls
	--enable-fdt=system --disable-docs --disable-tools --disable-werror
	"--cc=ccache gcc" "--host-cc=gcc" "--extra-cflags=-g0"
)
mkdir -p "$QOBJ"
if [ "$(cat "$QOBJ/.kemari-configure" 2>/dev/null)" != "${args[*]}" ] ||
   [ ! -f "$QOBJ/build.ninja" ]; then
	log "configuring QEMU in $QOBJ"
	(cd "$QOBJ" && "$QSRC/configure" "${args[@]}" >configure.log 2>&1) ||
		{ tail -20 "$QOBJ/configure.log" >&2; die "QEMU's configure failed (see $QOBJ/configure.log)"; }
	echo "${args[*]}" > "$QOBJ/.kemari-configure"
fi
log "building qemu-system-x86_64 in $QOBJ"
ninja -C "$QOBJ" -j"$JOBS" qemu-system-x86_64 >"$QOBJ/ninja.log" 2>&1 ||
	{ grep -B2 -A12 -m3 'error' "$QOBJ/ninja.log" >&2; die "the QEMU build failed (see $QOBJ/ninja.log)"; }

# The firmware a PC with virtio needs, from Debian's packages (the dfsg
# tarball carries none): SeaBIOS, the linuxboot option ROM for -kernel,
# kvmvapic, and the virtio-net boot ROM, without which QEMU refuses to start.
rm -rf "$QOUT"
mkdir -p "$QOUT/share"
cp "$QOBJ/qemu-system-x86_64" "$QOUT/"
for f in /usr/share/seabios/bios-256k.bin /usr/share/qemu/linuxboot_dma.bin \
	 /usr/share/qemu/kvmvapic.bin /usr/lib/ipxe/qemu/efi-virtio.rom; do
	cp "$f" "$QOUT/share/"
done
