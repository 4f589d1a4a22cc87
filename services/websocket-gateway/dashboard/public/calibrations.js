// Calibrations: which fit is active per type (from calibration/state/active, open to read), and for one vial the
// raw points of the active fit's calibration against what was measured, with the fit's curve (a call: the token).

import { cell, row } from "./dom.js";

const CURVE_POINTS = 60;

export class CalibrationsPanel {
  constructor(elements) {
    this.el = elements;  // {active, chart, summary}
    this.active = null;
    this.chart = null;
  }

  update(state) {
    this.active = state && state.by_type ? state : null;
    const body = this.el.active;
    body.replaceChildren();
    const types = this.active ? Object.entries(this.active.by_type) : [];
    if (types.length === 0) body.append(row([cell("no active calibration", "muted", 5)]));
    for (const [kind, fit] of types) {
      const tr = row([cell(kind), cell(fit.calibration), cell(fit.fit), cell(fit.type), cell(fit.params.join(", "))]);
      tr.dataset.type = kind;
      body.append(tr);
    }
  }

  fitOf(kind) {
    return this.active ? this.active.by_type[kind] || null : null;
  }

  // points: [[raw, measured], ...] of one vial; fit: the active fit (type, coefficients); vial: its index
  show(kind, vial, calibration) {
    const fit = this.fitOf(kind);
    const points = vialPoints(calibration, fit.params[0], vial);
    const coefficients = fit.coefficients[vial];
    const raws = points.map((p) => p[0]);
    const low = Math.min(...raws), high = Math.max(...raws);
    const xs = [], measured = [], curve = [];
    for (const [raw, value] of points) { xs.push(raw); measured.push(value); curve.push(null); }
    for (let i = 0; i <= CURVE_POINTS; i++) {
      const raw = low + ((high - low) * i) / CURVE_POINTS;
      xs.push(raw); measured.push(null); curve.push(apply(fit.type, coefficients, raw));
    }
    const order = xs.map((_, i) => i).sort((a, b) => xs[a] - xs[b]);
    const columns = [order.map((i) => xs[i]), order.map((i) => measured[i]), order.map((i) => curve[i])];
    if (this.chart) this.chart.destroy();
    const width = Math.max(300, this.el.chart.clientWidth || 480);
    this.chart = new uPlot({
      width, height: 220, scales: { x: { time: false } },
      series: [{ label: `raw ${fit.params[0]}` },
               { label: "measured", stroke: "#1f5fbf", width: 0, points: { show: true, size: 7 } },
               { label: `${fit.fit} (${fit.type})`, stroke: "#c0392b", spanGaps: true }],
    }, columns, this.el.chart);
    this.el.chart.dataset.points = String(points.length);
    this.el.summary.textContent = `vial ${vial}: ${points.length} raw points of ${calibration.name}; `
      + `active fit ${fit.fit} (${fit.type}) coefficients ${JSON.stringify(coefficients)}`;
  }
}

// The raw readings of one vial (a point may be several samples: their median) beside the measured values.
function vialPoints(calibration, param, vial) {
  const raw = (calibration.raw || []).find((r) => r.param === param);
  const readings = raw ? raw.vialData[vial] || [] : [];
  const measuredAll = calibration.measuredData || [];
  const measured = Array.isArray(measuredAll[vial]) ? measuredAll[vial] : measuredAll;
  const out = [];
  readings.forEach((reading, i) => {
    const value = median(Array.isArray(reading) ? reading : [reading]);
    const target = Number(measured[i]);
    if (Number.isFinite(value) && measured[i] !== null && measured[i] !== "" && Number.isFinite(target)) {
      out.push([value, target]);
    }
  });
  return out;
}

function median(values) {
  const numbers = values.map(Number).filter((v, i) => values[i] !== null && values[i] !== "" && Number.isFinite(v));
  if (numbers.length === 0) return NaN;
  numbers.sort((a, b) => a - b);
  const middle = Math.floor(numbers.length / 2);
  return numbers.length % 2 ? numbers[middle] : (numbers[middle - 1] + numbers[middle]) / 2;
}

// What the fit gives at a raw reading (benchbus_schemas.calibration_math): sigmoid OD, linear degrees C.
function apply(type, c, raw) {
  if (!Array.isArray(c)) return null;
  const [a, b, cc, d] = c.map(Number);
  if (type === "sigmoid") {
    const ratio = (b - a) / (raw - a) - 1;
    return ratio > 0 && d !== 0 ? cc - Math.log10(ratio) / d : null;
  }
  if (type === "linear") return Number(c[0]) * raw + Number(c[1]);
  return null;
}

