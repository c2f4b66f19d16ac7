#!/bin/sh
# Counts events of one running process for a fixed window, as CSV on stderr
# (`value,unit,event,...`), which xtask turns into a table.
# Usage: stat.sh PID EVENTS SECONDS   (EVENTS comma-separated)
set -eu
[ $# -eq 3 ] || { echo "usage: $0 PID EVENTS SECONDS" >&2; exit 2; }
exec perf stat -x, -e "$2" -p "$1" -- sleep "$3"
