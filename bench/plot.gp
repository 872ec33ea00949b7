# plot.gp - docs/throughput-vs-clients.png from bench/run.sh's curve.dat
# ("idle_clients msgs_per_s" per line; the row for 0 clients is drawn as a
# dashed line, since a log axis has no 0).
#   gnuplot -e "datafile='build/bench/curve.dat'; outfile='x.png'" bench/plot.gp
set terminal pngcairo size 800,500 font ",11"
set output outfile
set title "smtpd: delivered messages/s (16 sessions, 1 KB) vs idle clients held"
set xlabel "idle clients connected"
set ylabel "messages/s delivered (median of runs)"
set logscale x
set xrange [5:20000]
set yrange [0:*]
set grid
set key bottom left
base = system("awk '$1 == 0 { print $2 }' " . datafile)
if (strlen(base) > 0) {
    plot datafile using ($1 > 0 ? $1 : NaN):2 with linespoints lw 2 pt 7 \
             title "smtpd (epoll)", \
         base + 0 with lines dt 2 lc rgb "gray40" title "no idle clients"
} else {
    plot datafile using ($1 > 0 ? $1 : NaN):2 with linespoints lw 2 pt 7 \
             title "smtpd (epoll)"
}
