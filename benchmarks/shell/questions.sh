#!/usr/bin/env bash
# The five log questions as the seeds' shell pipelines (grep/awk/sort/uniq), for a JSON-lines
# or a plain-text log.   usage: questions.sh json|text QUESTION FILE [CORRELATION_ID]
#   q1 error types ranked        q2 5xx by endpoint        q3 p50/p95/p99 latency per endpoint
#   q4 all lines of one correlation ID                      q5 requests and 5xx per minute
set -euo pipefail
export LC_ALL=C
here="$(cd "$(dirname "$0")" && pwd)"
fmt="$1" q="$2" f="$3" cid="${4:-}"
exc='[A-Z][A-Za-z0-9_.]*(Error|Exception|Exceeded|Timeout|Failure|Fault|Refused)'
case "$fmt/$q" in
json/q1) grep -F '"level":"ERROR"' "$f" | grep -oE '"error_type":"[^"]*"' | cut -d'"' -f4 \
           | sort | uniq -c | sort -rn ;;
text/q1) grep -F ' ERROR ' "$f" \
           | awk -v re="$exc" '{ if (match($0, re)) print substr($0, RSTART, RLENGTH) }' \
           | sort | uniq -c | sort -rn ;;
json/q2) grep -E '"status":5[0-9][0-9]' "$f" | grep -oE '"method":"[^"]*","route":"[^"]*"' \
           | awk -F'"' '{ print $4, $8 }' | sort | uniq -c | sort -rn ;;
text/q2) grep -F ' HTTP 5' "$f" | awk '$5 == "HTTP" { print $7, $8 }' | sort | uniq -c | sort -rn ;;
json/q3) grep -F '"duration_ms":' "$f" \
           | awk '{ match($0, /"method":"[^"]*"/); m = substr($0, RSTART + 10, RLENGTH - 11)
                    match($0, /"route":"[^"]*"/); r = substr($0, RSTART + 9, RLENGTH - 10)
                    match($0, /"duration_ms":[-0-9.eE+]+/); d = substr($0, RSTART + 14, RLENGTH - 14)
                    print m " " r "\t" d }' \
           | sort -t "$(printf '\t')" -k1,1 -k2,2n | awk -f "$here/percentiles.awk" ;;
text/q3) grep -F ' Duration ' "$f" \
           | awk '$5 == "HTTP" { d = $NF; sub(/ms$/, "", d); print $7 " " $8 "\t" d }' \
           | sort -t "$(printf '\t')" -k1,1 -k2,2n | awk -f "$here/percentiles.awk" ;;
*/q4)    grep -F "$cid" "$f" ;;
json/q5) awk '{ m = substr($0, 8, 16)
                if (match($0, /"status":[0-9]+/)) { s = substr($0, RSTART + 9, RLENGTH - 9) + 0
                  r[m]++; if (s >= 500) e[m]++ } }
              END { for (k in r) printf "%s %d %d\n", k, r[k], e[k] + 0 }' "$f" | sort ;;
text/q5) awk '$5 == "HTTP" { m = substr($1, 1, 16); r[m]++; if ($6 >= 500) e[m]++ }
              END { for (k in r) printf "%s %d %d\n", k, r[k], e[k] + 0 }' "$f" | sort ;;
*) echo "usage: $0 json|text q1..q5 FILE [CID]" >&2; exit 2 ;;
esac
