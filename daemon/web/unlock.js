// Runs in the 401 page: trade the #token fragment for a session cookie, then reload.
(async () => {
  "use strict";
  const say = (text) => { document.getElementById("msg").textContent = text; };
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token") || localStorage.getItem("chanctl.token");
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  if (!token) {
    say("This page needs the link that `chanctl web` prints (it carries the access token).");
    return;
  }
  let resp;
  try {
    resp = await fetch("/ui/session", {
      method: "POST", headers: { Authorization: "Bearer " + token }, credentials: "same-origin",
    });
  } catch (err) {
    say("Cannot reach the chanctl daemon: " + err.message);
    return;
  }
  if (!resp.ok) {
    localStorage.removeItem("chanctl.token");
    say("The daemon refused this link's token (" + resp.status + "). Run `chanctl web` again.");
    return;
  }
  localStorage.setItem("chanctl.token", token);
  // A cookie the browser refuses to keep would bring us straight back here: do not loop.
  const last = Number(sessionStorage.getItem("chanctl.unlocked") || 0);
  if (Date.now() - last < 5000) {
    say("The browser did not keep the session cookie; allow cookies for this address.");
    return;
  }
  sessionStorage.setItem("chanctl.unlocked", String(Date.now()));
  location.replace("/ui/" + location.search + (rest ? "#" + rest : ""));
})();
