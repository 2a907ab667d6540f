#!/bin/bash
# Configure and build the patched kernel out of tree in $OBJ, with its
# sanitised uapi headers in $OBJ/usr/include, and install its modules into
# $OUT for the initramfs.
. "$(dirname "$0")/lib.sh"

frags=("$TOP/configs/kemari.config")
[ "$VARIANT" = debug ] && frags+=("$TOP/configs/debug.config")

mkdir -p "$OBJ" "$OUT"
cat "${frags[@]}" > "$OUT/config.fragment"
# The base, and a prefix of the series, lack the options later patches add.
if [ "$VARIANT" = base ] || [ "$VARIANT" = bisect ]; then
	grep -rhoxE --include='Kconfig*' '(menu)?config [A-Za-z0-9_]+' "$SRC" |
		awk 'NR == FNR { defined["CONFIG_" $2] = 1; next }
		     !/^CONFIG_/ || substr($0, 1, index($0, "=") - 1) in defined' \
		- "$OUT/config.fragment" > "$OUT/config.defined"
	mv "$OUT/config.defined" "$OUT/config.fragment"
fi

kmake() { make -C "$SRC" O="$OBJ" -j"$JOBS" CC="ccache gcc" "$@"; }

# allnoconfig plus the fragment; an unchanged result leaves auto.conf and
# so every object alone.
kmake -s allnoconfig KCONFIG_ALLCONFIG="$OUT/config.fragment" >/dev/null
# Each option must end up as the fragment asks (the last line for an
# option wins, as in kconfig); one that does not lacks a dependency.
bad=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=n)
		# Off, or not offered at all (an unmet dependency).
		grep -q "^${line%=n}=" "$OBJ/.config" || continue
		want="# ${line%=n} is not set" ;;
	*) want=$line ;;
	esac
	grep -qxF "$want" "$OBJ/.config" || { log "config: $line did not stick"; bad=1; }
done < <(grep '^CONFIG_' "$OUT/config.fragment" | tac | sort -t= -k1,1 -u)
[ "$bad" = 0 ] || die "the config fragment does not apply (missing dependency?)"

log "building $VARIANT kernel in $OBJ"
kmake bzImage modules headers

rm -rf "$OUT/modroot"
kmake -s modules_install INSTALL_MOD_PATH="$OUT/modroot" INSTALL_MOD_STRIP=1 >/dev/null
cp "$OBJ/arch/x86/boot/bzImage" "$OUT/bzImage"
