# p50/p95/p99 per key from "KEY<TAB>VALUE" lines sorted by key then value (numerically);
# linear interpolation between closest ranks, as numpy.quantile and pandas' quantile do.
BEGIN { FS = "\t"; key = "" }
function flush(   i, q, h, lo, f, x, out) {
    if (n == 0) return
    out = key "\t" n
    for (i = 1; i <= 3; i++) {
        q = (i == 1) ? 0.5 : (i == 2) ? 0.95 : 0.99
        h = (n - 1) * q; lo = int(h); f = h - lo
        x = v[lo]; if (lo + 1 < n) x = x + (v[lo + 1] - v[lo]) * f
        out = out "\t" sprintf("%.3f", x)
    }
    print out "\t" sprintf("%.3f", v[n - 1])
}
$1 != key { flush(); key = $1; n = 0 }
{ v[n++] = $2 + 0 }
END { flush() }
