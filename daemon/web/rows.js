// chanctl messages -> display rows. A row is one line of the log: {seq, cls, text, time, tag}.
// Text is only ever assigned with textContent by the log view, so markup in data stays text.

const MAX_ROW_CHARS = 4000; // a 16 MiB line must not become one 16 MiB text node
const SIGNALS = {
  1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 6: "SIGABRT", 9: "SIGKILL", 10: "SIGUSR1",
  12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM",
};

/** One row; text beyond MAX_ROW_CHARS is kept out of the page and counted in `more`. */
function row(seq, cls, text, time, tag = "") {
  const more = Math.max(0, text.length - MAX_ROW_CHARS);
  return { seq, cls, text: more ? text.slice(0, MAX_ROW_CHARS) : text, more, time, tag };
}

/** `prev` continued by `next` (the rest of a line sent in parts: header partial=1). */
export function joinRow(prev, next) {
  if (prev.more) return { ...prev, more: prev.more + next.text.length + next.more };
  const joined = row(prev.seq, prev.cls, prev.text + next.text, prev.time, prev.tag);
  return { ...joined, more: joined.more + next.more };
}

/** A message whose data does not end its line: the next message of its type continues it. */
export function isPartial(msg) {
  return msg?.headers?.partial === "1";
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function dataText(msg) {
  if (typeof msg.data === "string") return msg.data;
  if (typeof msg.data_b64 === "string") {
    const bytes = Uint8Array.from(atob(msg.data_b64), (c) => c.charCodeAt(0));
    return new TextDecoder("utf-8", { fatal: false }).decode(bytes);
  }
  return JSON.stringify(msg); // a foreign JSON value: shown as its JSON text
}

/** The exit code carried by an `exit` message: decimal text, or JSON with a code field. */
export function exitCode(text) {
  const doc = parseJson(text);
  const value = typeof doc === "object" && doc !== null
    ? doc.exit_status ?? doc.exit_code ?? doc.code ?? doc.status : doc;
  return Number.isInteger(value) ? value : null;
}

function exitText(text, headers) {
  const code = exitCode(text);
  if (code === null) return `■ exited: ${text}`;
  const doc = parseJson(text);
  const fromDoc = typeof doc === "object" && doc !== null ? doc : {};
  const secs = Number(headers?.duration_s ?? fromDoc.duration_s ?? fromDoc.duration ?? NaN);
  const took = Number.isFinite(secs) ? ` after ${secs.toFixed(1)} s` : "";
  const sig = headers?.signal ?? (code > 128 ? SIGNALS[code - 128] : undefined);
  const how = sig ? ` (killed by ${sig})` : "";
  return `■ exited with code ${code}${how}${took}`;
}

function startText(text) {
  const doc = parseJson(text);
  if (typeof doc !== "object" || doc === null) return `▶ started ${text}`;
  const argv = Array.isArray(doc.argv) ? doc.argv.join(" ") : String(doc.command ?? "");
  const where = [doc.pid != null ? `pid ${doc.pid}` : "", doc.host ? `on ${doc.host}` : ""]
    .filter(Boolean).join(" ");
  const cwd = doc.cwd ? ` in ${doc.cwd}` : "";
  return `▶ started ${argv}${where ? ` (${where}${cwd})` : cwd}`;
}

function ackText(text) {
  const doc = parseJson(text);
  if (typeof doc !== "object" || doc === null) return { text: `⇄ ack ${text}`, ok: true };
  const ok = doc.ok !== false;
  const detail = doc.detail ? `: ${doc.detail}` : "";
  const seq = typeof doc.steer === "string" ? Number(doc.steer.slice(0, 16)) : NaN;
  const offset = Number.isNaN(seq) ? "" : ` (steering message #${seq})`;
  return { text: `⇄ ${ok ? "done" : "failed"} ${doc.cmd ?? "?"}${detail}${offset}`, ok };
}

/** The rows of one message (several when its data has several lines). */
export function messageRows(msg, seq) {
  if (typeof msg !== "object" || msg === null || Array.isArray(msg)) {
    return [row(seq, "", JSON.stringify(msg), "", "json")];
  }
  const type = typeof msg.type === "string" ? msg.type : "message";
  const time = typeof msg.time === "string" ? msg.time : "";
  const text = dataText(msg);
  if (type === "start") return [row(seq, "banner", startText(text), time)];
  if (type === "exit") {
    const code = exitCode(text);
    const cls = `banner ${code === 0 ? "exit-ok" : "exit-fail"}`;
    return [row(seq, cls, exitText(text, msg.headers), time)];
  }
  if (type === "ack") {
    const ack = ackText(text);
    return [row(seq, ack.ok ? "mark" : "mark stderr", ack.text, time)];
  }
  if (type === "steer") return [row(seq, "mark", `⇢ steer ${text}`, time)];
  const cls = type === "stderr" ? "stderr" : "";
  const tag = ["stdout", "stderr", "message"].includes(type) ? "" : type;
  const lines = text.endsWith("\n") ? text.slice(0, -1).split("\n") : text.split("\n");
  return lines.map((line, i) => row(seq, cls, line, i ? "" : time, tag));
}

/** Rows of raw text (a text/* or binary channel written by another client). */
export function textRows(text) {
  const lines = text.endsWith("\n") ? text.slice(0, -1).split("\n") : text.split("\n");
  return lines.map((line) => row(null, "", line, ""));
}

/** A row the page adds itself (not a message): dimmed, never counted. */
export function noteRow(text) {
  return row(null, "note", text, "");
}
