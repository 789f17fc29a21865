#!/usr/bin/env bash
# Builds items one at a time and hands each to the reviewer by channel name; starts the next
# item only once the reviewer has approved the last one. No polling: `chanctl wait` blocks
# on a long-poll until the message is there (history counts, so order of start-up is free).
#
#   examples/shell/builder.sh demo 3 & examples/shell/reviewer.sh demo 3
set -euo pipefail
job="${1:?usage: builder.sh JOB COUNT}"
count="${2:-3}"
work="${BUILD_SECONDS:-0.3}"   # how long one item takes to build

for i in $(seq 1 "$count"); do
  sleep "$work"                                         # the build of item $i
  echo "builder: built item-$i"
  chanctl pub "$job/artifacts" "item-$i"                # hand it over
  chanctl wait "$job/reviews" --for "match=^approved item-$i\$" --timeout 60 -q >/dev/null
  echo "builder: item-$i approved"
done
chanctl close "$job/artifacts"                          # the reviewer's wait ends here
