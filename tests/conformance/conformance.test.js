// The official Durable Streams server conformance suite, pointed at a running chanctl daemon.
// run.sh starts the server and sets CONFORMANCE_TEST_URL (the origin, e.g. http://127.0.0.1:4437).
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.CONFORMANCE_TEST_URL
if (!baseUrl) throw new Error("set CONFORMANCE_TEST_URL, e.g. http://127.0.0.1:4437")

runConformanceTests({
  baseUrl,
  // Only sizes the per-test timeout of some long-poll tests; the server's own timeout is set
  // when it is started (run.sh: --long-poll-timeout / Limits.long_poll_timeout_s).
  longPollTimeoutMs: Number(process.env.CONFORMANCE_LONG_POLL_MS ?? 2000),
  subscriptions: false, // the reserved __ds subscription APIs are opt-in and not implemented
})
