#!/bin/bash
# Pack busybox, the kernel's modules, the test binaries and the test lists
# into $OUT/initramfs.gz.
. "$(dirname "$0")/lib.sh"

root=$OUT/initramfs
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,tests,lib}

cp /bin/busybox "$root/bin/busybox"
for app in $("$root/bin/busybox" --list); do
	[ -e "$root/bin/$app" ] || ln -s busybox "$root/bin/$app"
done
ln -s ../bin/busybox "$root/sbin/modprobe"
cp -a "$OUT/modroot/lib/modules" "$root/lib/"
install -m 0755 "$TOP/scripts/guest-init.sh" "$root/init"

# Every binary the lists name, from the selftests and the userspace tools.
# The base kernel has no Kemari: it runs only the lists of upstream tests.
lists=()
for list in "$TOP"/tests/*.list; do
	case "$VARIANT/$(basename "$list")" in
	base/kemari.list|base/demo.list|base/bench.list|base/soak.list) ;;
	# It borrows the kemari kernel's kemari_test (make soak-base builds it).
	base/soak-base.list)
		[ -x "$BUILD/out-kemari/selftests/kemari_test" ] && lists+=("$list") ;;
	*) lists+=("$list") ;;
	esac
done
for list in "${lists[@]}"; do
	mode=$(basename "$list" .list)
	grep -v '^[[:space:]]*\(#\|$\)' "$list" > "$root/tests/$mode.list" || true
	while read -r name rest; do
		case "$name" in '*'*) name=${rest%% *} ;; esac
		[ -e "$root/tests/$name" ] && continue
		bin=$OUT/selftests/$name
		[ -x "$bin" ] || bin=$OUT/bin/$name
		# soak-base.list: the base runs the kemari kernel's static binary.
		[ -x "$bin" ] || [ "$VARIANT" != base ] ||
			bin=$BUILD/out-kemari/selftests/$name
		[ -x "$bin" ] || die "$list names $name, which was not built"
		mkdir -p "$root/tests/$(dirname "$name")"
		cp "$bin" "$root/tests/$name"
	done < "$root/tests/$mode.list"
done

# Programs that the tests start rather than the lists name.
if [ "$VARIANT" != base ]; then
	cp "$OUT/bin/kemari-replicator" "$root/tests/"
fi

# check runs the Kemari tests and then the upstream regression set.
cat "$root"/tests/{kemari,regression}.list > "$root/tests/check.list" 2>/dev/null ||
	cp "$root/tests/regression.list" "$root/tests/check.list"

(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 > "$OUT/initramfs.gz"
