// One vial's controls, as the GUI sends them (scheduler `command`): temperature (degrees C through the active
// temperature fit to the board's raw setpoint), stir, and a pump run (influx and efflux seconds: prime or bolus).
// The other vials' elements are "NaN" (kept) or "--" (pump left alone); a vial an experiment runs is refused.

const VIALS = 16;

export function temperatureCommand(vial, celsius, tempFit) {
  const fit = tempFit && tempFit[vial];
  if (!Array.isArray(fit) || fit.length < 2 || Number(fit[0]) === 0) {
    throw Object.assign(new Error("no active temperature fit for this vial"), { code: "invalid_request" });
  }
  const raw = Math.round((celsius - Number(fit[1])) / Number(fit[0]));
  if (!(raw >= 0 && raw <= 4095)) {
    throw Object.assign(new Error(`${celsius} °C needs raw setpoint ${raw}, outside 0..4095`),
                        { code: "invalid_request" });
  }
  return { param: "temp", value: perVial(vial, String(raw)), immediate: true };
}

export function stirCommand(vial, stir) {
  return { param: "stir", value: perVial(vial, String(stir)), immediate: true };
}

export function pumpCommand(vial, influxS, effluxS) {
  const value = Array(3 * VIALS).fill("--");
  value[vial] = String(influxS);
  value[vial + VIALS] = String(effluxS);
  return { param: "pump", value, immediate: true, recurring: false };
}

function perVial(vial, element) {
  const value = Array(VIALS).fill("NaN");
  value[vial] = element;
  return value;
}

export function readNumber(input, name, low, high) {
  const value = Number(input.value);
  if (input.value.trim() === "" || !Number.isFinite(value) || value < low || value > high) {
    throw Object.assign(new Error(`${name} must be a number from ${low} to ${high}`), { code: "invalid_request" });
  }
  return value;
}
