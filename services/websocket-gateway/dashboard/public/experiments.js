// Experiments on the device (the experiment service): its retained state/experiments as tables, with the controls
// start (a JSON definition), edit (the same name, version + 1), pause, resume and stop. Writes need the token.

import { cell, row } from "./dom.js";

const EXAMPLE = {
  name: "turbidostat-demo",
  groups: [{ name: "turbido", vials: [0, 1, 2, 3], temp_c: 30, stir: 8,
             control: { mode: "turbidostat", lower_od: 0.2, upper_od: 0.4 } }],
};

export class ExperimentsPanel {
  constructor(elements) {
    this.el = elements;  // {list, vials, definition}
    this.experiments = [];
    this.writable = false;
    if (!this.el.definition.value) this.el.definition.value = JSON.stringify(EXAMPLE, null, 2);
  }

  update(payload) {
    this.experiments = (payload && payload.experiments) || [];
    this.render();
  }

  setWritable(writable) {
    this.writable = writable;
    this.render();
  }

  render() {
    const list = this.el.list;
    list.replaceChildren();
    if (this.experiments.length === 0) {
      list.append(row([cell("none", "muted", 5)]));
    }
    for (const experiment of this.experiments) {
      const actions = document.createElement("td");
      for (const action of actionsFor(experiment.status)) {
        const button = document.createElement("button");
        button.type = "button";
        const write = action !== "load";  // load only copies the definition into the box
        button.className = write ? "write" : "";
        button.textContent = action;
        button.dataset.action = action;
        button.dataset.name = experiment.name;
        button.disabled = write && !this.writable;
        actions.append(button);
      }
      const vials = experiment.vials.map((v) => v.vial).join(", ");
      const tr = row([cell(`${experiment.name} v${experiment.version}`), cell(experiment.status),
                      cell(experiment.elapsed_h.toFixed(2)), cell(vials), actions]);
      tr.dataset.experiment = experiment.name;
      tr.dataset.status = experiment.status;
      list.append(tr);
    }
    this.renderVials();
  }

  renderVials() {
    const body = this.el.vials;
    body.replaceChildren();
    for (const experiment of this.experiments) {
      if (!["running", "paused", "scheduled"].includes(experiment.status)) continue;
      for (const v of experiment.vials) {
        body.append(row([cell(String(v.vial)), cell(experiment.name), cell(v.mode), cell(fixed(v.od, 3)),
                         cell(fixed(v.od_set, 2)), cell(fixed(v.growth_rate_per_h, 3)), cell(String(v.doses))]));
      }
    }
  }

  definitionFor(name) {
    const found = this.experiments.find((e) => e.name === name);
    return found ? found.definition : null;
  }
}

function actionsFor(status) {
  if (status === "running") return ["pause", "stop", "load"];
  if (status === "paused") return ["resume", "stop", "load"];
  if (status === "scheduled") return ["stop", "load"];
  return ["load"];
}

function fixed(value, digits) {
  return typeof value === "number" ? value.toFixed(digits) : "–";
}
