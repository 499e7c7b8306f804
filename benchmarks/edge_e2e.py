"""The drone's whole loop against a bare `session.run`, on 1080p frames, and what each part costs.

    .venv/bin/python benchmarks/edge_e2e.py [--frames 40] [--reps 3] [--block 10] [--threads 2]

Frames: a rendered 1920x1080 synthetic flight (seed 41), decoded into memory first, as a camera
hands them over (decode excluded from every side). Sides, one ONNX model, one thread count:
  - bare: `session.run` on the input tensor our pre-processing makes;
  - detector: `Detector.__call__` (letterbox, the same run, decode, NMS);
  - runtime: `run_flight` over the frames, one pass per frame like the others (`tile="off"`:
    auto would tile a 1080p frame), with everything else it does (ground positions, tracker, alerts into a
    real outbox, the model watch folder checked every frame, model state and status files); each
    frame's time is between the loop's requests for it and for the next one (its whole body).
Two designs, both in one run:
  - interleaved (the headline, `e2e_over_bare_interleaved`): `run_flight` over the whole flight
    with, just before each frame is handed over, a bare `session.run` of the runtime's own
    session on that frame's input tensor, timed apart; each frame's body over the bare run
    before it, the median of those ratios. Adjacent in time, one session: the drift of this
    shared machine (the same side moved 40-52 ms between minutes, 2026-12-07) cancels.
  - blocks: short blocks (3 warm-up frames, then `--block` timed ones), each side in turn on the
    same frames, the order rotated block by block, each with a fresh session and only one
    session alive at a time (an idle session's threads spin and slow the others); every side's
    median and mean over its frames, and each runtime frame over the session.run inside it.
Then one runtime pass under cProfile: the time per frame of each part of the loop besides the
session. The last line is one JSON object.
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


class Clocked:
    """The frames, stamped as the loop asks for each: one frame's time is its whole loop body.
    With `tensors`, a bare `session.run` of the runtime's own session on the frame's input tensor
    is timed just before the frame is handed over: the two sides frame by frame, adjacent in
    time, the machine's drift shared."""

    def __init__(self, frames: list[Frame], tensors: list | None = None):
        self.frames, self.tensors = frames, tensors
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.bare: dict[int, float] = {}
        self.detector: Detector | None = None  # the runtime's own, once it has run a frame

    def __iter__(self):
        for i, f in enumerate(self.frames):
            if i:
                self.ends.append(time.perf_counter())
            if self.tensors is not None and self.detector is not None:
                det = self.detector
                t0 = time.perf_counter()
                det.session.run(None, {det.input_name: self.tensors[i]})
                self.bare[i] = time.perf_counter() - t0
            self.starts.append(time.perf_counter())
            yield f
        self.ends.append(time.perf_counter())

    def seconds(self) -> list[float]:
        return [e - s for s, e in zip(self.starts, self.ends, strict=True)][WARM_UP:]


