#!/bin/bash
# Copy the Kemari uapi header from the kernel overlay into replicator/,
# which builds against this copy so that it can be read and reused on its
# own.  "--check" only says whether the copy is current (make lint).
. "$(dirname "$0")/lib.sh"

src=$TOP/kernel/include/uapi/linux/kemari.h
dst=$TOP/replicator/include/linux/kemari.h

if [ "${1:-}" = --check ]; then
	cmp -s "$src" "$dst" ||
		die "replicator/include/linux/kemari.h is stale: run scripts/vendor-uapi.sh"
	log "replicator: the vendored uapi header is current"
	exit 0
fi
mkdir -p "$(dirname "$dst")"
cp "$src" "$dst"
log "vendored $src into replicator/"
