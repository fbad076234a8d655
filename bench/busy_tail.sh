#!/usr/bin/env bash
# One client's latency with the machine busy: a second cluster under load and/or a browser
# showing a page beside the measured cluster (bench/RESULTS.md, issue 16, "busy machine").
#
#   bench/busy_tail.sh BIN LOAD_CLIENTS PAGE     e.g. bench/busy_tail.sh target/release/consenso 16 yes
#
# LOAD_CLIENTS: clients writing to the second cluster (0: it idles). PAGE: yes to open the page of
# the measured cluster in headless Chromium (Debian's `chromium`), no otherwise. Prints, for 3
# runs of 8 s: writes/s, p50, p99 (ms) and p99/p50. Ports 7700 and 7800; run from the repository.
set -u
bin=${1:?binary}; load=${2:-16}; page=${3:-yes}
export CONSENSO_TOKEN=busy
dir=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
"$bin" cluster --nodes 3 --port 7700 --data-dir "$dir/a" --token busy --web-dir dist >/dev/null 2>&1 &
"$bin" cluster --nodes 3 --port 7800 --data-dir "$dir/b" --token busy >/dev/null 2>&1 &
for port in 7700 7800; do
  for _ in $(seq 1 100); do "$bin" client --proxy 127.0.0.1:$port put warm up >/dev/null 2>&1 && break; sleep 0.2; done
done
if [ "$page" = yes ]; then
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
    --disable-sync --no-first-run --user-data-dir="$dir/chrome" --remote-debugging-port=9333 \
    "http://127.0.0.1:7700/?token=busy" >/dev/null 2>&1 &
  sleep 5
fi
if [ "$load" -gt 0 ]; then
  timeout 90 "$bin" bench --proxy 127.0.0.1:7800 --clients "$load" --duration 40 --no-floor >/dev/null 2>&1 &
  sleep 3
fi
for _ in 1 2 3; do
  "$bin" bench --proxy 127.0.0.1:7700 --clients 1 --duration 8 --no-floor --json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin); l = d["write_latency_ms"]
print("%.0f writes/s  p50 %.2f  p99 %.2f  p99/p50 %.1f" % (d["writes_per_s"], l["p50"], l["p99"], l["p99"] / l["p50"]))'
done
