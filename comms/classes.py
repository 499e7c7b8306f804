"""The class list and per-class alert rules, loaded from configuration, and its versions.

Every side (dataset import, training, the edge tracker, the ground station) reads the same
file so that class ids and severities never drift apart between drone and cloud.

Class lists are versioned (`version = N` in the file) and only ever grow at the end: a class id
means the same class in every later version. A BeiDou message carries the version its class ids
were packed with, so a canary drone on a newer list and the rest of the fleet on an older one are
both decoded right. The known versions live in `comms/class_lists/<N>.toml` (until signed model
releases carry their class list); `known_class_lists()` checks that each extends the one before.
"""

from __future__ import annotations

import enum
import itertools
import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from comms.settings import drone_settings

ENV_VAR = "PLI_CLASSES"


class Severity(enum.IntEnum):
    """Ordered so that a larger value is more urgent (outbox priority sorts on it)."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(
                f"unknown severity {text!r}; expected one of {[s.name.lower() for s in cls]}"
            ) from None


@dataclass(frozen=True)
class ClassRule:
    name: str
    fault: bool
    severity: Severity | None
    description: str = ""
    action: str = field(default="", compare=False)  # what the crew should do (the crew's report): advice, not an id


@dataclass(frozen=True)
class ClassList:
    rules: tuple[ClassRule, ...]
    version: int | None = None  # None: an unversioned list (its alerts cannot travel by BeiDou)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rules]

    def id_of(self, name: str) -> int:
        for i, rule in enumerate(self.rules):
            if rule.name == name:
                return i
        raise KeyError(f"class {name!r} is not in the class list {self.names}")

    def rule(self, name: str) -> ClassRule:
        return self.rules[self.id_of(name)]

    def severity_of(self, name: str) -> Severity | None:
        """Severity of an alert for this class, or None when the class raises no alert."""
        rule = self.rule(name)
        return rule.severity if rule.fault else None

    @property
    def fault_names(self) -> list[str]:
        return [r.name for r in self.rules if r.fault]


def parse_class_list(text: str, source: str = "<string>") -> ClassList:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: not TOML ({exc})") from None
    version = data.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= 255):
        raise ValueError(f"{source}: version must be an integer 1..255 (one byte on the wire), not {version!r}")
    entries = data.get("class")
    if not entries:
        raise ValueError(f"{source}: no [[class]] entries")
    rules = []
    seen: set[str] = set()
    for entry in entries:
        name = str(entry.get("name", "")).strip()
        if not name:
            raise ValueError(f"{source}: a [[class]] entry has no name")
        if name in seen:
            raise ValueError(f"{source}: class {name!r} is listed twice")
        seen.add(name)
        fault = bool(entry.get("fault", False))
        severity = None
        if fault:
            if "severity" not in entry:
                raise ValueError(f"{source}: fault class {name!r} needs a severity")
            severity = Severity.parse(str(entry["severity"]))
        rules.append(ClassRule(name, fault, severity, str(entry.get("description", "")), str(entry.get("action", ""))))
    return ClassList(tuple(rules), version)


@lru_cache(maxsize=8)
def _load(path: str | None) -> ClassList:
    if path is None:
        text = resources.files("comms").joinpath("classes.toml").read_text(encoding="utf-8")
        return parse_class_list(text, "comms/classes.toml")
    return parse_class_list(Path(path).read_text(encoding="utf-8"), path)


def load_class_list(path: str | os.PathLike[str] | None = None) -> ClassList:
    """The configured class list: `path`, else $PLI_CLASSES, else the packaged default."""
    chosen = path if path is not None else drone_settings().classes
    found = _load(str(chosen) if chosen is not None else None)
    known = _known(None).get(found.version) if found.version is not None else None
    if known is not None and known.rules != found.rules:
        raise ValueError(f"{chosen or 'comms/classes.toml'} says version {found.version} but differs from the known "
                         f"version {found.version} {known.names}: give a changed list a new version")
    return found


@contextmanager
def using_class_list(version: int | None) -> Iterator[None]:
    """$PLI_CLASSES set to known version `version`'s file for the block (None: left as it is), then
    restored: importers read the configured list, and a campaign imports in its own version's order."""
    if version is None:
        yield
        return
    old = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = str(resources.files("comms").joinpath("class_lists", f"{version}.toml"))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old


def check_lineage(lists: dict[int, ClassList]) -> dict[int, ClassList]:
    """Refuse a set of versions in which a later list does not extend an earlier one."""
    ordered = sorted(lists.items())
    for (v1, a), (v2, b) in itertools.pairwise(ordered):
        if b.names[:len(a.names)] != a.names:
            raise ValueError(f"class list version {v2} {b.names} does not extend version {v1} {a.names}: "
                             "class ids are only ever appended")
    return lists


@lru_cache(maxsize=8)
def _known(folder: str | None) -> dict[int, ClassList]:
    root = resources.files("comms").joinpath("class_lists") if folder is None else Path(folder)
    lists: dict[int, ClassList] = {}
    for entry in root.iterdir():
        if not entry.name.endswith(".toml"):
            continue
        found = parse_class_list(entry.read_text(encoding="utf-8"), f"{folder or 'comms/class_lists'}/{entry.name}")
        if found.version is None or entry.name != f"{found.version}.toml":
            raise ValueError(f"{entry.name}: a known class list is named after its version (N.toml with version = N)")
        lists[found.version] = found
    return check_lineage(lists)


def known_class_lists(folder: str | os.PathLike[str] | None = None) -> dict[int, ClassList]:
    """Every class-list version this side can decode: `folder`, else the packaged `class_lists/`."""
    return dict(_known(str(folder) if folder is not None else None))


def class_list_for(names: list[str], folder: str | os.PathLike[str] | None = None) -> ClassList:
    """The list a model with these class names packs its alerts with: the newest known version with
    exactly these names, else the configured list when its names match (unversioned or not)."""
    for _, found in sorted(known_class_lists(folder).items(), reverse=True):
        if found.names == list(names):
            return found
    configured = load_class_list()
    if configured.names == list(names):
        return configured
    raise ValueError(f"the model's classes {list(names)} match no known class list version "
                     f"({', '.join(f'v{v}' for v in sorted(known_class_lists(folder)))}) nor the configured list")
