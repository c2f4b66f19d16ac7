#!/bin/sh
# Prints the samples of a perf.data file with their stacks, in the text format
# inferno's perf collapser reads.
# Usage: script.sh PERF_DATA
set -eu
[ $# -eq 1 ] || { echo "usage: $0 PERF_DATA" >&2; exit 2; }
exec perf script --force -i "$1"
