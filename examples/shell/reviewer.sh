#!/usr/bin/env bash
# Reviews what the builder hands over, by channel name, in order. Each `chanctl wait` blocks
# (no polling loop) until the builder has published the item, then the approval goes back
# with `chanctl pub`. It ends when the builder closes its channel.
#
#   examples/shell/reviewer.sh demo 3
set -euo pipefail
job="${1:?usage: reviewer.sh JOB COUNT}"
count="${2:-3}"

for i in $(seq 1 "$count"); do
  chanctl wait "$job/artifacts" --for "match=^item-$i\$" --timeout 60 -q >/dev/null
  echo "reviewer: reviewing item-$i"
  chanctl pub "$job/reviews" "approved item-$i"
done
chanctl wait "$job/artifacts" --for closed --timeout 60 -q >/dev/null
echo "reviewer: all $count items reviewed"
