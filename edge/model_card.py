"""The model card: the JSON beside every ONNX build (`<stem>.json`), the one reader and writer of it.

Written by the export (training/export.py), completed by a release build (golden frames, class
list, parent, test sets: cloud/registry/build.py), renamed by `pli cloud release ship`, and read
by the drone before it runs a model (its sha256 and golden frames, edge/runtime.py). Keys this
module does not name travel untouched in `extra`, so a card written by a newer build survives
being read and written again here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from edge.detector import file_sha256

_OPTIONAL = {"precision", "imgsz", "golden", "class_list_version", "parent", "release"}


@dataclass(frozen=True)
class ModelCard:
    version: str
    file: str = ""  # the ONNX file's name, beside the card
    sha256: str = ""  # of that file: a card that names none matches no file
    precision: str | None = None  # fp32 | int8
    classes: list[str] = field(default_factory=list)
    imgsz: list[int] | None = None
    conf: float = 0.25  # the operating threshold
    golden: str | None = None  # the golden frames' file, beside the card (edge/golden.py)
    class_list_version: int | None = None
    parent: str | None = None  # the release it was fine-tuned from
    release: str | None = None  # the registry release a shipped copy is
    metrics: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # every other key, as written

    @staticmethod
    def path_for(model: str | Path) -> Path:
        return Path(model).with_suffix(".json")

    @classmethod
    def from_dict(cls, doc: dict) -> ModelCard:
        if not isinstance(doc, dict) or doc.get("version") in (None, ""):
            raise ValueError("not a model card (no version)")
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in doc.items() if k in names}
        return cls(**{**known, "version": str(known["version"])},
                   extra={k: v for k, v in doc.items() if k not in names})

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        """A card file, or the card beside a model (`.onnx` or `.pt`); a clear error otherwise."""
        path = Path(path)
        card = path if path.suffix == ".json" else cls.path_for(path)
        try:
            return cls.from_dict(json.loads(card.read_text()))
        except FileNotFoundError:
            raise ValueError(f"no model card {card}") from None
        except (OSError, ValueError) as exc:
            raise ValueError(f"{card}: {exc}") from None

    @classmethod
    def beside(cls, model: str | Path) -> ModelCard | None:
        """The card beside a model, or None where there is none (or it cannot be read)."""
        try:
            return cls.load(model)
        except ValueError:
            return None

    def to_dict(self) -> dict:
        """The card as JSON: optional fields that are unset are left out, as before this class."""
        doc = {k: v for k, v in asdict(self).items() if k != "extra" and not (v is None and k in _OPTIONAL)}
        return {**doc, **self.extra}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    def with_(self, **changes) -> ModelCard:
        """A copy with fields changed; keys this class does not name go into `extra`."""
        names = {f.name for f in fields(self)}
        extra = {k: v for k, v in changes.items() if k not in names}
        known = {k: v for k, v in changes.items() if k in names}
        return replace(self, **known, extra={**self.extra, **extra})

    def matches(self, model: str | Path) -> bool:
        """The model file is the one the card describes (its sha256)."""
        return self.sha256 == file_sha256(model)
