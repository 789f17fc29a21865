#!/usr/bin/env bash
# Tier 2 of the reliability suite: every reliability test at full scale (thousands of crash
# states, hundreds of kill -9 rounds, long fuzzing) plus the long-only tests such as the 1-hour
# soak. Takes a few hours on 2 cores. Extra arguments go to pytest, e.g. `-k crashfs`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export CHANCTL_LONG=1 PYTHONSAFEPATH=1
exec pytest -m "long or not long" --timeout 0 tests/reliability tests/http tests/daemon \
  tests/store/test_store_model.py "$@"
