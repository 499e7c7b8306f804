"""One training set from several datasets (a learning run's new campaign, its replay of the
earlier ones, operators' labels): photos linked, labels remapped by class name onto one class
list, one data.yaml (training/dataset.py:write_data_yaml)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from training.dataset import YoloDataset, label_path_for, write_data_yaml


def assemble(out: Path, names: list[str], parts: list[tuple[str, Path, list[Path]]], val: Path) -> Path:
    """One training set from several datasets: `parts` are (tag, its data.yaml, its photos), the
    labels remapped by class name onto `names`; `val` the newest campaign's data.yaml (its val)."""
    if out.exists():
        shutil.rmtree(out)
    (out / "images" / "train").mkdir(parents=True)
    (out / "labels" / "train").mkdir(parents=True)
    for tag, data, photos in parts:
        src_names = YoloDataset.open(data).names
        missing = sorted(set(src_names) - set(names))
        if missing:
            raise ValueError(f"{tag}: classes {missing} are not in the class list {names}")
        remap = {i: names.index(n) for i, n in enumerate(src_names)}
        for p in photos:
            stem = f"{tag}__{p.stem}"
            copies = 1
            while (out / "labels" / "train" / f"{stem}.txt").exists():  # a photo listed again: trained on again
                copies += 1
                stem = f"{tag}__{p.stem}__{copies}"
            os.symlink(p.resolve(), out / "images" / "train" / f"{stem}{p.suffix}")
            src = label_path_for(p)
            lines = []
            for line in (src.read_text().splitlines() if src.exists() else []):
                parts_ = line.split()
                if parts_:
                    lines.append(" ".join([str(remap[int(parts_[0])]), *parts_[1:]]))
            (out / "labels" / "train" / f"{stem}.txt").write_text("".join(f"{x}\n" for x in lines))
    val_ds = YoloDataset.open(val)
    return write_data_yaml(out, names, {"train": "images/train", "val": str(val_ds.root / "images" / "val")})
