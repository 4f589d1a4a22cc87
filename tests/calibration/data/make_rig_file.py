"""Writes the test data: a calibrations.json as a real rig's looks (our own numbers, the eVOLVER format).

    python tests/calibration/data/make_rig_file.py

It reproduces what a rig's file carries after years of GUI and DPU use: coefficients partly written as strings,
`measuredData` as a list of lists (OD, temperature) and as a flat list (pump), raw samples three levels deep, a
calibration with no `fits` key at all, and fits of every type. The same generator (smaller, other names) writes the
example the service ships for `benchbus up`.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parents[2] / "services/calibration-store/benchbus_calibration/data/example-calibrations.json"
STANDARDS = [0.0, 0.08, 0.15, 0.3, 0.5, 0.7, 0.9, 1.2, 1.6, 2.1]


def sigmoid_raw(od, a, b, c, d):
    return a + (b - a) / (1 + 10 ** ((c - od) * d))


def as_text_sometimes(rng, values):
    """Some GUI versions wrote numbers as strings; mix both, as real files do."""
    return [str(v) if rng.random() < 0.3 else v for v in values]


def od_calibration(rng, name, samples, points, fits=True):
    ods = [[STANDARDS[(p + vial) % points] for p in range(points)] for vial in range(16)]  # standards rotate per vial
    truth90 = [[29000 + rng.uniform(-800, 800), 63200 + rng.uniform(-300, 300), 1.7 + rng.uniform(-0.1, 0.1),
                -0.64 + rng.uniform(-0.05, 0.05)] for _ in range(16)]
    truth135 = [[1200 + rng.uniform(-100, 100), 52000 + rng.uniform(-500, 500), 1.1 + rng.uniform(-0.1, 0.1),
                 0.9 + rng.uniform(-0.05, 0.05)] for _ in range(16)]
    od90 = [[[round(sigmoid_raw(od, *truth90[v]) + rng.gauss(0, 15)) for _ in range(samples)] for od in ods[v]]
            for v in range(16)]
    od135 = [[[round(sigmoid_raw(od, *truth135[v]) + rng.gauss(0, 15)) for _ in range(samples)] for od in ods[v]]
             for v in range(16)]
    temp = [[[rng.randint(2040, 2060) for _ in range(samples)] for _ in ods[v]] for v in range(16)]
    calibration = {
        "name": name, "calibrationType": "od", "timeCollected": 1710245157150 + rng.randint(0, 10**8),
        "measuredData": ods,
        "raw": [{"param": "od_90", "vialData": od90}, {"param": "od_135", "vialData": od135},
                {"param": "temp", "vialData": temp}],
    }
    if fits:
        calibration["fits"] = [
            {"name": f"{name}_od90", "type": "sigmoid", "params": ["od_90"], "active": True,
             "timeFit": 1710245239.1,
             "coefficients": [as_text_sometimes(rng, [round(x, 4) for x in t]) for t in truth90]},
            {"name": f"{name}_3d", "type": "3d", "params": ["od_90", "od_135"], "active": False,
             "timeFit": 1710245300.5,
             "coefficients": [[15.36, -2.8e-4, -1.4e-4, 5.6e-10, 2.3e-9, -1.1e-10] for _ in range(16)]},
        ]
    return calibration


def temperature_calibration(rng, name):
    truth = [[-0.0281 + rng.uniform(-0.001, 0.001), 83.1 + rng.uniform(-1, 1)] for _ in range(16)]
    raws = [[2150 + rng.randint(-30, 30), 1850 + rng.randint(-30, 30), 1600 + rng.randint(-30, 30)] for _ in range(16)]
    measured = [[round(m * r + b + rng.gauss(0, 0.05), 2) for r in row]
                for (m, b), row in zip(truth, raws, strict=True)]
    return {
        "name": name, "calibrationType": "temperature", "timeCollected": 1710045157000,
        "measuredData": measured,
        "raw": [{"param": "temp", "vialData": [[[r, r + 1, r - 1] for r in row] for row in raws]}],
        "fits": [{"name": name, "type": "linear", "params": ["temp"], "active": True, "timeFit": 1710045199.0,
                  "coefficients": [as_text_sometimes(rng, [round(m, 6), round(b, 3)]) for m, b in truth]}],
    }


def pump_calibration(rng, name):
    volumes = [round(7.5 + rng.uniform(-0.4, 0.4), 2) for _ in range(48)]
    return {
        "name": name, "calibrationType": "pump", "timeCollected": 1709045157000,
        "measuredData": [10] * 48,  # every pump ran 10 s
        "raw": [{"param": "pump", "vialData": [[str(v)] for v in volumes]}],
        "fits": [{"name": name, "type": "constant", "params": ["pump"], "active": True, "timeFit": 1709045160.0,
                  "coefficients": as_text_sometimes(rng, [round(v / 10, 4) for v in volumes])}],
    }


def main() -> None:
    rng = random.Random(20240312)
    rig = [od_calibration(rng, "yeast_20240312_by4741", samples=3, points=10),
           temperature_calibration(rng, "temp_20240310"),
           pump_calibration(rng, "pumpcal_20240301"),
           od_calibration(rng, "ecoli_20240401_unfitted", samples=3, points=10, fits=False)]
    (HERE / "rig-calibrations.json").write_text(json.dumps(rig, indent=1) + "\n")
    rng = random.Random(7)
    example = [od_calibration(rng, "example_od", samples=1, points=10),
               temperature_calibration(rng, "example_temp"),
               pump_calibration(rng, "example_pump")]
    EXAMPLE.write_text(json.dumps(example) + "\n")


if __name__ == "__main__":
    main()
