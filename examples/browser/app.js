// Follow one chanctl channel with nothing but the browser: EventSource over the Durable
// Streams protocol. The page keeps the offset after the last message it showed (the
// `streamNextOffset` of each SSE `control` event) in localStorage, so after a reload, a lost
// network or a daemon restart it asks for exactly what comes next: nothing twice, nothing
// missed. EventSource's own reconnect would reopen the same URL, from the *first* offset, so
// the page reconnects by itself instead.
"use strict";

const channel = new URLSearchParams(location.search).get("channel") || "demo";
const key = "chanctl-offset:" + channel;
const log = document.getElementById("log");
const status = document.getElementById("status");
let offset = localStorage.getItem(key) || "-1"; // -1: from the start of the channel

document.getElementById("channel").textContent = channel;
if (offset !== "-1") {
  document.getElementById("resumed").textContent = "resumed at offset " + offset;
}

function show(msg) {
  const row = document.createElement("div");
  row.className = "msg";
  const type = document.createElement("span");
  type.className = "type";
  type.textContent = msg.type;
  row.append(type, document.createTextNode(msg.data ?? "(binary)"));
  log.append(row); // text only: message data never becomes markup
}

function connect() {
  const path = channel.split("/").map(encodeURIComponent).join("/");
  const url = `/v1/stream/${path}?offset=${encodeURIComponent(offset)}&live=sse`;
  const source = new EventSource(url);
  source.addEventListener("data", (ev) => {
    for (const msg of JSON.parse(ev.data)) show(msg); // a JSON channel: one array per event
  });
  source.addEventListener("control", (ev) => {
    const ctl = JSON.parse(ev.data);
    offset = ctl.streamNextOffset;
    localStorage.setItem(key, offset);
    if (ctl.streamClosed) {
      source.close();
      status.textContent = "closed";
    } else if (ctl.upToDate) {
      status.textContent = "live";
    }
  });
  source.onerror = () => {
    source.close();
    status.textContent = "reconnecting";
    setTimeout(connect, 1000);
  };
}

connect();
