#!/bin/bash
# Build the kernel at every prefix of the series, in a tree of its own
# (build/bisect/), so that each patch is known to build on its own.
# ccache and kbuild make all but the first build incremental.
. "$(dirname "$0")/lib.sh"

n=$(series_patches | wc -l)
for k in $(seq 1 "$n"); do
	log "bisect: building patches 1..$k of $n"
	KEMARI_VARIANT=bisect KEMARI_SERIES_UPTO=$k "$TOP/scripts/apply.sh"
	KEMARI_VARIANT=bisect "$TOP/scripts/build-kernel.sh" >/dev/null ||
		die "the series does not build at patch $k: $(series_patches | sed -n "${k}p")"
done
log "bisect: all $n prefixes of the series build"
