// Follows one channel: history, then live, across drops and daemon restarts.
//
// Exactly-once display rests on one rule: a data event is handed on only together with the
// control event that follows it (the daemon writes both at once), and that control event's
// streamNextOffset becomes the resume point. A connection that dies between the two loses the
// data event, which the next connection sends again from the same offset; a server answering
// from an earlier offset than asked is trimmed by seq. So no message is shown twice or skipped.

import { HttpError } from "./api.js";
import { sseEvents } from "./sse.js";
import { formatOffset, offsetSeq, sleep } from "./util.js";

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 4000;
const MISSING_RETRY_MS = 2000;
// The daemon sends a keep-alive every 15 s; this long without a byte, the connection is dead
// even if no error says so (a laptop that slept, a network that vanished).
const SILENCE_MS = 45_000;

export class Follower {
  /**
   * handlers: messages(list, firstSeq), text(string), gap(fromSeq, toSeq),
   *           status(state, detail) with state in connecting|catching-up|live|reconnecting|
   *           missing|closed|denied.
   */
  constructor(api, name, handlers, lane = "stream") {
    this.api = api;
    this.name = name;
    this.lane = lane; // "stream" (the output lane) or "control"
    this.on = handlers;
    this.nextSeq = null; // the seq after the last message handed on; null: from the start
    this.kind = null; // json | text | base64
    this.abort = new AbortController();
  }

  stop() {
    this.abort.abort();
  }

  async run() {
    const signal = this.abort.signal;
    let delay = 0;
    this.on.status("connecting");
    while (!signal.aborted) {
      this.connected = false;
      try {
        if (await this.connectOnce(signal)) return; // the channel is closed: final
        delay = 0; // the daemon ended a healthy stream (maximum age): resume at once
      } catch (err) {
        if (signal.aborted) return;
        delay = this.failed(err, this.connected ? 0 : delay);
        if (delay === null) return;
      }
      await sleep(delay, signal);
    }
  }

  /** Report a failed attempt; the delay before the next one (null: give up). */
  failed(err, delay) {
    if (err instanceof HttpError && (err.status === 401 || err.status === 403)) {
      this.on.status("denied", err.message);
      return null;
    }
    if (err instanceof HttpError && err.status === 404) {
      this.on.status("missing");
      return MISSING_RETRY_MS;
    }
    this.on.status("reconnecting", err.message);
    return Math.min(RETRY_MAX_MS, Math.max(RETRY_MIN_MS, delay * 2));
  }

  /** One SSE connection; true once the channel is known to be closed. */
  async connectOnce(signal) {
    if (this.kind === null) {
      const head = await this.api.head(this.name, signal, this.lane);
      this.kind = head.contentType === "application/json" ? "json"
        : head.contentType.startsWith("text/") ? "text" : "base64";
    }
    const offset = this.nextSeq === null ? "-1" : formatOffset(this.nextSeq);
    const conn = new AbortController();
    const stop = () => conn.abort();
    signal.addEventListener("abort", stop, { once: true });
    let timer = setTimeout(stop, SILENCE_MS);
    const alive = () => {
      clearTimeout(timer);
      timer = setTimeout(stop, SILENCE_MS);
    };
    try {
      const resp = await this.api.stream(this.name, offset, conn.signal, this.lane);
      return await this.read(resp.body, alive);
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", stop);
    }
  }

  /** Consume one connection's events; true once the channel is known to be closed. */
  async read(body, alive) {
    let pending = null;
    for await (const event of sseEvents(body, alive)) {
      if (this.abort.signal.aborted) return true; // stopped: hand nothing more on
      if (event.type === "data") {
        pending = pending === null ? event.data : pending + "\n" + event.data;
      } else if (event.type === "control") {
        const control = JSON.parse(event.data);
        const next = offsetSeq(control.streamNextOffset);
        if (pending !== null) this.deliver(pending, next);
        pending = null;
        this.nextSeq = next;
        this.connected = true;
        if (control.streamClosed) {
          this.on.status("closed");
          return true;
        }
        this.on.status(control.upToDate ? "live" : "catching-up");
      }
    }
    return false;
  }

  /** Hand on one data event, which ends just before message `next`. */
  deliver(data, next) {
    if (this.kind !== "json") {
      const text = this.kind === "base64" ? decodeBase64(data) : data;
      this.on.text(text);
      return;
    }
    let list = JSON.parse(data);
    let first = next - list.length;
    if (this.nextSeq !== null && first < this.nextSeq) {
      list = list.slice(this.nextSeq - first); // already shown
      first = this.nextSeq;
    } else if (this.nextSeq !== null && first > this.nextSeq) {
      this.on.gap(this.nextSeq, first); // dropped by retention before we read it
    }
    if (list.length) this.on.messages(list, first);
  }
}

function decodeBase64(text) {
  const bin = atob(text.replace(/\s+/g, ""));
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return new TextDecoder("utf-8", { fatal: false }).decode(bytes);
}
