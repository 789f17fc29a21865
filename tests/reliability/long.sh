#!/usr/bin/env bash
# Tier 2 of the reliability suite: the same tests at full scale (over 100,000 crash states,
# 500 kill -9 rounds, 30 minutes of fuzzing, the soak for an hour). Takes a few hours on 2
# cores. Extra arguments go to pytest, e.g. `-k crashfs`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export CHANCTL_LONG=1 PYTHONSAFEPATH=1
exec pytest --timeout 0 tests/reliability tests/http tests/daemon \
  tests/store/test_store_model.py "$@"
