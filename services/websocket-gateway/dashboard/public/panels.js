// The robot and services panels: retained state/* of smoothie and gpio, every service's $state, recent errors.

const AXES = ["X", "Y", "Z", "A", "B", "C"];
const MAX_ERRORS = 50;
const $ = (id) => document.getElementById(id);

export class RobotPanel {
  constructor() {
    this.smoothie = {};   // state name -> value
    this.gpio = {};
    AXES.forEach((axis) => {
      const row = document.createElement("tr");
      row.dataset.axis = axis;
      row.innerHTML = `<th>${axis}</th><td class="num">–</td><td>–</td><td>–</td>`;
      $("axes").appendChild(row);
    });
  }

  update(service, name, value) {
    if (service === "smoothie") this.smoothie[name] = value;
    else if (service === "gpio") this.gpio[name] = value;
    else return;
    this.render();
  }

  lightsOn() {
    return Boolean(this.gpio.lights && this.gpio.lights.on);
  }

  doorOpen() {
    const door = this.gpio.door;
    return Boolean(door && (door.door === "open" || door.window === "open"));
  }

  render() {
    const s = this.smoothie, g = this.gpio;
    AXES.forEach((axis) => {
      const cells = document.querySelector(`tr[data-axis="${axis}"]`).children;
      cells[1].textContent = s.position ? Number(s.position[axis]).toFixed(2) : "–";
      cells[2].innerHTML = flag(s.homed, axis, "homed", "not homed");
      cells[3].innerHTML = flag(s.engaged, axis, "on", "off");
    });
    const door = g.door;
    const doorText = !door ? "unknown" : (this.doorOpen() ? "door open" : "door closed");
    setPill($("door"), doorText, !door ? "warn" : (this.doorOpen() ? "bad" : "good"),
      door ? `since ${new Date(door.since).toLocaleString()}` : "");
    const paused = s.paused;
    setPill($("paused"), !paused ? "unknown" : (paused.paused ? `paused (${paused.reason || "?"})` : "free to move"),
      !paused ? "warn" : (paused.paused ? "warn" : "good"));
    $("resume").hidden = !(paused && paused.paused) || this.doorOpen();
    const alarm = s.alarm;
    setPill($("alarm"), !alarm ? "unknown" : (alarm.active ? `ALARM: ${alarm.message || ""}` : "none"),
      !alarm ? "warn" : (alarm.active ? "bad" : "good"));
    const lease = s.lease;
    $("lease").textContent = !lease ? "unknown" : (lease.holder ? `held by ${lease.holder}` : "free");
    const lights = g.lights;
    $("lights").textContent = !lights ? "unknown" : `rail ${lights.on ? "on" : "off"} · button ${lights.button.color}`
      + ` ${lights.button.pattern} (${lights.button.source})`;
    $("lights-toggle").textContent = this.lightsOn() ? "Lights off" : "Lights on";
    $("firmware").textContent = s.firmware ? s.firmware.version : "unknown";
    $("pipettes").textContent = s.pipettes ? ["left", "right"].map((mount) => {
      const p = s.pipettes[mount];
      return `${mount}: ${p && p.model ? `${p.model} (${p.id || "no id"})` : "empty"}`;
    }).join(" · ") : "unknown";
  }
}

function flag(flags, axis, yes, no) {
  if (!flags) return "–";
  return flags[axis] ? `<span class="pill good">${yes}</span>` : `<span class="pill muted-pill">${no}</span>`;
}

function setPill(element, text, kind, title = "") {
  element.innerHTML = "";
  const pill = document.createElement("span");
  pill.className = `pill ${kind}`;
  pill.textContent = text;
  if (title) pill.title = title;
  element.appendChild(pill);
}

export class ServicesPanel {
  constructor() {
    this.states = {};
    this.errors = [];
  }

  updateState(service, value) {
    if (value === null) delete this.states[service];
    else this.states[service] = value;
    this.render();
  }

  addError(service, name, payload) {
    this.errors.unshift({ at: new Date(), service, name, payload });
    this.errors.length = Math.min(this.errors.length, MAX_ERRORS);
    this.renderErrors();
  }

  render() {
    const rows = Object.keys(this.states).sort().map((service) => {
      const s = this.states[service];
      const row = document.createElement("tr");
      row.dataset.service = service;
      const kind = s.state === "ready" ? "good" : (s.state === "degraded" || s.state === "starting" ? "warn" : "bad");
      row.innerHTML = `<th>${escapeHtml(service)}</th><td><span class="pill ${kind}">${escapeHtml(s.state)}</span></td>`
        + `<td title="${escapeHtml(s.since || "")}">${s.since ? since(s.since) : "–"}</td><td>${escapeHtml(s.reason || "")}</td>`;
      return row;
    });
    $("service-states").replaceChildren(...rows);
  }

  renderErrors() {
    const items = this.errors.map(({ at, service, name, payload }) => {
      const li = document.createElement("li");
      li.innerHTML = `<time>${at.toLocaleTimeString()}</time> <b>${escapeHtml(service)}</b> ${escapeHtml(name)}: `
        + escapeHtml(describe(payload));
      return li;
    });
    $("errors").replaceChildren(...items);
  }
}

// "12:03:04 (5 min ago)"; the relative part is refreshed by main.js from the local clock, never by asking anyone
export function since(iso) {
  const then = new Date(iso);
  if (Number.isNaN(then.getTime())) return iso;
  const seconds = Math.max(0, (Date.now() - then.getTime()) / 1000);
  const ago = seconds < 60 ? `${Math.round(seconds)} s` : seconds < 3600 ? `${Math.round(seconds / 60)} min`
    : seconds < 172800 ? `${Math.round(seconds / 3600)} h` : `${Math.round(seconds / 86400)} d`;
  const sameDay = then.toDateString() === new Date().toDateString();
  return `${sameDay ? then.toLocaleTimeString() : then.toLocaleString()} (${ago} ago)`;
}

function describe(payload) {
  if (!payload || typeof payload !== "object") return String(payload);
  if (payload.message) return [payload.param, payload.kind, payload.message].filter(Boolean).join(" · ");
  if (payload.overrun_s !== undefined) return `cycle ${payload.cycle} overran by ${payload.overrun_s.toFixed(2)} s`;
  return JSON.stringify(payload).slice(0, 200);
}

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
