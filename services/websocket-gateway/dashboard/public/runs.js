// Protocol runs on the robot (the protocol-runner): upload a protocol with its labware, read its analysis (steps,
// labware, pipettes) or why it was refused (line and message), make a run, play / pause / stop it, and follow its
// steps as they happen. Everything goes over the page's /ws: calls to the runner (upload, list, create_run, play,
// pause, stop: writes, so they need the token) and the runner's retained state/run and event/command, event/run.

import { cell, item } from "./dom.js";

const MAX_STEPS = 500;

export class RunsPanel {
  constructor(elements) {
    this.el = elements;  // {protocols, analysis, status, step, progress, errors, steps, play, pause, stop, create}
    this.protocols = [];
    this.shown = null;     // the protocol whose analysis is shown (a run is made of it)
    this.run = null;       // the runner's state/run (the current or last run)
    this.steps = new Map();  // index -> {text, status, error} of this.run's steps seen on event/command
    this.writable = false;
  }

  setWritable(writable) {
    this.writable = writable;
    this.renderControls();
    this.renderProtocols();
  }

  setProtocols(protocols) {
    this.protocols = protocols || [];
    this.renderProtocols();
  }

  // -- the analysis ---------------------------------------------------------------------------------------------

  showAnalysis(protocol) {
    this.shown = protocol;
    const analysis = protocol.analysis;
    const box = this.el.analysis;
    box.replaceChildren();
    box.dataset.result = "ok";
    box.append(heading(`${protocol.file_name} (API ${analysis.api_level || "?"}): ${analysis.steps.length} steps`));
    box.append(list("pipettes", analysis.pipettes.map((p) => `${p.pipetteName || p.name || "?"} on ${p.mount || "?"}`)));
    box.append(list("labware", analysis.labware.map((l) => `${l.displayName || l.loadName || "?"}`
      + (l.location && l.location.slotName ? ` in slot ${l.location.slotName}` : ""))));
    const steps = document.createElement("ol");
    steps.className = "analysis-steps";
    for (const step of analysis.steps) steps.append(item(step));
    box.append(steps);
    this.renderControls();
  }

  showRefusal(error) {
    this.shown = null;
    const box = this.el.analysis;
    box.replaceChildren();
    box.dataset.result = "refused";
    const analysis = error.detail && error.detail.analysis;
    const errors = (analysis && analysis.errors) || [];
    box.append(heading("refused: nothing was kept, nothing moved"));
    if (errors.length === 0) box.append(paragraph(error.message, "refused"));
    for (const e of errors) {
      box.append(paragraph(`${e.line ? `line ${e.line}: ` : ""}${e.error_type}: ${e.detail}`, "refused"));
    }
    this.renderControls();
  }

  // -- the run, from the bus --------------------------------------------------------------------------------------

  updateRun(run) {
    if (!this.run || !run || run.id !== this.run.id) this.steps.clear();
    this.run = run;
    this.renderRun();
  }

  commandEvent(event) {
    if (!this.run || event.run_id !== this.run.id) return;
    this.steps.set(event.index, { text: event.text, status: event.status, error: event.error });
    if (this.steps.size > MAX_STEPS) this.steps.delete(this.steps.keys().next().value);
    this.renderSteps();
  }

  renderRun() {
    const run = this.run;
    const status = run ? run.status : "none";
    const pill = this.el.status;
    pill.textContent = status;
    pill.dataset.status = status;
    pill.className = `pill ${{ succeeded: "good", failed: "bad", stopped: "warn", paused: "warn" }[status] || "muted-pill"}`;
    const done = run && run.steps_total ? ` (${run.steps_done}/${run.steps_total})` : run ? ` (${run.steps_done} done)` : "";
    this.el.progress.textContent = run ? `${Math.round((run.progress || 0) * 100)} %${done}` : "";
    this.el.step.textContent = run && run.current_step ? run.current_step : "–";
    if (run && run.paused_reason) this.el.step.textContent += ` · paused: ${run.paused_reason}`;
    const errors = this.el.errors;
    errors.replaceChildren();
    for (const e of (run && run.errors) || []) {
      errors.append(item(`${e.error_type}: ${e.detail}${e.step ? ` (at step: ${e.step})` : ""}`));
    }
    this.renderSteps();
    this.renderControls();
  }

  renderSteps() {
    const list = this.el.steps;
    list.replaceChildren();
    for (const [index, step] of [...this.steps.entries()].sort((a, b) => a[0] - b[0])) {
      const li = item(`${step.text}${step.error ? ` (${step.error})` : ""}`);
      li.dataset.index = index;
      li.dataset.status = step.status;
      li.className = step.status;
      list.append(li);
    }
  }

  renderControls() {
    const status = this.run ? this.run.status : null;
    const current = this.run && this.run.current;
    const can = (allowed) => this.writable && Boolean(current) && allowed;
    this.el.play.disabled = !can(status === "idle" || status === "paused");
    this.el.play.textContent = status === "paused" ? "Resume" : "Play";
    this.el.pause.disabled = !can(status === "running");
    this.el.stop.disabled = !can(["idle", "running", "paused"].includes(status));
    this.el.create.disabled = !this.writable || !this.shown;
  }

  renderProtocols() {
    const body = this.el.protocols;
    body.replaceChildren();
    if (this.protocols.length === 0) {
      const tr = document.createElement("tr");
      tr.append(cell("no protocol kept", "muted", 4));
      body.append(tr);
    }
    for (const protocol of [...this.protocols].reverse()) {
      const tr = document.createElement("tr");
      tr.dataset.protocol = protocol.id;
      const show = document.createElement("button");
      show.type = "button";
      show.textContent = "analysis";
      show.dataset.action = "show";
      show.dataset.protocol = protocol.id;
      const actions = document.createElement("td");
      actions.append(show);
      tr.append(cell(protocol.file_name), cell(new Date(protocol.created_at).toLocaleString()),
                cell(String(protocol.analysis.steps.length)), actions);
      body.append(tr);
    }
  }

  protocol(id) {
    return this.protocols.find((p) => p.id === id) || null;
  }
}

// A picked file as the runner's upload takes it: its name and its text.
export async function readFile(file) {
  return { name: file.name, content: await file.text() };
}

function heading(text) {
  const h = document.createElement("h3");
  h.textContent = text;
  return h;
}

function paragraph(text, className = "") {
  const p = document.createElement("p");
  p.textContent = text;
  if (className) p.className = className;
  return p;
}

function list(label, entries) {
  const p = document.createElement("p");
  p.dataset.list = label;
  p.textContent = `${label}: ${entries.length ? entries.join(", ") : "none"}`;
  return p;
}

