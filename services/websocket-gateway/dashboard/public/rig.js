// The rig: every scheduler broadcast kept (bounded), and drawn as one small uPlot chart per vial plus the cycle chart.
// A broadcast carries raw board data (strings), calibrated values where an active calibration exists, the conf
// (setpoints, stir, pump), per-param status and the cycle's timing; see bus-schemas scheduler.Broadcast.

const MAX_BROADCASTS = 5000;   // the gateway's default history size: 24 h at a 20 s cycle fits
const VIALS = 16;
const PUMP_COLOR = "#2f6fdf";
const OD_COLOR = "#0a7a45";
const TEMP_COLOR = "#c0392b";

export class RigData {
  constructor() {
    this.broadcasts = [];       // sorted by timestamp
    this.seen = new Set();      // timestamps already kept (the history and the live stream overlap)
    this.pumpMarks = [];        // {t, vials: [bool x 16]}
    this.overruns = [];         // scheduler event/overrun payloads (for their slowest steps), newest last
    this.tempFit = null;        // per vial [m, b] of the active linear temperature fit, for the setpoints
    this.growth = {};           // vial -> the growth rate (1/h) an on-device experiment last estimated
    this.clockOffset = 0;       // the rig's clock minus this browser's, from the last live broadcast
  }

  // The rig's time now, so a live pump mark lands on the broadcasts' time axis even when the clocks disagree.
  rigNow() {
    return Date.now() / 1000 + this.clockOffset;
  }

  addLive(broadcast) {
    const t = Number(broadcast && broadcast.timestamp);
    if (Number.isFinite(t)) this.clockOffset = t - Date.now() / 1000;
    if (this.frozen) return false;  // a past range is on show: new broadcasts do not stretch it
    return this.add(broadcast);
  }

  // Forget every broadcast and mark (a new time range is about to be loaded).
  reset(frozen = false) {
    this.broadcasts = [];
    this.seen = new Set();
    this.pumpMarks = [];
    this.frozen = frozen;
  }

  add(broadcast) {
    const t = Number(broadcast && broadcast.timestamp);
    if (!Number.isFinite(t) || this.seen.has(t)) return false;
    this.seen.add(t);
    const list = this.broadcasts;
    if (list.length === 0 || list[list.length - 1].timestamp < t) list.push(broadcast);
    else list.splice(insertionIndex(list, t), 0, broadcast);
    while (list.length > MAX_BROADCASTS) this.seen.delete(list.shift().timestamp);
    return true;
  }

  // Pump runs from the history (before the page was live): a change of the pump's stored value in the conf.
  marksFromHistory(before) {
    let previous = null;
    for (const b of this.broadcasts) {
      if (b.timestamp >= before) break;
      const value = b.config && b.config.pump ? b.config.pump.value : null;
      const key = JSON.stringify(value);
      if (previous !== null && key !== previous && Array.isArray(value)) this.addPumpMark(b.timestamp, value);
      previous = key;
    }
  }

  // A live pump command that reached the board (scheduler event/command_result, outcome applied).
  addPumpMark(t, values) {
    const vials = [];
    for (let v = 0; v < VIALS; v++) {
      // 48 pump channels: influx 0-15, efflux 16-31, a third pump 32-47; "--" leaves a pump as it is
      vials.push([v, v + VIALS, v + 2 * VIALS].some((i) => parseFloat(values[i]) > 0));
    }
    if (vials.some(Boolean) && !this.pumpMarks.some((m) => m.t === t)) this.pumpMarks.push({ t, vials });
    const oldest = this.broadcasts.length ? this.broadcasts[0].timestamp : -Infinity;
    this.pumpMarks = this.pumpMarks.filter((m) => m.t >= oldest - 3600);
  }

  setTemperatureFit(active) {
    const fit = active && active.by_type ? active.by_type.temperature : null;
    this.tempFit = fit && fit.type === "linear" && Array.isArray(fit.coefficients) ? fit.coefficients : null;
  }

