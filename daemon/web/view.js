// The channel view: wires a Follower (the data) to a LogView (the display), shows the
// connection state, and offers steering while a `chanctl run` drives the channel.

import { Follower } from "./follow.js";
import { LogView } from "./logview.js";
import { exitCode, isPartial, joinRow, messageRows, noteRow, textRows } from "./rows.js";
import { Steering } from "./steer.js";
import { SteerLog } from "./steerlog.js";
import { fmtCount, sleep } from "./util.js";

const PRODUCER_POLL_MS = 3000;
const RESTART_HINT_MS = 10_000; // reconnecting longer than this: the port may have changed
const STATES = {
  connecting: ["connecting…", "wait"],
  "catching-up": ["loading history…", "wait"],
  live: ["live", "live"],
  reconnecting: ["reconnecting…", "wait"],
  missing: ["waiting for the channel to be created…", "wait"],
  denied: ["access denied: run `chanctl web` again", "error"],
};

/** Render-latency samples (ms from a message's timestamp to the frame that painted it). */
export const stats = { latencies: [], messages: 0 };

export class ChannelView {
  constructor(api, root, dialog) {
    this.api = api;
    this.root = root;
    const q = (sel) => root.querySelector(sel);
    this.title = q("#channel-title");
    this.state = q("#channel-state");
    this.count = q("#channel-count");
    this.log = new LogView(q("#log"), q("#jump"));
    this.steering = new Steering(api, {
      form: q("#steer"), input: q("#steer-text"), status: q("#steer-status"),
      stop: q("#stop"), kill: q("#kill"), dialog,
    });
    this.steerLog = new SteerLog(q("#steer-history"));
    const showTime = q("#show-time");
    showTime.addEventListener("change", () => this.log.setShowTime(showTime.checked));
    this.follower = null;
    this.control = null;
    this.abort = null;
  }

  show(name) {
    this.hide();
    this.name = name;
    this.title.textContent = name;
    this.messages = 0;
    this.closed = false;
    this.exists = false; // until the first read succeeds, there is nothing to steer
    this.started = false; // a `start` banner without its `exit` yet: a run is going
    this.exit = null;
    this.producer = null;
    this.sawHistory = false;
    this.wentLive = false;
    this.reconnectingSince = null;
    this.lastState = null;
    this.partialType = null; // the type of a message whose line is not finished yet
    this.log.clear();
    this.steerLog.clear();
    this.count.textContent = "";
    this.root.hidden = false;
    this.abort = new AbortController();
    this.follower = new Follower(this.api, name, {
      messages: (list, first) => this.onMessages(list, first),
      text: (text) => this.log.append(textRows(text)),
      gap: (from, to) => this.log.append([noteRow(`… ${fmtCount(to - from)} messages expired`)]),
      status: (state, detail) => this.onStatus(state, detail),
    });
    this.follower.run();
    this.control = new Follower(this.api, name, {
      messages: (list, first) => this.steerLog.add(list, first),
      text: () => {},
      gap: () => {},
      status: () => {}, // a channel nobody steered yet has no control lane: that is fine
    }, "control");
    this.control.run();
    this.pollProducer(name, this.abort.signal);
    this.updateControls();
  }

  hide() {
    this.follower?.stop();
    this.control?.stop();
    this.abort?.abort();
    this.follower = null;
    this.control = null;
    this.root.hidden = true;
  }

  onMessages(list, first) {
    const rows = [];
    list.forEach((msg, i) => {
      this.track(msg);
      const next = messageRows(msg, first + i);
      if (this.partialType === msg?.type && next.length) this.continueLine(rows, next.shift());
      for (const row of next) rows.push(row);
      this.partialType = isPartial(msg) ? msg.type : null;
    });
    this.messages += list.length;
    stats.messages += list.length;
    this.sawHistory = true;
    this.log.append(rows);
    this.count.textContent = `${fmtCount(this.messages)} messages`;
    const last = list[list.length - 1];
    const sent = Date.parse(last?.time);
    if (this.wentLive && !Number.isNaN(sent)) {
      requestAnimationFrame(() => {
        stats.latencies.push(Date.now() - sent);
        if (stats.latencies.length > 5000) stats.latencies.splice(0, 1000);
      });
    }
  }

  /** Join `row` onto the line it continues: the last row of this batch, else of the log. */
  continueLine(rows, row) {
    const last = rows.length ? rows[rows.length - 1] : this.log.rows[this.log.rows.length - 1];
    if (last === undefined || last.seq === null) rows.push(row); // nothing (or a note) to join
    else if (rows.length) rows[rows.length - 1] = joinRow(last, row);
    else this.log.replaceLast(joinRow(last, row));
  }

  /** Follow the run's lifecycle from its own messages (start ... exit). */
  track(msg) {
    if (msg?.type === "ack") {
      this.steerLog.ack(msg);
    } else if (msg?.type === "start") {
      this.started = true;
      this.exit = null;
    } else if (msg?.type === "exit") {
      this.started = false;
      this.exit = exitCode(typeof msg.data === "string" ? msg.data : "");
    }
  }

  onStatus(state, detail) {
    if (state === this.lastState && state !== "reconnecting") return; // once per change
    this.lastState = state;
    if (state === "live" && !this.wentLive) {
      this.wentLive = true;
      if (this.sawHistory) this.log.append([noteRow("── live ──")]);
    }
    if (state === "live" || state === "catching-up" || state === "closed") this.exists = true;
    if (state === "closed") {
      this.closed = true;
      this.control?.stop(); // nobody will act on steering any more
      this.log.endLabel = "Jump to end";
      this.log.schedule();
    }
    const [text, cls] = state === "closed" ? this.finalState() : STATES[state];
    this.reconnectingSince = state === "reconnecting" ? this.reconnectingSince ?? Date.now() : null;
    const long = this.reconnectingSince !== null
      && Date.now() - this.reconnectingSince > RESTART_HINT_MS;
    this.state.textContent = long ? `${text} (if the daemon restarted, run \`chanctl web\`)` : text;
    this.state.className = `badge ${cls}`;
    this.state.title = detail || "";
    this.updateControls();
  }

  finalState() {
    if (this.exit === null) return ["closed", ""];
    return [`finished: exit ${this.exit}`, this.exit === 0 ? "ok" : "fail"];
  }

  updateControls() {
    const running = this.producer === "attached" || (this.producer === null && this.started);
    const open = this.exists && !this.closed;
    this.steering.show(this.name, { open, running: running && open });
  }

  async pollProducer(name, signal) {
    while (!signal.aborted && !this.closed) {
      try {
        const doc = await this.api.producer(name, signal);
        this.producer = typeof doc?.state === "string" && doc.state !== "none" ? doc.state : null;
        this.updateControls();
      } catch {
        // an older daemon without producer tracking: the start/exit messages decide
      }
      await sleep(PRODUCER_POLL_MS, signal);
    }
  }
}
