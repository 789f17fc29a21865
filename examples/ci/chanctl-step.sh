#!/usr/bin/env bash
# Run one CI step under `chanctl run`, in a channel named after the pipeline, so that anyone
# with the daemon's address and token can follow it live from their own machine:
#
#   examples/ci/chanctl-step.sh make test          # in the CI job
#   chanctl tail ci/acme/app/4711.1/build           # on a laptop (CHANCTL_URL, CHANCTL_TOKEN)
#
# The step's exit status is the command's (`chanctl run` exits with it; 125 if chanctl itself
# failed), so the CI marks the step failed exactly when the build failed. With CI=true the
# output shown in the job log is folded into a log group (GitHub Actions, GitLab CI) and
# carries nothing but the build's own bytes: no colour, no progress animation.
#
# The daemon is reached through CHANCTL_URL (http://HOST:PORT of `chanctl daemon start
# --listen`, token in CHANCTL_TOKEN) or, with several daemons sharing a NATS JetStream cluster
# (`--store nats://...`), through whichever daemon is nearest. CHANCTL_CHANNEL_NAME overrides
# the name.
set -euo pipefail
[[ $# -gt 0 ]] || { echo "usage: chanctl-step.sh COMMAND [ARGS...]" >&2; exit 2; }

if [[ -n "${CHANCTL_CHANNEL_NAME:-}" ]]; then
  name="$CHANCTL_CHANNEL_NAME"
elif [[ "${GITHUB_ACTIONS:-}" == "true" ]]; then
  # A re-run gets a new attempt number, hence a new channel (a closed one takes no new run).
  name="ci/${GITHUB_REPOSITORY}/${GITHUB_RUN_ID}.${GITHUB_RUN_ATTEMPT:-1}/${GITHUB_JOB}"
elif [[ "${GITLAB_CI:-}" == "true" ]]; then
  name="ci/${CI_PROJECT_PATH}/${CI_PIPELINE_ID}/${CI_JOB_NAME_SLUG}.${CI_JOB_ID}"
else
  name="ci/local/$(hostname -s)/$(date +%Y%m%d-%H%M%S)"
fi
export CHANCTL_NO_AUTOSTART=1  # a CI job must never start a private daemon of its own
exec chanctl run "$name" -- "$@"
