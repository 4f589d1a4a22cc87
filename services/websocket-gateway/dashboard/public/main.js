// The page: one /ws connection feeds everything (nothing polls); the history of broadcasts comes once per connection
// from GET /api/history so the curves survive a reload. Writes (lights, home, resume) need the gateway's token.

import { Bus } from "./bus.js";
import { CalibrationsPanel } from "./calibrations.js";
import { ExperimentsPanel } from "./experiments.js";
import { pumpCommand, readNumber, stirCommand, temperatureCommand } from "./vialcontrols.js";
import { RobotPanel, ServicesPanel } from "./panels.js";
import { RecorderPanels, pickedRange } from "./recorder.js";
import { RunsPanel, readFile } from "./runs.js";
import { RigData, RigView } from "./rig.js";

const $ = (id) => document.getElementById(id);
const FILTERS = ["+/$state", "+/state/#", "+/event/#"];

const rig = new RigData();
const robot = new RobotPanel();
const services = new ServicesPanel();
const calibrations = new CalibrationsPanel({ active: $("calibration-active"), chart: $("cal-chart"),
                                             summary: $("cal-summary") });
const experiments = new ExperimentsPanel({ list: $("experiment-list"), vials: $("experiment-vials"),
                                           definition: $("experiment-definition") });
const runs = new RunsPanel({
  protocols: $("run-protocols"), analysis: $("run-analysis"), status: $("run-status"), step: $("run-step"),
  progress: $("run-progress"), errors: $("run-errors"), steps: $("run-steps"), play: $("run-play"),
  pause: $("run-pause"), stop: $("run-stop"), create: $("run-create"),
});
let rigView = null;
let liveSince = null;  // the rig time of the first live broadcast: pump runs before it come from the history

if (typeof uPlot === "undefined") {
  notice("The charts need uPlot: run `npm ci` in services/websocket-gateway/dashboard on the gateway.");
} else {
  rigView = new RigView(rig, {
    vials: $("vials"), cycleChart: $("cycle-chart"), cycle: $("cycle"), units: $("units"),
    status: $("param-status"), overruns: $("overruns"),
  });
}

const bus = new Bus({ filters: FILTERS, onMessage, onLink, onAccess });
const recorder = new RecorderPanels(() => (bus.token ? { Authorization: `Bearer ${bus.token}` } : {}));
bus.connect();

// -- from the bus ---------------------------------------------------------------------------------------------------

function onMessage(topic, payload) {
  const levels = topic.split("/");  // benchbus/<device>/<service>/<kind>[/<name>]
  if (levels.length < 4 || levels[0] !== "benchbus") return;
  const [, device, service, kind] = levels;
  const name = levels.slice(4).join("/");
  $("device").textContent = device;
  if (kind === "$state") services.updateState(service, payload);
  if (kind === "$state" && service === "recorder") recorder.setRunning(payload && payload.state === "ready");
  else if (kind === "state") onState(service, name, payload);
  else if (kind === "event") onEvent(service, name, payload);
}

function onState(service, name, payload) {
  robot.update(service, name, payload);
  if (service === "experiment" && name === "experiments") {
    experiments.update(payload);
    rig.growth = {};
    for (const experiment of payload.experiments || []) {
      for (const v of experiment.vials || []) {
        if (experiment.status === "running" && typeof v.growth_rate_per_h === "number") {
          rig.growth[v.vial] = v.growth_rate_per_h;
        }
      }
    }
    redrawRig();
  }
  if (service === "runner" && name === "run") runs.updateRun(payload);
  if (service === "calibration" && name === "active") calibrations.update(payload);
  if (service === "calibration" && name === "active") {
    rig.setTemperatureFit(payload);
    redrawRig();
  }
}

function onEvent(service, name, payload) {
  if (service === "scheduler" && name === "broadcast") {
    if (liveSince === null) liveSince = payload.timestamp;
    if (rig.addLive(payload)) redrawRig();
  } else if (service === "scheduler" && name === "command_result") {
    if (payload.param === "pump" && payload.outcome === "applied") {
      rig.addPumpMark(rig.rigNow(), payload.values || []);
      redrawRig();
    } else if (payload.outcome === "failed") {
      services.addError(service, `command ${payload.param} failed`, payload.error || payload);
    }
  } else if (service === "scheduler" && name === "overrun") {
    rig.overruns.push(payload);
    if (rig.overruns.length > 100) rig.overruns.shift();
    services.addError(service, name, payload);
    redrawRig();
  } else if (service === "runner" && name === "command") {
    runs.commandEvent(payload);
  } else if (service === "runner" && name === "run" && payload.status === "failed") {
    services.addError(service, `run ${payload.run_id} failed`, payload.reason || payload);
  } else if (name === "error" || (service === "smoothie" && name === "alarm")) {
    services.addError(service, name, payload);
  }
}

function redrawRig() {
  if (rigView) rigView.schedule();
}

