"""The physical world of a synthetic flight: towers, insulator strings, conductors, nests.

Objects live in world metres (see camera.py) and turn into 2-D drawing primitives for a given
camera, so every frame of a flight sees the same towers and the same faults, in perspective.
Sizes follow a 220 kV line with U70BP glass/porcelain discs (255 mm wide, 146 mm pitch).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from training.synth.camera import Camera

DISC_D = 0.255
DEFECT_P = 0.7  # towers with a missing disc
NEST_P = 0.45  # towers with a bird nest
DISC_PITCH = 0.146
Color = tuple[int, int, int]


@dataclass
class Prim:
    """One drawing primitive in image pixels. kind: line | poly | fill | ellipse."""

    kind: str
    pts: np.ndarray  # line/poly/fill: (K, 2); ellipse: [[cx, cy], [ax, ay]]
    color: Color
    width: float = 1.0  # line thickness in pixels


@dataclass
class Item:
    """Something drawn at one depth; labelled items get a box when visible enough."""

    depth: float  # y of the object: larger is further, drawn earlier
    label: str | None = None
    key: str = ""  # stable object id across frames (e.g. fault id)

    def prims(self, cam: Camera) -> list[Prim]:  # pragma: no cover - interface
        raise NotImplementedError

    def region(self, cam: Camera) -> np.ndarray | None:
        """For labels with no pixels of their own (a missing disc): the labelled quad."""
        return None


NEAR_M = 0.5  # nothing is drawn nearer the camera than this (a turned gimbal sees past members' ends)
OFF_SCREEN = np.full((2, 2), -1e5)


def _line(cam: Camera, a: np.ndarray, b: np.ndarray, width_m: float, color: Color) -> Prim:
    _, depth = cam.project(np.stack([a, b]))
    if depth.max() < NEAR_M:  # wholly behind the camera
        return Prim("line", OFF_SCREEN, color, 1.0)
    if depth.min() < NEAR_M:  # cut where it passes the near plane
        t = (NEAR_M - depth[0]) / (depth[1] - depth[0])
        cut = a + t * (b - a)
        a, b = (cut, b) if depth[0] < NEAR_M else (a, cut)
    uv, depth = cam.project(np.stack([a, b]))
    return Prim("line", uv, color, max(1.0, width_m * float(cam.scale_at(depth.mean()))))


@dataclass
class Member(Item):
    """A straight steel member (tower angle bar, crossarm chord) or a wire segment."""

    a: np.ndarray = field(default_factory=lambda: np.zeros(3))
    b: np.ndarray = field(default_factory=lambda: np.zeros(3))
    width_m: float = 0.1
    color: Color = (160, 160, 160)

    def prims(self, cam: Camera) -> list[Prim]:
        return [_line(cam, self.a, self.b, self.width_m, self.color)]


@dataclass
class Wire(Item):
    pts: np.ndarray = field(default_factory=lambda: np.zeros((2, 3)))
    width_m: float = 0.03
    color: Color = (60, 60, 60)

    def prims(self, cam: Camera) -> list[Prim]:
        uv, depth = cam.project(self.pts)
        keep = depth > 0.5
        if keep.sum() < 2:
            return []
        w = max(1.0, self.width_m * float(cam.scale_at(np.median(depth[keep]))))
        return [Prim("poly", uv[keep], self.color, w)]


@dataclass
class InsulatorString(Item):
    top: np.ndarray = field(default_factory=lambda: np.zeros(3))
    n_discs: int = 10
    glass: bool = True
    tint: Color = (140, 170, 90)
    missing: int | None = None  # index of the missing disc (a `defect`)

    def disc_center(self, i: int) -> np.ndarray:
        return self.top - np.array([0.0, 0.0, 0.18 + (i + 0.5) * DISC_PITCH])

    @property
    def bottom(self) -> np.ndarray:
        return self.top - np.array([0.0, 0.0, 0.18 + self.n_discs * DISC_PITCH + 0.15])

    def prims(self, cam: Camera) -> list[Prim]:
        out = [_line(cam, self.top, self.bottom, 0.045, (70, 70, 75))]  # pin-and-cap chain
        centers = np.stack([self.disc_center(i) for i in range(self.n_discs)])
        uv, depth = cam.project(centers)
        horiz = np.hypot(centers[:, 1], 1e-6)
        elev = np.arctan2(cam.z - centers[:, 2], horiz)
        dark = tuple(int(c * 0.55) for c in self.tint)
        light = tuple(min(255, int(c * 1.35) + 30) for c in self.tint)
        for i in range(self.n_discs):
            if i == self.missing:
                continue
            s = float(cam.scale_at(depth[i]))
            ax = 0.5 * DISC_D * s
            ay = max(1.0, ax * abs(math.sin(elev[i])) + 0.02 * s)
            c = uv[i]
            out.append(Prim("ellipse", np.array([c, [ax, ay]]), dark))
            out.append(Prim("ellipse", np.array([c - [0, 0.25 * ay], [ax * 0.96, ay * 0.8]]), self.tint))
            if self.glass:
                out.append(Prim("ellipse", np.array([c - [0.3 * ax, 0.4 * ay], [ax * 0.3, ay * 0.3]]), light))
        return out

    def defect_quad(self) -> np.ndarray:
        """The labelled region around the missing disc (world points, a vertical quad)."""
        c = self.disc_center(self.missing or 0)
        hw, hh = 0.65 * DISC_D, 1.0 * DISC_PITCH
        return c + np.array([[-hw, 0, hh], [hw, 0, hh], [hw, 0, -hh], [-hw, 0, -hh]])


@dataclass
class Defect(Item):
    """The gap of a missing disc: labelled, drawn by its string (which leaves the gap)."""

    string: InsulatorString | None = None

    def prims(self, cam: Camera) -> list[Prim]:
        return []

    def region(self, cam: Camera) -> np.ndarray:
        uv, _ = cam.project(self.string.defect_quad())
        return uv


@dataclass
class Nest(Item):
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    size: tuple[float, float] = (0.9, 0.5)
    twigs: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # local (x1, z1, x2, z2) in m
    shades: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))

    def prims(self, cam: Camera) -> list[Prim]:
        (c,), (d,) = cam.project(self.center[None])
        s = float(cam.scale_at(d))
        w, h = self.size
        out = [Prim("ellipse", np.array([c, [0.45 * w * s, 0.42 * h * s]]), (30, 52, 78))]
        for (x1, z1, x2, z2), shade in zip(self.twigs, self.shades, strict=True):
            a = self.center + np.array([x1, 0, z1])
            b = self.center + np.array([x2, 0, z2])
            out.append(_line(cam, a, b, 0.025, tuple(int(v) for v in shade)))
        return out


@dataclass
class Tower:
    x: float
    y: float  # centre line of the tower
    height: float
    arms: list[tuple[float, float]]  # (z, half length) of each crossarm
    color: Color

    def items(self) -> list[Item]:
        """Lattice members: four tapering legs, horizontal struts, X bracing, crossarm trusses."""
        out: list[Item] = []
        base, waist = 3.2, 0.9
        z_top = self.height

        def half(z: float) -> float:
            return base + (waist - base) * min(z, z_top) / z_top

        def corner(sx: int, sy: int, z: float) -> np.ndarray:
            return np.array([self.x + sx * half(z), self.y + sy * half(z), z])

        levels = np.linspace(0, z_top, int(z_top / 2.6) + 1)
        faces = [((-1, -1), (1, -1)), ((-1, 1), (1, 1)), ((-1, -1), (-1, 1)), ((1, -1), (1, 1))]
        for sx, sy in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
            for z0, z1 in itertools.pairwise(levels):
                out.append(Member(self.y + sy * half(z0), a=corner(sx, sy, z0), b=corner(sx, sy, z1),
                                  width_m=0.12, color=self.color))
        shade = tuple(int(c * 0.85) for c in self.color)
        for (ax, ay), (bx, by) in faces:
            for z0, z1 in itertools.pairwise(levels):
                d = self.y + (ay + by) / 2 * half(z0)
                out.append(Member(d, a=corner(ax, ay, z0), b=corner(bx, by, z1), width_m=0.07, color=shade))
                out.append(Member(d, a=corner(bx, by, z0), b=corner(ax, ay, z1), width_m=0.07, color=shade))
                out.append(Member(d, a=corner(ax, ay, z1), b=corner(bx, by, z1), width_m=0.06, color=shade))
        for z, length in self.arms:
            for side in (-1, 1):
                w = half(z)
                tip = np.array([self.x, self.y + side * length, z])
                for sx in (-1, 1):
                    root_lo = np.array([self.x + sx * w, self.y + side * w, z])
                    root_hi = np.array([self.x + sx * w * 0.6, self.y + side * w, z + 1.2])
                    d = self.y + side * (w + length) / 2
                    out.append(Member(d, a=root_lo, b=tip, width_m=0.1, color=self.color))
                    out.append(Member(d, a=root_hi, b=tip, width_m=0.08, color=shade))
        return out

    def string_tops(self) -> list[np.ndarray]:
        return [np.array([self.x, self.y + side * length, z]) for z, length in self.arms for side in (-1, 1)]


@dataclass
class Fault:
    id: str
    cls: str
    pos: np.ndarray  # world metres
    tower: str


@dataclass
class Scene:
    towers: list[Tower]
    items: list[Item]
    faults: list[Fault]
    line_y: float  # lateral distance from the route to the tower centre line
    top_arm_z: float


def build_scene(rng: np.random.Generator, length: float, near_distance: float) -> Scene:
    """A straight line of towers along x in [0, length], the nearest phase `near_distance` away."""
    span = rng.uniform(32.0, 42.0)  # compressed (real spans: 200-400 m), still > 2x the 15 m alert radius
    height = rng.uniform(26.0, 32.0)
    n_arms = int(rng.integers(2, 4))
    arm_len = rng.uniform(3.6, 4.6)
    line_y = near_distance + arm_len
    arm_z = [height - 1.0 - 3.6 * k for k in range(n_arms)]
    grey = int(rng.integers(125, 175))
    color = tuple(int(grey + d) for d in rng.integers(-6, 7, 3))  # galvanised steel
    xs = np.arange(rng.uniform(4.0, 10.0), length + span, span)
    towers, items, faults = [], [], []
    glass = bool(rng.random() < 0.6)
    tint = (140, 170, 90) if glass else (215, 215, 210)
    strings_of: list[list[InsulatorString]] = []
    for k, x in enumerate(xs):
        tw = Tower(float(x), line_y, height, [(z, arm_len * (1 - 0.08 * i)) for i, z in enumerate(arm_z)], color)
        towers.append(tw)
        items += tw.items()
        strings = []
        for j, top in enumerate(tw.string_tops()):
            s = InsulatorString(depth=float(top[1]), label="insulator", key=f"T{k:02d}-S{j}", top=top,
                                n_discs=int(rng.integers(9, 14)), glass=glass, tint=tint)
            strings.append(s)
            items.append(s)
        # At most one fault of each class per tower: alerts are per location (15 m), and the
        # phases of one tower are closer than that.
        if rng.random() < DEFECT_P:
            s = strings[int(rng.integers(0, len(strings)))]
            s.missing = int(rng.integers(1, s.n_discs - 1))
            fid = f"F{len(faults) + 1:03d}"
            items.append(Defect(depth=s.depth - 1e-3, label="defect", key=fid, string=s))
            faults.append(Fault(fid, "defect", s.disc_center(s.missing), f"T{k:02d}"))
        strings_of.append(strings)
        if rng.random() < NEST_P:
            z, length_ = tw.arms[int(rng.integers(0, len(tw.arms)))]
            side = rng.choice([-1, 1])
            center = np.array([x + rng.uniform(-0.3, 0.3), line_y + side * rng.uniform(0.9, length_ - 0.8),
                               z + 0.22])
            nest = _nest(rng, center, key=f"F{len(faults) + 1:03d}")
            items.append(nest)
            faults.append(Fault(nest.key, "bird_nest", center, f"T{k:02d}"))
    # Conductors hang from the string bottoms, sagging between neighbouring towers.
    for a_strings, b_strings in itertools.pairwise(strings_of):
        for sa, sb in zip(a_strings, b_strings, strict=True):
            p0, p1 = sa.bottom, sb.bottom
            t = np.linspace(0, 1, 80)[:, None]
            pts = p0 + (p1 - p0) * t
            pts[:, 2] -= 4 * rng.uniform(1.2, 2.2) * (t[:, 0] * (1 - t[:, 0]))
            items.append(Wire(depth=float(p0[1]) + 1e-3, pts=pts))
    # Shield wire on the tower peaks.
    peaks = np.array([[t.x, t.y, t.height + 0.5] for t in towers])
    if len(peaks) > 1:
        items.append(Wire(depth=line_y, pts=peaks, width_m=0.02, color=(80, 80, 80)))
    return Scene(towers, items, faults, line_y, arm_z[0])


def _nest(rng: np.random.Generator, center: np.ndarray, key: str) -> Nest:
    w, h = rng.uniform(0.7, 1.1), rng.uniform(0.4, 0.6)
    n = 70
    ang = rng.uniform(-0.6, 0.6, n)
    length = rng.uniform(0.15, 0.4, n)
    cx = rng.uniform(-w / 2, w / 2, n) * 0.9
    cz = rng.uniform(-h / 2, h / 2, n) * (1 - (2 * cx / w) ** 2) ** 0.5
    dx, dz = np.cos(ang) * length / 2, np.sin(ang) * length / 2
    twigs = np.stack([cx - dx, cz - dz, cx + dx, cz + dz], axis=1)
    shades = np.stack([rng.integers(20, 60, n), rng.integers(50, 95, n), rng.integers(80, 140, n)], axis=1)
    return Nest(depth=float(center[1]) - 0.3, label="bird_nest", key=key, center=center, size=(w, h),
                twigs=twigs, shades=shades)
