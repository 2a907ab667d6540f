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
	# QEMU's Kemari mode runs on the kemari kernel only (tests/qemu.list).
	*/qemu.list) [ "$VARIANT" = kemari ] && lists+=("$list") ;;
	# So does the replicator: it gains nothing from KASAN (replicator.list).
	*/replicator.list) [ "$VARIANT" = kemari ] && lists+=("$list") ;;
	debug/regression-kemari.list|bisect/regression-kemari.list) ;;
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
		[ -x "$bin" ] || bin=$TOP/tests/qemu/$name
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
	cp "$OUT/bin/kemari-replicator" "$OUT/bin/kemari-replicator-test" "$root/tests/"
fi

# QEMU, its firmware, the libraries it links and the L2 guest: the test
# kernel's own bzImage with a busybox initramfs (tests/qemu/l2-init).
if [ -f "$root/tests/qemu.list" ]; then
	[ -x "$QOUT/qemu-system-x86_64" ] || die "no QEMU build in $QOUT: run 'make qemu'"
	mkdir -p "$root/tests/qemu"
	cp -a "$QOUT/qemu-system-x86_64" "$QOUT/share" "$root/tests/qemu/"
	cp "$OUT/bzImage" "$root/tests/qemu/bzImage"
	ldd "$QOUT/qemu-system-x86_64" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
	l2=$OUT/l2
	rm -rf "$l2"
	mkdir -p "$l2"/{bin,proc,tmp,dev}
	cp /bin/busybox "$l2/bin/busybox"
	for app in sh mount echo dd wc nproc poweroff cat md5sum ifconfig; do
		ln -s busybox "$l2/bin/$app"
	done
	# kemari-qemu-test tcp: the server in L2, the client in this kernel.
	cp "$OUT/bin/kemari-stream" "$l2/bin/"
	cp "$OUT/bin/kemari-stream" "$root/tests/qemu/"
	install -m 0755 "$TOP/tests/qemu/l2-init" "$l2/init"
	(cd "$l2" && find . | cpio -o -H newc --quiet) | gzip -1 > "$root/tests/qemu/l2.gz"
fi

# check runs the Kemari tests, the replicator's, QEMU's Kemari mode and the upstream
# regression set, of those this variant has.  The base runs only the
# regression lists (make base-check).
for m in kemari replicator qemu regression regression-kemari; do
	[ -f "$root/tests/$m.list" ] && cat "$root/tests/$m.list"
done > "$root/tests/check.list"

(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 > "$OUT/initramfs.gz"