  latest() {
    return this.broadcasts.length ? this.broadcasts[this.broadcasts.length - 1] : null;
  }

  // What the OD and temperature curves show: calibrated when the latest broadcast has calibrated values.
  units() {
    const last = this.latest();
    const calibrated = (last && last.calibrated) || {};
    const names = (last && last.calibration) || {};
    const data = (last && last.data) || {};
    const rawOd = "od_90" in data ? "od_90" : Object.keys(data).find((k) => k.startsWith("od_") && k !== "od_led") || "od_90";
    return {
      od: calibrated.od ? { calibrated: true, label: `OD (calibrated: ${names.od || "active fit"})` }
                        : { calibrated: false, param: rawOd, label: `OD raw (${rawOd}, ADC counts)` },
      temp: calibrated.temp ? { calibrated: true, label: `°C (calibrated: ${names.temp || "active fit"})` }
                            : { calibrated: false, label: "temperature raw (temp, ADC counts)" },
    };
  }

  setpoint(raw, vial, calibrated) {
    const value = parseFloat(raw);
    if (!Number.isFinite(value)) return null;
    const fit = this.tempFit && this.tempFit[vial];
    if (!calibrated) return value;
    return Array.isArray(fit) && fit.length >= 2 ? Number(fit[0]) * value + Number(fit[1]) : null;
  }

  // Columns for the charts, in uPlot's shape: [x, y1, y2, ...] with null where a value is missing.
  vialColumns(vial, units) {
    const t = [], od = [], temp = [], set = [];
    for (const b of this.broadcasts) {
      t.push(b.timestamp);
      od.push(units.od.calibrated ? pick(b.calibrated && b.calibrated.od, vial) : number(pick(b.data && b.data[units.od.param], vial)));
      temp.push(units.temp.calibrated ? pick(b.calibrated && b.calibrated.temp, vial) : number(pick(b.data && b.data.temp, vial)));
      const conf = b.config && b.config.temp ? b.config.temp.value : null;
      set.push(this.setpoint(Array.isArray(conf) ? conf[vial] : conf, vial, units.temp.calibrated));
    }
    return [t, od, temp, set];
  }

  cycleColumns() {
    const t = [], cycle = [], timing = [], over = [];
    for (const b of this.broadcasts) {
      t.push(b.timestamp);
      cycle.push(number(b.cycle_s));
      timing.push(number(b.broadcast_timing));
      over.push(b.cycle_s > b.broadcast_timing ? b.cycle_s : null);
    }
    return [t, cycle, timing, over];
  }
}

function insertionIndex(list, t) {
  let low = 0, high = list.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (list[mid].timestamp < t) low = mid + 1; else high = mid;
  }
  return low;
}

function pick(values, index) {
  return Array.isArray(values) && index < values.length ? values[index] : null;
}

function number(value) {
  const n = typeof value === "number" ? value : parseFloat(value);
  return Number.isFinite(n) ? n : null;
}

// -- drawing ----------------------------------------------------------------------------------------------------

export class RigView {
  constructor(data, elements) {
    this.data = data;
    this.el = elements;          // {vials, cycleChart, cycle, units, status, overruns}
    this.vialCards = [];
    this.cycleChart = null;
    this.scheduled = false;
    this.buildVials();
    new ResizeObserver(() => this.resize()).observe(this.el.vials);
  }

  buildVials() {
    for (let vial = 0; vial < VIALS; vial++) {
      const card = document.createElement("article");
      card.className = "card vial";
      card.dataset.vial = String(vial);
      card.innerHTML = `<h3>Vial ${vial} <span class="values muted"></span></h3><div class="chart"></div>`;
      this.el.vials.appendChild(card);
      this.vialCards.push({ card, values: card.querySelector(".values"), target: card.querySelector(".chart"), chart: null, labels: "" });
    }
  }