async function loadHistory() {
  let range;
  try {
    range = pickedRange();
  } catch (error) {
    $("history-result").textContent = error.message;
    return;
  }
  $("history-result").textContent = "loading…";
  $("export").href = recorder.exportLink(range);
  try {
    // from the recorder through the gateway (days, across gateway restarts); reads are open by default, and a
    // gateway that closes them (read_requires_token) takes the same token
    const broadcasts = await recorder.history(range);
    rig.reset(!range.live);
    for (const entry of broadcasts) rig.add(entry.broadcast);
    rig.marksFromHistory(range.live ? (liveSince ?? Infinity) : Infinity);
    redrawRig();
    $("history-result").textContent = "";
  } catch (error) {
    $("history-result").textContent = "";
    notice(`Could not load the broadcasts of that range (${error.message}); the curves start now.`);
  }
}

$("history").addEventListener("submit", (event) => {
  event.preventDefault();
  loadHistory();
});
$("range").addEventListener("change", () => {
  try {
    $("export").href = recorder.exportLink(pickedRange());
  } catch { /* a custom range is still being entered */ }
});
$("export-format").addEventListener("change", () => {
  try {
    $("export").href = recorder.exportLink(pickedRange());
  } catch { /* a custom range is still being entered */ }
});
$("export").addEventListener("click", () => {
  try {
    $("export").href = recorder.exportLink(pickedRange());  // "last 24 h" means up to this click
  } catch (error) {
    $("history-result").textContent = error.message;
  }
});
$("audit-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  recorder.audit();
});

// -- connection and access ------------------------------------------------------------------------------------------

function onLink(state, detail = "") {
  const link = $("link");
  link.dataset.state = state;
  link.className = `pill ${state === "live" ? "good" : "bad"}`;
  link.textContent = state === "live" ? "live" : state === "connecting" ? "connecting…" : `disconnected, ${detail}`;
  if (state === "live") {
    loadHistory();
  }
}

function onAccess(state, detail = "") {
  const writable = state === "writes";
  const text = $("access-text");
  text.dataset.state = state;
  text.className = `pill ${writable ? "good" : "warn"}`;
  text.textContent = { "read-only": "read-only", checking: "checking token…", writes: "writes enabled",
                       refused: "token refused: read-only" }[state];
  $("token").hidden = writable;
  $("token-save").hidden = writable;
  $("token-forget").hidden = !writable;
  for (const button of document.querySelectorAll("button.write")) button.disabled = !writable;
  experiments.setWritable(writable);
  runs.setWritable(writable);
  if (writable) listProtocols();
  const hint = $("readonly");
  hint.hidden = writable || state === "checking";
  hint.textContent = `Read-only: enter the gateway's token to switch the lights or home the robot.${detail ? ` (${detail})` : ""}`;
}

$("access").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token").value;
  $("token").value = "";
  if (token.trim()) bus.useToken(token);
});

$("token-forget").addEventListener("click", () => {
  bus.forgetToken();
  onAccess("read-only");
});

// -- actions (writes) -----------------------------------------------------------------------------------------------

// Shows what a write is doing, then its result or why it was refused, in the panel's result line; returns the
// refusal (or null), for the callers that show more of it.
async function act(label, action, resultId = "robot-result") {
  const result = $(resultId);
  result.className = "result";
  result.textContent = `${label}…`;
  try {
    result.textContent = await action();
    result.classList.add("ok");
  } catch (error) {
    result.textContent = `${label} refused (${error.code || "error"}): ${error.message}`;
    result.classList.add("refused");
    return error;
  }
  return null;
}

$("lights-toggle").addEventListener("click", () => act("lights", async () => {
  const lights = await bus.call("gpio", "set_rail_lights", { on: !robot.lightsOn() });
  robot.update("gpio", "lights", lights);
  return `lights ${lights.on ? "on" : "off"}`;
}));

// Homing takes the motion lease for itself and always gives it back, so it never interrupts another client's move.
$("home").addEventListener("click", () => act("home", async () => {
  const lease = await bus.call("smoothie", "acquire_motion", { ttl_s: 120 });
  try {
    await bus.call("smoothie", "home", {}, 120);
  } finally {
    await bus.call("smoothie", "release_motion", { lease_id: lease.lease_id }).catch(() => {});
  }
  return "homed all axes";
}));

$("resume").addEventListener("click", () => act("resume", async () => {
  await bus.call("smoothie", "resume", {});
  return "motion resumed";
}));

// Experiments: start or edit from the definition box; pause, resume, stop per experiment; load copies one's definition.
async function experimentAct(label, action) {
  const result = $("experiment-result");
  result.className = "result";
  result.textContent = `${label}…`;
  try {
    const status = await action();
    result.textContent = `${status.name} v${status.version}: ${status.status}`;
    result.classList.add("ok");
  } catch (error) {
    result.textContent = `${label} refused (${error.code || "error"}): ${error.message}`;
    result.classList.add("refused");
  }
}

