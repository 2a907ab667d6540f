# Shared settings for the Kemari build scripts; sourced, not run.
set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${KEMARI_BUILD:-$TOP/build}
mkdir -p "$BUILD"
BUILD=$(cd "$BUILD" && pwd)

# "kemari" is the patched kernel; "debug" is the same with KASAN and
# lockdep; "bisect" builds a prefix of the series (KEMARI_SERIES_UPTO) in
# a tree of its own; "base" is the unpatched base, built straight from the
# pristine tree (kbuild writes only to $OBJ).
VARIANT=${KEMARI_VARIANT:-kemari}
PRISTINE=$BUILD/pristine
SRC=$BUILD/src
OBJ=$BUILD/obj-$VARIANT
OUT=$BUILD/out-$VARIANT
case "$VARIANT" in
kemari|debug) ;;
# Laid out like src and obj-*, so that ccache (which sees paths relative
# to $BUILD) reuses the objects of the main tree.
bisect) SRC=$BUILD/bisect/src OBJ=$BUILD/bisect/obj OUT=$BUILD/bisect/out ;;
base) SRC=$PRISTINE ;;
*) echo "unknown KEMARI_VARIANT $VARIANT" >&2; exit 1 ;;
esac

JOBS=${KEMARI_JOBS:-$(nproc)}

export CCACHE_DIR=${KEMARI_CCACHE_DIR:-$HOME/.cache/kemari/ccache}
export CCACHE_BASEDIR=$BUILD
export CCACHE_NOHASHDIR=true
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-4G}

log() { printf '[kemari] %s\n' "$*" >&2; }
die() { printf '[kemari] error: %s\n' "$*" >&2; exit 1; }

# The patches of patches/series, in order, as paths.
series_patches() {
	local p
	while read -r p _; do
		case "$p" in ''|'#'*) continue ;; esac
		echo "$TOP/patches/$p"
	done < "$TOP/patches/series"
}

# The upstream files that the given patches change.
patch_touches() {
	sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' /dev/null "$@" | sort -u
}

# The new files (under kernel/) that patch $1 adds: its "Adds:" line.
patch_adds() {
	sed -n 's/^Adds: //p' "$1" | tr ' ' '\n' | sed '/^$/d'
}
