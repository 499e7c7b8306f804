"""Fault position error from one view against several, on synthetic flights with known faults.

    .venv/bin/python benchmarks/multiview_error.py [--flights 3] [--frames 30] [--size 1920x1080]

Each flight (`pli data synth`, seeds 0..n-1) is fed to the tracker with its ground-truth boxes as
perfect detections (so the figures measure geometry, not the detector) and its poses as a real
drone records them (gimbal angles with 1 degree of error per frame, GNSS with a 1.5 m bias per
flight and 0.3 m of jitter per frame, 1 sigma, seeded), once per arm:
  - laser, one view: the laser range, positions averaged over views (today's default before);
  - ground plane, one view: no laser, the ray met with the ground at take-off height;
  - ground plane + multi-view: no laser, the rays of the views intersected (edge/multiview.py);
  - laser + multi-view.
For each arm: faults confirmed out of those seen in two frames or more, the median and 90th
percentile distance of each confirmed fault from the nearest true fault of its class, and how
often the true error lies within twice the stated 1-sigma error (multi-view arms). The last line
is one JSON object with every figure; results go to benchmarks/results/multiview_error.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from comms.classes import load_class_list  # noqa: E402
from edge.detections import Detections  # noqa: E402
from edge.geo import distance_m  # noqa: E402
from edge.geolocate import locate  # noqa: E402
from edge.geotag import read_geotag  # noqa: E402
from edge.tracker import FaultTracker, TrackerConfig  # noqa: E402
from training.dataset import YoloDataset, label_path_for, read_label_file  # noqa: E402
from training.synth.flight import generate_flight, parse_size  # noqa: E402

ARMS = {"laser, one view": (True, False), "ground plane, one view": (False, False),
        "ground plane + multi-view": (False, True), "laser + multi-view": (True, True)}


def cpu_flags() -> str:
    try:
        flags = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags"))
    except (OSError, StopIteration):
        return platform.processor()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile")
    return " ".join(f for f in wanted if f in flags.split())


def noisy(tag, rng: np.random.Generator, angle_deg: float, bias: np.ndarray, jitter_m: float):
    """The pose as a real drone records it: gimbal angles with errors of their own each frame, and
    GNSS with a bias over the flight (its errors drift over minutes, frames are seconds apart) and
    a small jitter per frame."""
    from edge.geo import offset_latlon

    e, n, u = bias + rng.normal(0, jitter_m, 3)
    lat, lon = offset_latlon(tag.lat, tag.lon, e, n)
    return replace(tag, lat=float(lat), lon=float(lon), rel_alt=tag.rel_alt + u,
                   gimbal_pitch=tag.gimbal_pitch + rng.normal(0, angle_deg),
                   gimbal_yaw=tag.gimbal_yaw + rng.normal(0, angle_deg))


def run_arm(flight, laser: bool, multi_view: bool, angle_deg: float, gnss_m: float, jitter_m: float,
            seed: int) -> list[dict]:
    names = load_class_list().names
    ds = YoloDataset.open(flight.out)
    w, h = flight.size
    tracker = FaultTracker(load_class_list(), TrackerConfig(multi_view=multi_view))
    events = []
    bias = np.random.default_rng([seed, 99]).normal(0, gnss_m, 3)
    for frame, img in enumerate(ds.images("train")):
        xyxy, labels = read_label_file(label_path_for(img), w, h, ds.names)
        tag = noisy(read_geotag(img), np.random.default_rng([seed, frame]), angle_deg, bias, jitter_m)
        if not laser:
            tag = replace(tag, target_distance=None)
        dets = Detections(xyxy, np.full(len(labels), 0.9), [names.index(n) for n in labels], names)
        centres = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2], axis=1)
        events += tracker.update(frame, dets, locate(tag, w, h, centres))
    events += tracker.flush()
    faults = list(csv.DictReader((flight.out / "faults.csv").open()))
    out = []
    for e in events:
        same = [(float(distance_m(e.lat, e.lon, float(f["lat"]), float(f["lon"]))), f["fault_id"])
                for f in faults if f["class"] == e.cls]
        if same:
            d, fid = min(same)
            out.append({"fault": fid, "error_m": d, "stated_m": e.error_m, "source": e.position_source})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flights", type=int, default=3)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--angle-noise", type=float, default=1.0, help="gimbal pitch and yaw error, degrees (1 sigma)")
    ap.add_argument("--gnss-noise", type=float, default=1.5, help="GNSS bias over a flight per axis, metres (1 sigma)")
    ap.add_argument("--yaw-jitter", type=float, default=0.0,
                    help="flights whose gimbal turns up to this many degrees off square to the line, each frame")
    ap.add_argument("--orbit", type=float, default=0.0,
                    help="flights that orbit each tower, this many degrees either side of it (0: along the line)")
    ap.add_argument("--gnss-jitter", type=float, default=0.3, help="GNSS error per frame per axis, metres (1 sigma)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "multiview_error.json")
    args = ap.parse_args()
    rows: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    seen_twice = 0
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.flights):
            flight = generate_flight(Path(tmp) / f"f{seed}", args.frames, parse_size(args.size), seed=seed,
                                     progress=False, yaw_jitter=args.yaw_jitter, orbit=args.orbit)
            faults = list(csv.DictReader((flight.out / "faults.csv").open()))
            seen_twice += sum(int(f["frames"]) >= 2 for f in faults)
            for arm, (laser, mv) in ARMS.items():
                rows[arm] += [r | {"flight": seed} for r in run_arm(flight, laser, mv, args.angle_noise,
                                                                    args.gnss_noise, args.gnss_jitter, seed)]
            print(f"flight {seed}: {len(faults)} faults; " + "; ".join(
                f"{arm}: {sum(r['flight'] == seed for r in rows[arm])} confirmed" for arm in ARMS), flush=True)
    summary = {}
    for arm, rs in rows.items():
        err = np.array([r["error_m"] for r in rs]) if rs else np.zeros(0)
        stated = [(r["error_m"], r["stated_m"]) for r in rs if r["stated_m"] is not None]
        summary[arm] = {
            "confirmed": len(rs), "faults_seen_twice": seen_twice,
            "distinct_faults": len({(r["flight"], r["fault"]) for r in rs}),
            "median_m": round(float(np.median(err)), 2) if len(err) else None,
            "p90_m": round(float(np.percentile(err, 90)), 2) if len(err) else None,
            "multi_view_share": round(sum(r["source"] == "multi_view" for r in rs) / len(rs), 2) if rs else None,
            "within_2_sigma": round(sum(e <= 2 * s for e, s in stated) / len(stated), 2) if stated else None}
    for arm, s in summary.items():
        print(f"{arm:28s} confirmed {s['confirmed']:3d} ({s['distinct_faults']} distinct of {seen_twice} seen twice)"
              f"  median {s['median_m']} m  p90 {s['p90_m']} m  within 2 sigma {s['within_2_sigma']}")
    doc = {"flights": args.flights, "frames": args.frames, "size": args.size, "angle_noise_deg": args.angle_noise,
           "gnss_noise_m": args.gnss_noise, "gnss_jitter_m": args.gnss_jitter, "yaw_jitter_deg": args.yaw_jitter,
           "orbit_deg": args.orbit, "cpu_flags": cpu_flags(),
           "arms": summary, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(json.dumps({k: v for k, v in doc.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
