// The daemon's HTTP API as the page uses it: every call carries the bearer token.

export const CONTROL_PREFIX = "/v1/control/";
const PRODUCER_PREFIX = "/v1/producer/";
const STREAM_PREFIX = "/v1/stream/";
const TOKEN_KEY = "chanctl.token";

export class HttpError extends Error {
  constructor(status, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
  }
}

/**
 * The token from the #token= fragment (then removed from the address bar), else the one kept
 * in this origin's localStorage, so that a channel opened in a new tab works too. Only this
 * origin (127.0.0.1:PORT) can read it; a refused token is dropped (see forgetToken).
 */
export function takeToken() {
  const params = new URLSearchParams(location.hash.slice(1));
  const fromUrl = params.get("token");
  if (fromUrl) {
    localStorage.setItem(TOKEN_KEY, fromUrl);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }
  return localStorage.getItem(TOKEN_KEY);
}

export function forgetToken() {
  localStorage.removeItem(TOKEN_KEY);
}

/** A channel name as URL path segments ("/" separates them, everything else escaped). */
export function namePath(name) {
  return name.split("/").map(encodeURIComponent).join("/");
}

function lanePath(lane, name) {
  return (lane === "control" ? CONTROL_PREFIX : STREAM_PREFIX) + namePath(name);
}

async function errorOf(resp) {
  let message = "";
  try {
    const doc = await resp.json();
    message = typeof doc?.error === "string" ? doc.error : "";
  } catch { /* not JSON */ }
  return new HttpError(resp.status, message);
}

export class Api {
  constructor(token) {
    this.token = token;
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.token}`, ...extra };
  }

  async fetch(path, init = {}) {
    const resp = await fetch(path, {
      cache: "no-store", credentials: "omit", ...init, headers: this.headers(init.headers),
    });
    if (resp.status === 401) forgetToken(); // rotated or wrong: do not keep retrying it
    if (!resp.ok) throw await errorOf(resp);
    return resp;
  }

  async channels(signal) {
    return (await this.fetch("/v1/channels", { signal })).json();
  }

  /** HEAD of a channel's lane ("stream": output, "control"): content type, closed or not. */
  async head(name, signal, lane = "stream") {
    const resp = await this.fetch(lanePath(lane, name), { method: "HEAD", signal });
    return {
      contentType: (resp.headers.get("Content-Type") || "").split(";")[0].trim().toLowerCase(),
      closed: resp.headers.get("Stream-Closed") === "true",
    };
  }

  /** A live SSE read of a lane from `offset`, as a streamed response (EventSource cannot send
   *  headers). */
  stream(name, offset, signal, lane = "stream") {
    const query = `?live=sse&offset=${encodeURIComponent(offset)}`;
    return this.fetch(lanePath(lane, name) + query, { signal });
  }

  /** The channel's `chanctl run` producer: {state: attached|lost|exited|none, pid, ...}. */
  async producer(name, signal) {
    return (await this.fetch(PRODUCER_PREFIX + namePath(name), { signal })).json();
  }

  /** Append steering messages (chanctl envelopes) to the channel's control lane. */
  async steer(name, envelopes) {
    const resp = await this.fetch(CONTROL_PREFIX + namePath(name), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(envelopes),
    });
    return resp.headers.get("Stream-Next-Offset");
  }
}
