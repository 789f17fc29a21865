// Steering from the page: a free-text box and Stop / Kill buttons (each confirmed first).
// Each sends one chanctl message of type "steer" to the channel's control lane; the job's
// `chanctl run` acknowledges it on the output lane, where the log view shows the ack.

const DIALOG_TEXT = {
  stop: ["Stop the job?", "The job gets its stop signal (SIGTERM by default), then SIGKILL if it "
    + "has not ended after its stop timeout.", "Stop"],
  kill: ["Kill the job?", "The job's whole process group gets SIGKILL at once: it cannot clean up.",
    "Kill"],
};

export function steerEnvelope(text) {
  return { type: "steer", time: new Date().toISOString(), data: text };
}

export class Steering {
  constructor(api, els) {
    this.api = api;
    this.els = els; // {form, input, status, stop, kill, dialog}
    this.name = null;
    els.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const text = els.input.value.trim();
      if (text) this.send(text).then((ok) => { if (ok) els.input.value = ""; });
    });
    els.stop.addEventListener("click", () => this.confirmThenSend("stop"));
    els.kill.addEventListener("click", () => this.confirmThenSend("kill"));
  }

  /** Show the controls for channel `name`: the box while it is open, buttons while a run is. */
  show(name, { open, running }) {
    this.name = name;
    this.els.form.hidden = !open;
    this.els.stop.hidden = !(open && running);
    this.els.kill.hidden = !(open && running);
  }

  async confirmThenSend(cmd) {
    const [title, text, ok] = DIALOG_TEXT[cmd];
    const dialog = this.els.dialog;
    dialog.querySelector("#confirm-title").textContent = title;
    dialog.querySelector("#confirm-text").textContent = text;
    dialog.querySelector("#confirm-ok").textContent = ok;
    dialog.returnValue = "";
    dialog.showModal();
    await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
    if (dialog.returnValue === "ok") await this.send(cmd);
  }

  async send(text) {
    const status = this.els.status;
    status.textContent = "sending…";
    try {
      const offset = await this.api.steer(this.name, [steerEnvelope(text)]);
      status.textContent = `sent "${text}"${offset ? "; waiting for the job to acknowledge" : ""}`;
      return true;
    } catch (err) {
      status.textContent = `not sent: ${err.message}`;
      return false;
    }
  }
}
