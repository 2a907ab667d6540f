#!/bin/bash
# Build, as static binaries, the KVM selftests that tests/*.list name,
# against the patched tree's uapi headers.
. "$(dirname "$0")/lib.sh"

kvmst=$SRC/tools/testing/selftests/kvm
targets=()
for name in $(cat "$TOP"/tests/*.list | grep -v '^[[:space:]]*\(#\|$\)' | awk '{print $1}' | sort -u); do
	[ -f "$kvmst/$name.c" ] && targets+=("$OUT/selftests/$name")
done

log "building ${#targets[@]} KVM selftests"
make -C "$kvmst" -j"$JOBS" OUTPUT="$OUT/selftests" CC="ccache gcc" \
	KHDR_INCLUDES="-isystem $OBJ/usr/include" EXTRA_CFLAGS=-static \
	"${targets[@]}" >"$OUT/selftests.log" 2>&1 ||
	{ tail -40 "$OUT/selftests.log"; die "selftests build failed, see $OUT/selftests.log"; }
