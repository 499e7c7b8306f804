"""Which model the drone runs across restarts: the current one, the last good one, and a trial.

A model that passed probation is swapped in *on trial*: `state.json` names it current and keeps
the model it replaced as last good. It is marked good after `GOOD_AFTER_FRAMES` frames. Every
start of the runtime counts against a model still on trial; a trial model that has been started
twice without reaching good (the runtime crashed, or was killed, with it) is rolled back to the
last good one, and remembered as refused so the update loop does not bring it back.
The file is replaced whole (write, fsync, rename), so a power cut or SIGKILL at any instant
leaves either the old state or the new, both naming models that are on disk and verified.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
GOOD_AFTER_FRAMES = 50
MAX_TRIAL_STARTS = 2


@dataclass
class ModelState:
    current: str | None = None
    last_good: str | None = None
    trial: bool = False
    trial_starts: int = 0
    refused: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> ModelState:
        try:
            return cls(**json.loads(Path(path).read_text()))
        except FileNotFoundError:
            return cls()
        except (ValueError, TypeError) as exc:  # cannot happen with whole-file writes; say so if it does
            log.error("model state %s unreadable (%s): starting from the given model", path, exc)
            return cls()

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps(asdict(self)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a power cut
        finally:
            os.close(fd)


class StateFile:
    """The state on disk, and the three moments that change it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rolled_back: str | None = None  # the trial model `start` gave up on, if it did

    def current(self) -> ModelState:
        return ModelState.load(self.path)

    def start(self, given: Path) -> Path:
        """The model to start with: the current one (unless on trial and started too often: then
        the last good one), else `given`."""
        s = ModelState.load(self.path)
        if s.current is None or not Path(s.current).is_file():
            return given
        if s.trial:
            s.trial_starts += 1
            if s.trial_starts > MAX_TRIAL_STARTS and s.last_good and Path(s.last_good).is_file():
                log.error("model %s was started %d times on trial without finishing one: rolled back to %s",
                          s.current, s.trial_starts - 1, s.last_good)
                s.refused = [*s.refused, s.current]
                self.rolled_back = s.current
                s.current, s.trial, s.trial_starts = s.last_good, False, 0
            s.save(self.path)
        return Path(s.current)

    def swapped(self, new: Path, old: Path) -> None:
        s = ModelState.load(self.path)
        good = old if not s.trial else Path(s.last_good or old)
        ModelState(str(new), str(good), True, 1, s.refused).save(self.path)

    def ran(self, frames: int) -> None:
        """Called as frames go by: the trial model becomes the good one."""
        s = ModelState.load(self.path)
        if s.trial and frames >= GOOD_AFTER_FRAMES:
            s.trial, s.trial_starts, s.last_good = False, 0, s.current
            s.save(self.path)
            log.info("model %s ran %d frames: it is the last good model now", s.current, frames)

    def refused(self) -> set[Path]:
        return {Path(p) for p in ModelState.load(self.path).refused}
