// A virtualized log: every row is kept in an array, only the visible ones are in the DOM.
//
// Rows have one fixed height (no wrapping; long lines scroll sideways), so the row at any
// scroll position is a division away and 100,000 (or 500,000) rows cost a spacer's height,
// not 100,000 elements. New rows are painted once per animation frame, however many arrive.

import { fmtClock } from "./util.js";

const OVERSCAN = 10;
const MAX_ROWS = 500_000; // beyond this the oldest rows leave the tab (still in the channel)
const DROP_ROWS = 100_000;

export class LogView {
  constructor(scroller, jumpButton) {
    this.scroller = scroller;
    this.spacer = scroller.querySelector(".spacer");
    this.box = scroller.querySelector(".rows");
    this.jump = jumpButton;
    this.rows = [];
    this.follow = true;
    this.unseen = 0;
    this.dropped = 0;
    this.frame = 0;
    this.endLabel = "Jump to live"; // "Jump to end" once the channel is closed
    this.height = -1;
    this.rowHeight = this.measure();
    scroller.addEventListener("scroll", () => this.onScroll(), { passive: true });
    jumpButton.addEventListener("click", () => this.toLive());
    new ResizeObserver(() => this.schedule()).observe(scroller);
  }

  measure() {
    const probe = document.createElement("div");
    probe.className = "row";
    probe.textContent = "x";
    this.box.append(probe);
    const h = probe.getBoundingClientRect().height || 20;
    probe.remove();
    return h;
  }

  clear() {
    this.endLabel = "Jump to live";
    this.rows = [];
    this.box.replaceChildren();
    this.follow = true;
    this.unseen = 0;
    this.dropped = 0;
    this.schedule();
  }

  /** Replace the last row (a line that continues), keeping everything else. */
  replaceLast(row) {
    this.rows[this.rows.length - 1] = row;
    this.schedule();
  }

  append(rows) {
    for (const row of rows) this.rows.push(row);
    if (!this.follow) this.unseen += rows.length;
    if (this.rows.length > MAX_ROWS) this.dropOldest();
    this.schedule();
  }

  /** Forget the oldest rows (they stay in the channel), leaving a note in their place. */
  dropOldest() {
    const removed = this.rows.splice(0, DROP_ROWS);
    this.dropped += removed.filter((row) => row.cls !== "note").length;
    const text = `… ${this.dropped.toLocaleString("en-US")} earlier lines are not kept in this `
      + "tab; `chanctl replay` shows them";
    this.rows.unshift({ seq: null, cls: "note", text, more: 0, time: "", tag: "" });
    if (!this.follow) this.scroller.scrollTop -= (DROP_ROWS - 1) * this.rowHeight;
  }

  setShowTime(on) {
    this.scroller.classList.toggle("show-time", on);
    this.box.replaceChildren(); // repaint: the timestamp cells fill in lazily
    this.schedule();
  }

  toLive() {
    this.follow = true;
    this.unseen = 0;
    this.schedule();
    this.scroller.focus({ preventScroll: true });
  }

  atBottom() {
    const s = this.scroller;
    return s.scrollTop + s.clientHeight >= s.scrollHeight - this.rowHeight / 2;
  }

  onScroll() {
    // Our own scroll to the bottom lands at the bottom, so this keeps following; a user who
    // scrolls up stops it, and scrolling back down (or End) resumes it.
    this.follow = this.atBottom();
    if (this.follow) this.unseen = 0;
    this.schedule();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
  }

  render() {
    this.frame = 0;
    const rh = this.rowHeight;
    const total = this.rows.length * rh;
    if (total !== this.height) {
      this.spacer.style.height = `${total}px`;
      this.height = total;
    }
    const s = this.scroller;
    if (this.follow && s.scrollTop + s.clientHeight < total) s.scrollTop = total;
    const first = Math.max(0, Math.floor(s.scrollTop / rh) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((s.scrollTop + s.clientHeight) / rh) + OVERSCAN);
    this.paint(first, last);
    this.updateJump();
  }

  paint(first, last) {
    this.box.style.transform = `translateY(${first * this.rowHeight}px)`;
    const box = this.box;
    const want = Math.max(0, last - first);
    while (box.childElementCount < want) box.append(makeRow());
    while (box.childElementCount > want) box.lastElementChild.remove();
    const showTime = this.scroller.classList.contains("show-time");
    let el = box.firstElementChild;
    for (let i = first; i < last; i += 1, el = el.nextElementSibling) {
      const row = this.rows[i];
      if (el.row !== row) fillRow(el, row, showTime);
    }
  }

  updateJump() {
    const hidden = this.follow;
    if (this.jump.hidden !== hidden) this.jump.hidden = hidden;
    if (!hidden) {
      const count = this.unseen ? ` (${this.unseen.toLocaleString("en-US")} new)` : "";
      const label = `${this.endLabel}${count}`;
      if (this.jump.textContent !== label) this.jump.textContent = label;
    }
  }
}

function makeRow() {
  const el = document.createElement("div");
  const ts = document.createElement("span");
  const tx = document.createElement("span");
  ts.className = "ts";
  tx.className = "tx";
  el.append(ts, tx);
  return el;
}

function fillRow(el, row, showTime) {
  el.row = row;
  el.className = row.cls ? `row ${row.cls}` : "row";
  el.firstChild.textContent = showTime ? fmtClock(row.time) : "";
  const more = row.more ? ` … [${row.more.toLocaleString("en-US")} more characters]` : "";
  el.lastChild.textContent = `${row.tag ? `[${row.tag}] ` : ""}${row.text}${more}`;
  el.title = row.time ? `#${row.seq}  ${row.time}` : "";
  if (row.seq !== null) el.dataset.seq = row.seq;
  else delete el.dataset.seq;
}
