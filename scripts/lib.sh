# Shared settings for the Kemari build scripts; sourced, not run.
set -euo pipefail
# A failure inside $(...) fails the script too (sync_stage's callers).
shopt -s inherit_errexit

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

# The QEMU side: Debian's source package with its patches (qpristine),
# plus patches/qemu/series and the files under qemu/ (qsrc), built out of
# tree (qobj); the binary and its firmware are staged in qout.
QBUILD=$BUILD/qemu
QPRISTINE=$QBUILD/pristine
QSRC=$QBUILD/src
QOBJ=$QBUILD/obj
QOUT=$QBUILD/out

JOBS=${KEMARI_JOBS:-$(nproc)}

export CCACHE_DIR=${KEMARI_CCACHE_DIR:-$HOME/.cache/kemari/ccache}
export CCACHE_BASEDIR=$BUILD
export CCACHE_NOHASHDIR=true
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-4G}

log() { printf '[kemari] %s\n' "$*" >&2; }
die() { printf '[kemari] error: %s\n' "$*" >&2; exit 1; }

# The patches of DIR/series (default patches/, the kernel's), in order, as
# paths.
series_patches() {
	local dir=${1:-$TOP/patches} p
	while read -r p _; do
		case "$p" in ''|'#'*) continue ;; esac
		echo "$dir/$p"
	done < "$dir/series"
}

# The upstream files that the given patches change.
patch_touches() {
	sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' /dev/null "$@" | sort -u
}

# The new files (under kernel/) that patch $1 adds: its "Adds:" line.
patch_adds() {
	sed -n 's/^Adds: //p' "$1" | tr ' ' '\n' | sed '/^$/d'
}

# sync_stage STAGE SRC PRISTINE: copy into SRC the files of STAGE that
# differ from what SRC holds, and put back from PRISTINE (or delete) the
# files that an earlier run changed and this one does not.  Unchanged
# files keep their mtimes, so the build redoes only what a change
# touches.  Prints how many files it updated.
sync_stage() {
	local stage=$1 src=$2 pristine=$3 manifest=$2/.kemari-files f changed=0
	(cd "$stage" && find . -type f | sed 's|^\./||' | sort) > "$manifest.new"
	if [ -f "$manifest" ]; then
		comm -23 "$manifest" "$manifest.new" | while read -r f; do
			log "restoring $f"
			if [ -f "$pristine/$f" ]; then cp "$pristine/$f" "$src/$f"; else rm -f "$src/$f"; fi
		done
	fi
	while read -r f; do
		if ! cmp -s "$stage/$f" "$src/$f"; then
			mkdir -p "$src/$(dirname "$f")"
			cp "$stage/$f" "$src/$f"
			changed=$((changed + 1))
		fi
	done < "$manifest.new"
	mv "$manifest.new" "$manifest"
	echo "$changed"
}