function definitionFromBox() {
  try {
    return JSON.parse($("experiment-definition").value);
  } catch (error) {
    throw Object.assign(new Error(`the definition is not JSON: ${error.message}`), { code: "invalid_request" });
  }
}

$("experiment-start").addEventListener("click", () => experimentAct("start", () =>
  bus.call("experiment", "start", { definition: definitionFromBox() })));
$("experiment-edit").addEventListener("click", () => experimentAct("edit", () =>
  bus.call("experiment", "edit", { definition: definitionFromBox() })));
$("experiment-list").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const { action, name } = button.dataset;
  if (action === "load") {
    const definition = experiments.definitionFor(name);
    if (definition) $("experiment-definition").value = JSON.stringify(definition, null, 2);
    return;
  }
  experimentAct(action, () => bus.call("experiment", action, { name }));
});

// Vial controls: one vial's temperature, stir or pump run through the scheduler, as the GUI sends them.
async function vialAct(label, makeCommand) {
  const result = $("vial-result");
  result.className = "result";
  result.textContent = `${label}…`;
  try {
    const vial = readNumber($("vc-vial"), "vial", 0, 15);
    const accepted = await bus.call("scheduler", "command", makeCommand(vial));
    result.textContent = `vial ${vial}: ${label} ${accepted.applies === "not_sent" ? "stored" : "sent"}`;
    result.classList.add("ok");
  } catch (error) {
    result.textContent = `${label} refused (${error.code || "error"}): ${error.message}`;
    result.classList.add("refused");
  }
}

$("vc-temp-set").addEventListener("click", () => vialAct("temperature", (vial) =>
  temperatureCommand(vial, readNumber($("vc-temp"), "°C", 15, 50), rig.tempFit)));
$("vc-stir-set").addEventListener("click", () => vialAct("stir", (vial) =>
  stirCommand(vial, readNumber($("vc-stir"), "stir", 0, 20))));
$("vc-pump").addEventListener("click", () => vialAct("pump", (vial) =>
  pumpCommand(vial, readNumber($("vc-in"), "influx s", 0, 60), readNumber($("vc-out"), "efflux s", 0, 60))));

$("cal-show").addEventListener("click", async () => {
  const summary = $("cal-summary");
  try {
    const kind = $("cal-type").value;
    const fit = calibrations.fitOf(kind);
    if (!fit) throw new Error(`no active ${kind} fit`);
    const vial = readNumber($("cal-vial"), "vial", 0, 15);
    const found = await bus.call("calibration", "get_calibration", { name: fit.calibration });
    if (typeof uPlot === "undefined") throw new Error("the chart needs uPlot");
    calibrations.show(kind, vial, found.calibration);
  } catch (error) {
    summary.textContent = `calibration view: ${error.message}`;
  }
});

// Runs: upload (the analysis, or the refusal with its line), make a run of the shown protocol, play / pause / stop.
function runAct(label, action) {
  return act(label, action, "run-result");
}

async function listProtocols() {
  try {
    runs.setProtocols((await bus.call("runner", "list", {})).protocols);
  } catch (error) {
    $("run-result").textContent = `the protocols could not be listed (${error.code || "error"}): ${error.message}`;
  }
}

$("run-upload").addEventListener("click", async () => {
  const picked = $("run-protocol").files[0];
  if (!picked) {
    $("run-result").textContent = "pick a protocol (.py) first";
    return;
  }
  const refusal = await runAct("upload", async () => {
    const labware = await Promise.all([...$("run-labware").files].map(readFile));
    const protocol = await bus.call("runner", "upload", { file_name: picked.name, source: await picked.text(),
                                                          labware }, 120);
    runs.showAnalysis(protocol);
    listProtocols();
    return `${protocol.file_name}: analysed, ${protocol.analysis.steps.length} steps`;
  });
  if (refusal && refusal.code === "invalid_request") runs.showRefusal(refusal);
});

$("run-protocols").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action='show']");
  const protocol = button && runs.protocol(button.dataset.protocol);
  if (protocol) runs.showAnalysis(protocol);
});

$("run-create").addEventListener("click", () => runAct("run", async () => {
  const run = await bus.call("runner", "create_run", { protocol_id: runs.shown.id }, 30);
  runs.updateRun(run);
  return `run ${run.id} made: press Play`;
}));

for (const verb of ["play", "pause", "stop"]) {
  $(`run-${verb}`).addEventListener("click", () => runAct(verb, async () => {
    const run = await bus.call("runner", verb, { run_id: runs.run.id }, 30);
    return `run ${run.id}: ${run.status}`;
  }));
}

// -- helpers --------------------------------------------------------------------------------------------------------

function notice(text) {
  const element = $("notice");
  element.textContent = text;
  element.hidden = !text;
}

// the "since" column says how long ago: refresh that text from the local clock (no request)
setInterval(() => services.render(), 15000);
