// Entry point: take the token, then show the channel list or one channel (?channel=NAME).

import { Api, takeToken } from "./api.js";
import { ChannelList } from "./list.js";
import { ChannelView, stats } from "./view.js";

const $ = (id) => document.getElementById(id);

function setConn(text, cls) {
  const conn = $("conn");
  conn.textContent = text;
  conn.className = `badge ${cls}`;
}

function main() {
  const token = takeToken();
  if (!token) {
    setConn("no access token: open the link that `chanctl web` prints", "error");
    return;
  }
  const api = new Api(token);
  const listEl = $("list-view");
  const view = new ChannelView(api, $("channel-view"), $("confirm"));
  const list = new ChannelList(api, listEl, { open: (name) => navigate(name), status: setConn });

  function route() {
    const name = new URLSearchParams(location.search).get("channel");
    $("crumb").textContent = name ? `/ ${name}` : "";
    document.title = name ? `${name} · chanctl` : "channels · chanctl";
    if (name) {
      list.stop();
      listEl.hidden = true;
      setConn("", "");
      view.show(name);
      $("log").focus({ preventScroll: true });
    } else {
      view.hide();
      listEl.hidden = false;
      list.start();
    }
  }

  function navigate(name) {
    history.pushState(null, "", name ? `./?channel=${encodeURIComponent(name)}` : "./");
    route();
  }

  document.querySelector("[data-nav]").addEventListener("click", (ev) => {
    if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    ev.preventDefault();
    navigate(null);
  });
  window.addEventListener("popstate", route);
  // For people and tests measuring the page: render latencies, message counts.
  globalThis.chanctlStats = stats;
  route();
}

main();
