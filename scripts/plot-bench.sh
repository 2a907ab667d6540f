#!/bin/bash
# After "make bench": pull the CSV lines the benchmarks printed out of the
# boot log into build/bench/*.csv and draw the pause-time distributions
# of kemari-replicator-bench (ring against bitmap harvesting) as a PNG.
. "$(dirname "$0")/lib.sh"

logf=$OUT/bench.log
dst=$BUILD/bench
[ -f "$logf" ] || die "no $logf: run make bench first"
mkdir -p "$dst"

grep -a '^CSV,' "$logf" | tr -d '\r' > "$dst/all.csv" || true
grep '^CSV,checkpoint,' "$dst/all.csv" | cut -d, -f3- \
	> "$dst/replicator-checkpoints.csv" || true
grep '^CSV,pause,' "$dst/all.csv" | cut -d, -f3- > "$dst/replicator-pause.csv" || true
grep '^CSV,slowdown,' "$dst/all.csv" | cut -d, -f3- > "$dst/replicator-slowdown.csv" || true
grep '^CSV,dirty,' "$dst/all.csv" | cut -d, -f3- > "$dst/dirty-harvest.csv" || true
[ -s "$dst/replicator-pause.csv" ] || die "no kemari-replicator-bench figures in $logf"

if ! command -v gnuplot >/dev/null; then
	[ "$(id -u)" = 0 ] || die "gnuplot is missing; install gnuplot-nox"
	apt-get install -y -q --no-install-recommends gnuplot-nox >/dev/null
fi

# replicator-pause.csv: dirty pages, percentile, ring ms, bitmap ms
gnuplot <<GP
set terminal pngcairo size 900,560
set output "$dst/replicator-pause.png"
set datafile separator ","
set title "kemari-replicator: pause per checkpoint (same boot)"
set xlabel "pause (ms)"
set ylabel "percentile"
set logscale x
set key bottom right
plot for [d in "10 100 1000"] "$dst/replicator-pause.csv" \
	using (\$1 == d ? \$3 : 1/0):2 with linespoints title "ring, ".d." pages", \
     for [d in "10 100 1000"] "$dst/replicator-pause.csv" \
	using (\$1 == d ? \$4 : 1/0):2 with linespoints dashtype 2 title "bitmap, ".d." pages"
GP
# dirty-harvest.csv: GiB, dirty pages, ring us, bitmap us (kemari-dirty-bench)
if [ -s "$dst/dirty-harvest.csv" ]; then
	gnuplot <<GP
set terminal pngcairo size 900,560
set output "$dst/dirty-harvest.png"
set datafile separator ","
set title "harvest and re-protect one checkpoint: bitmap time / ring time (same boot)"
set xlabel "dirty pages"
set ylabel "bitmap / ring (above 1: the ring wins)"
set logscale xy
set key top right
plot for [g in "1 4 16"] "$dst/dirty-harvest.csv" \
	using (\$1 == g ? \$2 : 1/0):(\$4 / \$3) with linespoints title g." GiB guest", \
     1 with lines dashtype 2 title "break-even"
GP
fi
log "figures in $dst: replicator-checkpoints.csv, replicator-pause.csv/.png, replicator-slowdown.csv, dirty-harvest.csv/.png"
