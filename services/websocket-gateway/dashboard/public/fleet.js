// The fleet page: one row per device seen on the central broker, built only from what /ws delivers (retained
// $state and state/* on subscribing, then live events). No device list is configured anywhere: a device appears
// when its fleet bridge first publishes.
import { Bus } from "./bus.js";
import { cell } from "./dom.js";

const FILTERS = ["benchbus/+/+/$state", "benchbus/+/fleet/state/link", "benchbus/+/scheduler/event/broadcast",
                 "benchbus/+/scheduler/event/overrun", "benchbus/+/smoothie/state/#"];
// id -> {row, services: Map(name -> $state), link, broadcast, robot, alarms: []}; the row is made once and kept,
// never rebuilt, so a live update cannot swallow a click on it
const devices = new Map();

function device(id) {
  if (!devices.has(id)) {
    devices.set(id, { row: newRow(id), services: new Map(), link: null, broadcast: null, robot: null, alarms: [] });
  }
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

function newRow(id) {
  const row = document.createElement("tr");
  row.dataset.device = id;
  const view = document.createElement("a");
  view.href = `index.html?device=${encodeURIComponent(id)}`;  // its dashboard, through the central broker
  view.textContent = id;
  const name = document.createElement("td");
  name.append(view);
  row.append(name, cell(""), cell(""), cell(""), cell(""), cell(""));
  const after = [...devices.keys()].sort().find((other) => other > id);  // the table stays sorted by id
  document.querySelector("#fleet tbody").insertBefore(row, after === undefined ? null : devices.get(after).row);
  return row;
}

function setCell(td, text, className = "") {
  if (td.textContent !== text) td.textContent = text;
  if (td.className !== className) td.className = className;
}

function serviceSpans(entry) {
  return [...entry.services].sort().map(([name, state]) => {
    const span = document.createElement("span");
    span.className = `svc ${state ? state.state : "offline"}`;
    span.textContent = `${name}: ${state ? state.state : "gone"}`;
    return span;
  });
}

function render(id) {
  const entry = devices.get(id);
  const [, kindCell, linkCell, servicesCell, lastCell, alarmsCell] = entry.row.children;
  setCell(kindCell, kind(entry));
  setCell(linkCell, entry.link === null ? "?" : entry.link ? "up" : "down", entry.link === 0 ? "link-down" : "link-up");
  const spans = serviceSpans(entry);
  if (servicesCell.textContent !== spans.map((span) => span.textContent).join("")) servicesCell.replaceChildren(...spans);
  setCell(lastCell, lastOf(entry));
  const alarms = alarmsOf(entry);
  setCell(alarmsCell, alarms.join("; "), alarms.length ? "alarm" : "");
}

function onMessage(topic, payload) {
  const [, id, service, kindLevel, name] = topic.split("/");
  const entry = device(id);
  if (service === "fleet" && kindLevel === "state" && name === "link") entry.link = Number(payload);
  else if (kindLevel === "$state" && service !== "fleet") entry.services.set(service, payload);
  else if (service === "scheduler" && name === "broadcast") entry.broadcast = payload;
  else if (service === "scheduler" && name === "overrun") entry.alarms.push(`overrun ${payload.overrun_s} s`);
  else if (service === "smoothie" && kindLevel === "state") entry.robot = { ...(entry.robot || {}), [name]: payload };
  render(id);
}

const link = document.getElementById("link");
new Bus({ filters: FILTERS, onMessage, onLink: (state) => { link.textContent = state; }, onAccess: () => {} }).connect();