  // Many broadcasts can arrive at once (the history): draw once per frame.
  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => { this.scheduled = false; this.render(); });
  }

  render() {
    const last = this.data.latest();
    if (!last) return;
    const units = this.data.units();
    this.renderSummary(last, units);
    this.vialCards.forEach((slot, vial) => this.renderVial(slot, vial, units, last));
    this.renderCycle();
  }

  renderSummary(last, units) {
    const when = new Date(last.timestamp * 1000).toLocaleTimeString();
    this.el.cycle.textContent = `cycle ${last.cycle} at ${when} · ${this.data.broadcasts.length} broadcasts kept`;
    const key = (color, text) => { const span = document.createElement("span"); span.style.color = color; span.textContent = text; return span; };
    this.el.units.replaceChildren(key(OD_COLOR, `— ${units.od.label}`), " · ", key(TEMP_COLOR, `— ${units.temp.label}`),
      " · ", key(TEMP_COLOR, "- - setpoint"), " · ", key(PUMP_COLOR, "▲ pump run"));
    const chips = Object.entries(last.status || {}).map(([param, status]) => {
      const chip = document.createElement("span");
      chip.className = `pill ${status === "ok" ? "good" : "bad"}`;
      chip.dataset.param = param;
      chip.textContent = status === "ok" ? param : `${param}: ${status}`;
      if (last.errors && last.errors[param]) chip.title = last.errors[param];
      return chip;
    });
    this.el.status.replaceChildren(...chips);
    // overruns from the broadcasts kept (so they survive a reload); the slowest step where the live event said it
    const over = this.data.broadcasts.filter((b) => b.cycle_s > b.broadcast_timing);
    const lastOver = over[over.length - 1];
    if (lastOver) {
      const event = this.data.overruns.find((o) => o.cycle === lastOver.cycle);
      const slowest = event ? (event.slowest || [])[0] : null;
      this.el.overruns.textContent = `${over.length} overrun(s); last: cycle ${lastOver.cycle} took `
        + `${Number(lastOver.cycle_s).toFixed(2)} s of ${lastOver.broadcast_timing} s`
        + (slowest ? ` (slowest step: ${slowest.param} ${slowest.duration_s.toFixed(2)} s)` : "");
    } else {
      this.el.overruns.textContent = "no overrun";
    }
  }

  renderVial(slot, vial, units, last) {
    const columns = this.data.vialColumns(vial, units);
    const n = columns[0].length;
    const od = columns[1][n - 1], temp = columns[2][n - 1], set = columns[3][n - 1];
    const stirConf = last.config && last.config.stir ? last.config.stir.value : null;
    const stir = Array.isArray(stirConf) ? stirConf[vial] : stirConf;
    const pumps = this.data.pumpMarks.filter((m) => m.vials[vial]).length;
    slot.values.textContent = [
      `OD ${fmt(od, units.od.calibrated ? 3 : 0)}`,
      `${fmt(temp, units.temp.calibrated ? 1 : 0)}${units.temp.calibrated ? " °C" : ""}`,
      `set ${fmt(set, units.temp.calibrated ? 1 : 0)}`,
      `stir ${stir ?? "–"}`,
      `pump ${pumps}×`,
      ...(typeof this.data.growth[vial] === "number" ? [`µ ${this.data.growth[vial].toFixed(3)}/h`] : []),
    ].join(" · ");
    slot.card.dataset.points = String(columns[1].filter((v) => v !== null).length);
    slot.card.dataset.pumps = String(pumps);
    const labels = units.od.label + units.temp.label;
    if (!slot.chart || slot.labels !== labels) {
      if (slot.chart) slot.chart.destroy();
      slot.chart = new uPlot(vialOptions(this.data, vial, units, size(slot.target)), columns, slot.target);
      slot.labels = labels;
    } else {
      slot.chart.setData(columns);
    }
  }

  renderCycle() {
    const columns = this.data.cycleColumns();
    if (!this.cycleChart) this.cycleChart = new uPlot(cycleOptions(size(this.el.cycleChart)), columns, this.el.cycleChart);
    else this.cycleChart.setData(columns);
  }

  resize() {
    for (const slot of this.vialCards) if (slot.chart) slot.chart.setSize(size(slot.target));
    if (this.cycleChart) this.cycleChart.setSize(size(this.el.cycleChart));
  }
}

