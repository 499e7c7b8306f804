"""The drone's whole loop against a bare `session.run`, on 1080p frames, and what each part costs.

    .venv/bin/python benchmarks/edge_e2e.py [--frames 40] [--reps 3] [--threads 2]

Frames: a rendered 1920x1080 synthetic flight (seed 41), decoded into memory first, as a camera
hands them over (decode excluded from every side). Sides, one ONNX model, one thread count:
  - bare: `session.run` on the input tensor our pre-processing makes;
  - detector: `Detector.__call__` (letterbox, the same run, decode, NMS);
  - runtime: `run_flight` over the frames, one pass per frame like the others (`tile="off"`:
    auto would tile a 1080p frame), with everything else it does (ground positions, tracker, alerts into a
    real outbox, the model watch folder checked every frame, model state and status files); each
    frame's time is between the loop's requests for it and for the next one (its whole body).
Blocks of all frames per side, rotated each repetition, each block with a fresh session and
only one session alive at a time (an idle session's threads spin and slow the others), the first
3 frames of a block its warm-up. Every side is the median over all its frames and, beside it, the
mean (a drone's throughput: its slow frames count too). Then one runtime pass under
cProfile: the time per frame of each part of the loop besides the session. The last line is
one JSON object with e2e_over_bare.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from multiview_error import cpu_flags  # noqa: E402

from comms.outbox import Outbox  # noqa: E402
from edge.detector import Detector  # noqa: E402
from edge.geotag import read_geotag  # noqa: E402
from edge.runtime import RunConfig, run_flight  # noqa: E402
from edge.sources import Frame  # noqa: E402
from training.synth.flight import generate_flight  # noqa: E402

PARTS = {"maybe_swap": "model updates (watch folder, signed releases)", "ran_frame": "model state and status",
         "recover": "outbox recovery check", "locate": "ground positions", "update": "tracker",
         "_alert": "alerts (crop, record)", "put": "outbox writes", "preprocess": "letterbox",
         "_decode": "decode and NMS", "run": "session.run"}


WARM_UP = 3
IN_LOOP_RUNS: list[float] = []  # session.run's seconds inside the runtime passes


class Clocked:
    """The frames, stamped as the loop asks for each: one frame's time is its whole loop body."""

    def __init__(self, frames: list[Frame]):
        self.frames, self.stamps = frames, []

    def __iter__(self):
        for f in self.frames:
            self.stamps.append(time.perf_counter())
            yield f
        self.stamps.append(time.perf_counter())

    def seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)][WARM_UP:]


def runtime_pass(frames: list[Frame], model: Path, work: Path, threads: int) -> list[float]:
    """Seconds of each frame (after the warm-up) of one run_flight over the frames."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "watch").mkdir(exist_ok=True)
    cfg = RunConfig(drone_id="UAV-01", flight_id="B1", threads=threads, tile="off", watch=work / "watch",
                    state=work / "state.json", status=work / "status.json")
    clocked = Clocked(frames)
    runs: list[float] = []
    plain = Detector.run

    def timed(self: Detector, tensor):  # the session's own time inside the loop, beside the loop's
        t0 = time.perf_counter()
        out = plain(self, tensor)
        runs.append(time.perf_counter() - t0)
        return out

    Detector.run = timed  # type: ignore[method-assign]
    try:
        summary = run_flight(clocked, model, Outbox(work / "outbox.db", "UAV-01"), cfg, progress=False)
    finally:
        Detector.run = plain  # type: ignore[method-assign]
    assert summary.frames == len(frames)
    IN_LOOP_RUNS.extend(runs[WARM_UP:])
    return clocked.seconds()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=REPO / "models" / "pli-default.onnx")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "edge_e2e.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edge-e2e-"))
    flight = generate_flight(tmp / "hd", args.frames, (1920, 1080), seed=41, progress=False)
    paths = sorted((flight.out / "images").glob("*.jpg"))
    frames = [Frame(i, p.name, cv2.imread(str(p)), read_geotag(p)) for i, p in enumerate(paths)]
    det = Detector(args.model, threads=args.threads)
    tensors = [det.preprocess([f.image])[0] for f in frames]
    del det
    times: dict[str, list[float]] = {"bare": [], "detector": [], "runtime": []}
    order = list(times)
    for rep in range(args.reps):
        order = order[1:] + order[:1]
        for name in order:
            gc.collect()  # one live session at a time: idle sessions' threads spin and slow the others
            if name == "runtime":
                times[name] += runtime_pass(frames, args.model, tmp / f"run{rep}", args.threads)
                continue
            det = Detector(args.model, threads=args.threads)  # a fresh session per block, as run_flight's
            for f, t in zip(frames[:WARM_UP], tensors[:WARM_UP], strict=True):
                det.run(t), det(f.image)
            for f, t in zip(frames, tensors, strict=True):
                t0 = time.perf_counter()
                det.run(t) if name == "bare" else det(f.image)
                times[name].append(time.perf_counter() - t0)
            del det
    times["session.run in the loop"] = IN_LOOP_RUNS[:]
    ms = {k: round(statistics.median(v) * 1000, 2) for k, v in times.items()}
    mean_ms = {k: round(statistics.fmean(v) * 1000, 2) for k, v in times.items()}
    prof = cProfile.Profile()
    prof.enable()
    runtime_pass(frames, args.model, tmp / "profiled", args.threads)
    prof.disable()
    stats = pstats.Stats(prof)
    parts = {}
    for (file, _, fn), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        if fn in PARTS and ("/edge/" in file or "/comms/" in file):
            parts[f"{fn} ({PARTS[fn]})"] = round(max(parts.get(fn, 0.0), cum) * 1000 / len(frames), 3)
    print(f"1920x1080, {len(frames)} frames x {args.reps}, {args.threads} threads")
    for label, d in (("median", ms), ("mean", mean_ms)):
        print(f"  {label:<6} bare session.run {d['bare']:.1f} ms | detector {d['detector']:.1f} ms | runtime "
              f"{d['runtime']:.1f} ms per frame ({d['runtime'] / d['bare']:.3f}x bare); session.run inside "
              f"the loop {d['session.run in the loop']:.1f} ms")
    print("  per frame under cProfile (cumulative, with the profiler's own overhead):")
    for name, v in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"    {name:<55} {v:8.3f} ms")
    doc = {"benchmark": "edge_e2e", "frames": len(frames), "reps": args.reps, "threads": args.threads,
           "model": args.model.name, "cpu_flags": cpu_flags(), "ms": ms, "mean_ms": mean_ms,
           "e2e_over_bare": round(ms["runtime"] / ms["bare"], 3),
           "e2e_over_bare_mean": round(mean_ms["runtime"] / mean_ms["bare"], 3),
           "detector_over_bare": round(ms["detector"] / ms["bare"], 3), "profile_ms_per_frame": parts}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
