// The channel list: one table row per channel, refreshed by polling GET /v1/channels (a cheap
// in-memory listing) and re-rendered in place, so focus and the filter survive updates.

import { HttpError } from "./api.js";
import { fmtAgo, fmtCount, fmtDate, fmtSize, offsetSeq, sleep } from "./util.js";

const POLL_MS = 2000;

/** "attached (pid 12 on host)", "lost", "exited 0" or "–" from a listing entry's producer. */
export function producerText(producer) {
  if (!producer || typeof producer !== "object") return { text: "–", cls: "" };
  const state = String(producer.state ?? "");
  if (state === "attached") {
    const where = [producer.pid ? `pid ${producer.pid}` : "", producer.host ? `on ${producer.host}` : ""];
    return { text: `attached (${where.filter(Boolean).join(" ")})`, cls: "state-open" };
  }
  if (state === "exited") {
    const code = producer.exit_status;
    return { text: code == null ? "exited" : `exited ${code}`, cls: "state-closed" };
  }
  return { text: state || "–", cls: state === "lost" ? "error" : "" };
}

export class ChannelList {
  constructor(api, root, { open, status }) {
    this.api = api;
    this.root = root;
    this.open = open; // open(name): show a channel
    this.status = status; // status(text, cls): the connection badge
    this.body = root.querySelector("tbody");
    this.filter = root.querySelector("#filter");
    this.count = root.querySelector("#list-count");
    this.empty = root.querySelector("#list-empty");
    this.entries = [];
    this.rows = new Map(); // name -> <tr>
    this.abort = null;
    this.filter.addEventListener("input", () => this.render());
    setInterval(() => this.tickAges(), 1000);
  }

  start() {
    this.stop();
    this.abort = new AbortController();
    this.poll(this.abort.signal);
  }

  stop() {
    this.abort?.abort();
    this.abort = null;
  }

  async poll(signal) {
    while (!signal.aborted) {
      try {
        this.entries = await this.api.channels(signal);
        this.status("", "");
        this.render();
      } catch (err) {
        if (signal.aborted) return;
        const denied = err instanceof HttpError && (err.status === 401 || err.status === 403);
        this.status(denied ? "access denied: run `chanctl web` again" : "reconnecting…",
          denied ? "error" : "wait");
        if (denied) return;
      }
      await sleep(document.hidden ? POLL_MS * 5 : POLL_MS, signal);
    }
  }

  render() {
    const needle = this.filter.value.trim().toLowerCase();
    const shown = this.entries.filter((e) => String(e.name).toLowerCase().includes(needle));
    const keep = new Set();
    let before = null;
    for (let i = shown.length - 1; i >= 0; i -= 1) {
      const entry = shown[i];
      keep.add(entry.name);
      const tr = this.rows.get(entry.name) ?? this.makeRow(entry.name);
      this.fill(tr, entry);
      if (tr.nextSibling !== before || tr.parentNode !== this.body) this.body.insertBefore(tr, before);
      before = tr;
    }
    for (const [name, tr] of this.rows) {
      if (!keep.has(name)) {
        tr.remove();
        if (!this.entries.some((e) => e.name === name)) this.rows.delete(name);
      }
    }
    this.count.textContent = `${shown.length} of ${this.entries.length}`;
    this.empty.hidden = shown.length > 0;
    this.empty.textContent = this.entries.length
      ? "No channel name matches the filter."
      : "No channels yet. Publish to one with `chanctl pub NAME hello`.";
  }

  makeRow(name) {
    const tr = document.createElement("tr");
    tr.dataset.name = name;
    const link = document.createElement("a");
    link.href = `./?channel=${encodeURIComponent(name)}`;
    link.textContent = name;
    link.addEventListener("click", (ev) => {
      if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
      ev.preventDefault();
      this.open(name);
    });
    const name_ = cell("name");
    name_.append(link);
    tr.append(name_, cell("num messages"), cell("num size"), cell("ago"), cell("state"),
      cell("producer"), cell("num readers"));
    this.rows.set(name, tr);
    return tr;
  }

  fill(tr, e) {
    const c = tr.cells;
    const messages = typeof e.next_offset === "string" ? offsetSeq(e.next_offset) : e.messages;
    set(c[1], fmtCount(messages));
    set(c[2], fmtSize(e.size ?? e.bytes));
    tr.lastWrite = e.last_write;
    set(c[3], fmtAgo(e.last_write, Date.now()));
    c[3].title = fmtDate(e.last_write);
    set(c[4], e.closed ? "closed" : "open");
    c[4].className = e.closed ? "state state-closed" : "state state-open";
    const producer = producerText(e.producer);
    set(c[5], producer.text);
    c[5].className = `producer ${producer.cls}`;
    set(c[6], fmtCount(e.readers));
  }

  tickAges() {
    if (this.root.hidden) return;
    const now = Date.now();
    for (const tr of this.rows.values()) set(tr.cells[3], fmtAgo(tr.lastWrite, now));
  }
}

function cell(cls) {
  const td = document.createElement("td");
  td.className = cls;
  return td;
}

function set(el, text) {
  if (el.textContent !== text) el.textContent = text;
}
