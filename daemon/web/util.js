// Small formatting helpers shared by the list and the channel view.

const OFFSET_ZEROS = "0".repeat(16);

/** The seq (messages before it) of a Durable Streams offset "%016d_%016d". */
export function offsetSeq(offset) {
  return Number(String(offset).slice(0, 16));
}

/** The offset a read starting at message `seq` uses. */
export function formatOffset(seq) {
  return String(seq).padStart(16, "0") + "_" + OFFSET_ZEROS;
}

export function fmtCount(n) {
  return n == null ? "–" : Number(n).toLocaleString("en-US");
}

export function fmtSize(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

/** "12 s ago", "5 min ago", "3 h ago", "2 d ago" for unix seconds `ts` at time `nowMs`. */
export function fmtAgo(ts, nowMs) {
  if (typeof ts !== "number") return "–";
  const s = Math.max(0, Math.round(nowMs / 1000 - ts));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** Local wall-clock time with milliseconds, for the timestamp column. */
export function fmtClock(iso) {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return "".padEnd(12);
  const d = new Date(ms);
  const two = (v) => String(v).padStart(2, "0");
  const milli = String(d.getMilliseconds()).padStart(3, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${milli}`;
}

export function fmtDate(ts) {
  return typeof ts === "number" ? new Date(ts * 1000).toLocaleString() : "";
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}
