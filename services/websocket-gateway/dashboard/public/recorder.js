// What the recorder keeps, through the gateway's relay (/api/history, /api/recorder/...): a time range of the rig's
// history, exports of that range, and the audit trail (who ran which command, when, with which result).
// Without a recorder the gateway answers /api/recorder/... with 503 and these panels say so.
import { DEVICE } from "./bus.js";

const $ = (id) => document.getElementById(id);
const HISTORY_POINTS = 5000;  // broadcasts drawn at most; a longer range comes thinned evenly by the recorder

// The range the picker describes, in UNIX seconds; `live` when it ends now (new broadcasts keep coming in).
export function pickedRange(now = Date.now() / 1000) {
  const choice = $("range").value;
  if (choice !== "custom") return { start: now - Number(choice), end: null, live: true };
  const start = Date.parse($("range-from").value) / 1000;
  const end = $("range-to").value ? Date.parse($("range-to").value) / 1000 : null;
  if (!Number.isFinite(start)) throw new Error("choose the start of the range");
  if (end !== null && !(end > start)) throw new Error("the end of the range must be after its start");
  return { start, end, live: end === null };
}

function query(params) {
  const search = new URLSearchParams();
  if (DEVICE) search.set("device", DEVICE);  // a device's view on a lab's central gateway: the lab recorder's rows
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  return search.toString();
}

export class RecorderPanels {
  constructor(headers) {
    this.headers = headers;  // () => the Authorization header when the page holds the gateway's token
    this.running = false;    // the recorder's $state is ready (its routes answer only then)
    $("range").addEventListener("change", () => {
      const custom = $("range").value === "custom";
      $("range-from").hidden = !custom;
      $("range-to").hidden = !custom;
    });
  }

  async fetchJson(path) {
    const response = await fetch(path, { cache: "no-store", headers: this.headers() });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error((body.error && body.error.message) || `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // The broadcasts of the picked range (the gateway's own ring when no recorder runs).
  async history(range) {
    const body = await this.fetchJson(`api/history?${query({ start: range.start, end: range.end,
                                                             limit: HISTORY_POINTS })}`);
    $("history-source").textContent = body.source === "recorder"
      ? `${(body.broadcasts || []).length} broadcasts from the recorder`
      : "the gateway's recent broadcasts (no recorder on this device)";
    return body.broadcasts || [];
  }

  // A link to the streamed export of the picked range (the browser saves it as it arrives).
  exportLink(range) {
    const format = $("export-format").value;
    return `api/recorder/export?${query({ format, start: range.start, end: range.end })}`;
  }

  // Follows the recorder's $state: the audit trail loads when it is ready, and says so when it is not.
  setRunning(running) {
    const was = this.running;
    this.running = running;
    if (running && !was) this.audit();
    if (!running) $("audit-rows").replaceChildren(messageRow("the recorder is not running on this device"));
    $("export").hidden = !running;
  }

  async audit() {
    if (!this.running) {
      $("audit-rows").replaceChildren(messageRow("the recorder is not running on this device"));
      return;
    }
    const failedOnly = $("audit-failed").checked;
    const filters = { limit: 200, principal: $("audit-principal").value.trim(),
                      service: $("audit-service").value.trim(), command: $("audit-command").value.trim(),
                      ok: failedOnly ? "false" : "" };
    const body = $("audit-rows");
    try {
      const records = (await this.fetchJson(`api/recorder/audit?${query(filters)}`)).result.records;
      body.replaceChildren(...records.map(auditRow));
      if (!records.length) body.replaceChildren(messageRow("no command matches"));
    } catch (error) {
      body.replaceChildren(messageRow(error.status === 503 ? "the recorder is not running on this device"
                                                           : `could not load the audit trail: ${error.message}`));
    }
  }
}

function auditRow(record) {
  const row = document.createElement("tr");
  const who = record.on_behalf_of ? `${record.principal} for ${record.on_behalf_of}` : record.principal;
  const outcome = record.ok ? "ok" : `${record.error ? record.error.code : "failed"}`;
  const cells = [new Date(record.time * 1000).toLocaleString(), who, `${record.service}/${record.command}`,
                 outcome, record.duration_ms == null ? "" : `${Number(record.duration_ms).toFixed(1)} ms`];
  for (const text of cells) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.appendChild(cell);
  }
  row.children[3].className = record.ok ? "ok" : "refused";
  if (!record.ok && record.error) row.children[3].title = record.error.message || "";
  if (record.request != null) row.children[2].title = JSON.stringify(record.request);
  return row;
}

function messageRow(text) {
  const row = document.createElement("tr");
  const cell = document.createElement("td");
  cell.colSpan = 5;
  cell.className = "muted";
  cell.textContent = text;
  row.appendChild(cell);
  return row;
}