def runtime_pass(frames: list[Frame], model: Path, work: Path, threads: int,
                 tensors: list | None = None) -> tuple[list[float], list[float], list[float]]:
    """One run_flight over the frames: each frame's seconds (after the warm-up), the session's
    own seconds inside each, and (with `tensors`) the bare session.run timed before each."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "watch").mkdir(exist_ok=True)
    cfg = RunConfig(drone_id="UAV-01", flight_id="B1", threads=threads, tile="off", watch=work / "watch",
                    state=work / "state.json", status=work / "status.json")
    clocked = Clocked(frames, tensors)
    runs: list[float] = []
    plain = Detector.run

    def timed(self: Detector, tensor):  # the session's own time inside the loop, beside the loop's
        clocked.detector = self
        t0 = time.perf_counter()
        out = plain(self, tensor)
        runs.append(time.perf_counter() - t0)
        return out

    Detector.run = timed  # type: ignore[method-assign]
    try:
        summary = run_flight(clocked, model, Outbox(work / "outbox.db", "UAV-01"), cfg, progress=False)
    finally:
        Detector.run = plain  # type: ignore[method-assign]
    assert summary.frames == len(frames) and len(runs) == len(frames)  # one session call a frame
    bare = [clocked.bare[i] for i in range(WARM_UP, len(frames))] if tensors is not None else []
    return clocked.seconds(), runs[WARM_UP:], bare


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=REPO / "models" / "pli-default.onnx")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--block", type=int, default=10, help="timed frames per block (each side in turn)")
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
    starts = range(0, len(frames) - WARM_UP, args.block)
    in_loop: list[float] = []  # session.run inside the runtime's blocks
    own: list[float] = []  # each runtime frame over its own session.run
    pairs: list[float] = []  # each runtime frame over the bare session.run just before it
    inter: dict[str, list[float]] = {"bare": [], "runtime": []}
    for rep in range(args.reps):
        gc.collect()
        secs, _, bare = runtime_pass(frames, args.model, tmp / f"pairs{rep}", args.threads, tensors)
        pairs += [f / b for f, b in zip(secs, bare, strict=True)]
        inter["bare"] += bare
        inter["runtime"] += secs
        for b, start in enumerate(starts):  # short blocks, the sides in turn: each sees the same minutes
            block = slice(start, start + WARM_UP + args.block)
            order = order[1:] + order[:1]
            for name in order:
                gc.collect()  # one live session at a time: idle sessions' threads spin and slow the others
                if name == "runtime":
                    secs, runs, _ = runtime_pass(frames[block], args.model, tmp / f"run{rep}-{b}", args.threads)
                    times[name] += secs
                    in_loop += runs
                    own += [f / r for f, r in zip(secs, runs, strict=True)]
                    continue
                det = Detector(args.model, threads=args.threads)  # a fresh session per block, as run_flight's
                fs, ts = frames[block], tensors[block]
                for f, t in zip(fs[:WARM_UP], ts[:WARM_UP], strict=True):
                    det.run(t), det(f.image)
                for f, t in zip(fs[WARM_UP:], ts[WARM_UP:], strict=True):
                    t0 = time.perf_counter()
                    det.run(t) if name == "bare" else det(f.image)
                    times[name].append(time.perf_counter() - t0)
                del det
    times["session.run in the loop"] = in_loop
    paired, own_ratio = statistics.median(pairs), statistics.median(own)
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
    print(f"1920x1080, {len(frames)} frames x {args.reps}, blocks of {args.block}, {args.threads} threads")
    for label, d in (("median", ms), ("mean", mean_ms)):
        print(f"  {label:<6} bare session.run {d['bare']:.1f} ms | detector {d['detector']:.1f} ms | runtime "
              f"{d['runtime']:.1f} ms per frame ({d['runtime'] / d['bare']:.3f}x bare); session.run inside "
              f"the loop {d['session.run in the loop']:.1f} ms")
    im = {k: statistics.median(v) * 1000 for k, v in inter.items()}
    print(f"  interleaved, frame by frame: bare session.run {im['bare']:.1f} ms, runtime {im['runtime']:.1f} ms; "
          f"runtime over the bare run before it: median {paired:.3f}x (ratio of the two medians "
          f"{im['runtime'] / im['bare']:.3f}x); runtime frame over its own session.run: median {own_ratio:.3f}x")
    print("  per frame under cProfile (cumulative, with the profiler's own overhead):")
    for name, v in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"    {name:<55} {v:8.3f} ms")
    doc = {"benchmark": "edge_e2e", "frames": len(frames), "reps": args.reps, "block": args.block,
           "threads": args.threads,
           "model": args.model.name, "cpu_flags": cpu_flags(), "ms": ms, "mean_ms": mean_ms,
           "e2e_over_bare": round(ms["runtime"] / ms["bare"], 3),
           "e2e_over_bare_mean": round(mean_ms["runtime"] / mean_ms["bare"], 3),
           "detector_over_bare": round(ms["detector"] / ms["bare"], 3),
           "e2e_over_bare_interleaved": round(paired, 3), "interleaved_ms": {k: round(v, 2) for k, v in im.items()},
           "e2e_over_own_session_run": round(own_ratio, 3), "profile_ms_per_frame": parts}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
