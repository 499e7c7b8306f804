"""Campaigns: bodies of data, each with a frozen test set no training ever sees.

A campaign is imported once (`pli cloud campaign add`): its photos become a YOLO dataset under
`<PLI_CLOUD_DIR>/campaigns/<name>/` with a train, a val (for thresholds and early stopping) and
a test split; the test split's image names are recorded in the database and never change, so
every release is scored on the same photos (`pli cloud release add --campaign`). IDD, for
example, is campaign 2: its `broken` is the project's `defect` and its `pollution-flashover` the
new class `flashover` of class-list version 2.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.models import Campaign
from cloud.paths import cloud_dir
from comms.classes import known_class_lists, using_class_list
from training.data_import import import_dataset
from training.dataset import YoloDataset

RATIOS = (0.65, 0.15, 0.2)  # train, val, test: a fifth of the photos is the frozen test set


def campaign_dir(name: str) -> Path:
    return cloud_dir() / "campaigns" / name


def add(session: Session, name: str, src: Path, fmt: str, class_map: dict[str, str | None] | None = None,
        class_list_version: int | None = None, seed: int = 0, description: str = "",
        group_by: str | None = None, split_file: Path | None = None, source_splits: bool = False) -> Campaign:
    """Import a campaign and freeze its test split (a fifth of its photos, split by photo), or the
    splits a split file or the source (`source_splits`: a YOLO data.yaml's) gives: a campaign the
    fleet's model already trained on must keep that model's held-out photos as its test set, or
    the forgetting gate would score seen photos."""

    if session.scalar(select(Campaign).where(Campaign.name == name)) is not None:
        raise ValueError(f"campaign {name} exists: its test set is frozen (give another name)")
    out = campaign_dir(name)
    if class_list_version is not None:
        lists = known_class_lists()
        if class_list_version not in lists:
            raise ValueError(f"class-list version {class_list_version} is not known: {sorted(lists)}")
    with using_class_list(class_list_version):  # the campaign's classes, in that version's order
        result = import_dataset(src, fmt, out, ratios=None if split_file or source_splits else list(RATIOS), seed=seed,
                                class_map=class_map, group_by=group_by, split_file=split_file)
    ds = YoloDataset.open(result.data_yaml)
    test = sorted(p.name for p in ds.images("test")) if "test" in ds.splits else []
    if not test:
        raise ValueError(f"campaign {name}: no test photos (a split file must name a test split)")
    row = Campaign(name=name, description=description, class_list_version=class_list_version, test_set=test,
                   frozen_at=datetime.now(UTC), data=str(result.data_yaml))
    session.add(row)
    session.flush()
    return row


def get(session: Session, name: str) -> Campaign:
    row = session.scalar(select(Campaign).where(Campaign.name == name))
    if row is None:
        raise ValueError(f"no campaign {name}")
    return row


def dataset(row: Campaign) -> Path:
    """The campaign's data.yaml; a crawled pool without labels has none."""
    if not row.data:
        raise ValueError(f"campaign {row.name} is an unlabelled pool (crawled photos): it has no labelled "
                         "dataset and no test set yet")
    return Path(row.data)


def check_frozen(row: Campaign) -> None:
    """The dataset's test split is still the recorded one (nothing moved in or out)."""

    now = sorted(p.name for p in YoloDataset.open(dataset(row)).images("test"))
    if now != sorted(row.test_set):
        raise ValueError(f"campaign {row.name}: its test split changed since it was frozen "
                         f"({len(now)} photos now, {len(row.test_set)} frozen)")
