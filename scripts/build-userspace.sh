#!/bin/bash
# Build the userspace programs against the patched tree's uapi headers.
. "$(dirname "$0")/lib.sh"

make -C "$TOP/replicator" -s CC="ccache gcc" \
	KHDR="$OBJ/usr/include" O="$OUT/bin"
make -C "$TOP/bench" -s CC="ccache gcc" \
	KHDR="$OBJ/usr/include" O="$OUT/bin"
make -C "$TOP/tests/qemu" -s CC="ccache gcc" O="$OUT/bin"