function fmt(value, digits) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function size(target) {
  const width = Math.max(160, Math.floor(target.clientWidth || target.parentElement.clientWidth - 24));
  return { width, height: Math.round(Math.min(170, Math.max(110, width * 0.55))) };
}

function vialOptions(data, vial, units, { width, height }) {
  return {
    width, height,
    legend: { show: false },
    cursor: { drag: { x: true, y: false } },
    scales: {
      x: { time: true },
      // both axes follow the measured values with a least span, so sensor noise is not blown up to fill the chart,
      // and the temperature axis ignores a far setpoint (heater off) that would flatten the curve
      od: { range: (u) => measuredRange(u.data[1], units.od.calibrated ? 0.1 : 200) },
      temp: { range: (u) => measuredRange(u.data[2], units.temp.calibrated ? 1 : 20) },
    },
    axes: [
      { size: 30, space: 60, font: "10px system-ui, sans-serif" },
      { scale: "od", size: 50, font: "10px system-ui, sans-serif", stroke: OD_COLOR },
      { scale: "temp", side: 1, size: 44, font: "10px system-ui, sans-serif", stroke: TEMP_COLOR, grid: { show: false } },
    ],
    series: [
      {},
      { label: units.od.label, scale: "od", stroke: OD_COLOR, width: 1.5, spanGaps: true },
      { label: units.temp.label, scale: "temp", stroke: TEMP_COLOR, width: 1.2, spanGaps: true },
      { label: "temperature setpoint", scale: "temp", stroke: TEMP_COLOR, dash: [4, 4], width: 1, spanGaps: true },
    ],
    hooks: { draw: [(u) => drawPumpMarks(u, data.pumpMarks, vial)] },
  };
}

function measuredRange(values, leastSpan) {
  let low = Infinity, high = -Infinity;
  for (const v of values) if (v !== null && v !== undefined) { low = Math.min(low, v); high = Math.max(high, v); }
  if (!Number.isFinite(low)) return [0, leastSpan];
  const middle = (low + high) / 2;
  const half = Math.max((high - low) * 0.6, leastSpan / 2);
  return [middle - half, middle + half];
}

// Pump runs as small blue marks on the time axis.
function drawPumpMarks(u, marks, vial) {
  const ctx = u.ctx;
  const bottom = u.bbox.top + u.bbox.height;
  ctx.save();
  ctx.fillStyle = PUMP_COLOR;
  for (const mark of marks) {
    if (!mark.vials[vial]) continue;
    const x = u.valToPos(mark.t, "x", true);
    if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
    ctx.beginPath();
    ctx.moveTo(x, bottom - 10 * devicePixelRatio);
    ctx.lineTo(x - 4 * devicePixelRatio, bottom);
    ctx.lineTo(x + 4 * devicePixelRatio, bottom);
    ctx.closePath();
    ctx.fill();
  }
  ctx.restore();
}

function cycleOptions({ width }) {
  return {
    width, height: 140,
    legend: { show: false },
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max, 0.1) * 1.15] } },
    axes: [{ size: 30, font: "10px system-ui, sans-serif" }, { size: 40, font: "10px system-ui, sans-serif" }],
    series: [
      {},
      { label: "cycle (s)", stroke: "#444", width: 1.2 },
      { label: "broadcast_timing (s)", stroke: "#888", dash: [5, 5], width: 1 },
      { label: "overrun", stroke: "#d62828", width: 0, points: { show: true, size: 7, fill: "#d62828" } },
    ],
  };
}
