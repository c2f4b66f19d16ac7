#!/bin/sh
# Samples one running process with frame-pointer call graphs.
# Usage: record.sh PID EVENT OUTPUT SECONDS
# EVENT is `cycles` where the CPU has hardware counters, else `cpu-clock` (xtask
# decides). Frame-pointer unwinding (not DWARF) keeps perf.data small and `perf script`
# fast; the profiled binaries are built with frame pointers for it.
set -eu
[ $# -eq 4 ] || { echo "usage: $0 PID EVENT OUTPUT SECONDS" >&2; exit 2; }
pid=$1 event=$2 out=$3 seconds=$4
# 999 Hz rather than 1000 keeps sampling out of step with millisecond timers.
exec perf record --quiet -g --call-graph fp -F 999 -e "$event" -p "$pid" -o "$out" -- sleep "$seconds"
