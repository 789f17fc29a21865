// The channel's recent steering messages (its control lane) with what became of each: the
// job's acknowledgement arrives on the output lane, naming the steering message's offset.

import { offsetSeq } from "./util.js";

const SHOWN = 8;

export class SteerLog {
  constructor(box) {
    this.box = box; // a container with an <ol>
    this.list = box.querySelector("ol");
    this.sent = []; // [{seq, text}], oldest first
    this.acks = new Map(); // steering seq -> ack document
  }

  clear() {
    this.sent = [];
    this.acks.clear();
    this.render();
  }

  /** Messages read from the control lane, the first one at `first`. */
  add(list, first) {
    list.forEach((msg, i) => {
      const text = typeof msg?.data === "string" ? msg.data : JSON.stringify(msg);
      this.sent.push({ seq: first + i, text });
    });
    if (this.sent.length > SHOWN) this.sent.splice(0, this.sent.length - SHOWN);
    this.render();
  }

  /** An `ack` message of the output lane. */
  ack(msg) {
    let doc;
    try {
      doc = JSON.parse(msg.data);
    } catch {
      return;
    }
    if (typeof doc?.steer !== "string") return;
    this.acks.set(offsetSeq(doc.steer), doc);
    this.render();
  }

  render() {
    this.box.hidden = this.sent.length === 0;
    const items = this.sent.slice().reverse().map(({ seq, text }) => {
      const li = document.createElement("li");
      const doc = this.acks.get(seq);
      const state = doc === undefined ? "waiting for the job"
        : `${doc.ok === false ? "failed" : "done"}${doc.detail ? `: ${doc.detail}` : ""}`;
      li.className = doc === undefined ? "pending" : doc.ok === false ? "failed" : "done";
      li.textContent = `#${seq} ${text} — ${state}`;
      return li;
    });
    this.list.replaceChildren(...items);
  }
}
