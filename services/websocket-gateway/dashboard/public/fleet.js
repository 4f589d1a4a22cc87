// The fleet page: one row per device seen on the central broker, built only from what /ws delivers (retained
// $state and state/* on subscribing, then live events). No device list is configured anywhere: a device appears
// when its fleet bridge first publishes.
import { Bus } from "./bus.js";
import { cell } from "./dom.js";

const FILTERS = ["benchbus/+/+/$state", "benchbus/+/fleet/state/link", "benchbus/+/scheduler/event/broadcast",
                 "benchbus/+/scheduler/event/overrun", "benchbus/+/smoothie/state/#"];
const devices = new Map();  // id -> {services: Map(name -> $state), link, broadcast, robot, alarms: []}

function device(id) {
  if (!devices.has(id)) devices.set(id, { services: new Map(), link: null, broadcast: null, robot: null, alarms: [] });
  return devices.get(id);
}

function kind(entry) {
  if (entry.services.has("scheduler") || entry.services.has("samd")) return "rig";
  if (entry.services.has("smoothie")) return "robot";
  return "?";
}

function alarmsOf(entry) {
  const alarms = [];
  for (const [name, state] of entry.services) {
    if (state && state.state !== "ready") alarms.push(`${name} ${state.state}${state.reason ? ": " + state.reason : ""}`);
  }
  if (entry.link === 0) alarms.push("link down: the central side holds its last values; the device queues the rest");
  if (entry.broadcast && entry.broadcast.errors) {
    for (const [param, message] of Object.entries(entry.broadcast.errors)) alarms.push(`${param}: ${message}`);
  }
  return alarms.concat(entry.alarms.slice(-3));
}

function lastOf(entry) {
  if (entry.broadcast) {
    const b = entry.broadcast;
    const when = new Date(b.timestamp * 1000).toLocaleTimeString();
    const od = b.calibrated && b.calibrated.od ? ` OD ${b.calibrated.od.slice(0, 4).map((v) => v == null ? "-" : v.toFixed(2)).join(" ")} ...` : "";
    return `broadcast ${b.cycle} at ${when}${od}`;
  }
  if (entry.robot) return Object.entries(entry.robot).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join("; ");
  return "";
}

function render() {
  const body = document.querySelector("#fleet tbody");
  body.replaceChildren();
  for (const id of [...devices.keys()].sort()) {
    const entry = devices.get(id);
    const row = document.createElement("tr");
    row.dataset.device = id;
    const name = document.createElement("td");
    const view = document.createElement("a");
    view.href = `index.html?device=${encodeURIComponent(id)}`;  // its dashboard, through the central broker
    view.textContent = id;
    name.append(view);
    row.append(name, cell(kind(entry)),
               cell(entry.link === null ? "?" : entry.link ? "up" : "down", entry.link === 0 ? "link-down" : "link-up"));
    const services = document.createElement("td");
    for (const [name, state] of [...entry.services].sort()) {
      const span = document.createElement("span");
      span.className = `svc ${state ? state.state : "offline"}`;
      span.textContent = `${name}: ${state ? state.state : "gone"}`;
      services.append(span);
    }
    row.append(services, cell(lastOf(entry)));
    const alarms = alarmsOf(entry);
    row.append(cell(alarms.join("; "), alarms.length ? "alarm" : ""));
    body.append(row);
  }
}

function onMessage(topic, payload) {
  const [, id, service, kindLevel, name] = topic.split("/");
  const entry = device(id);
  if (service === "fleet" && kindLevel === "state" && name === "link") entry.link = Number(payload);
  else if (kindLevel === "$state" && service !== "fleet") entry.services.set(service, payload);
  else if (service === "scheduler" && name === "broadcast") entry.broadcast = payload;
  else if (service === "scheduler" && name === "overrun") entry.alarms.push(`overrun ${payload.overrun_s} s`);
  else if (service === "smoothie" && kindLevel === "state") entry.robot = { ...(entry.robot || {}), [name]: payload };
  render();
}

const link = document.getElementById("link");
new Bus({ filters: FILTERS, onMessage, onLink: (state) => { link.textContent = state; }, onAccess: () => {} }).connect();
