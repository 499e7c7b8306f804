"""A campaign's unlabelled pool: photos gathered by the crawler (`pli data crawl --campaign`),
stored in the object store and the `pool_photos` table with their source, licence, hashes and
what the crawl's model saw, ready for `pli cloud select` and Label Studio.

A crawl into a campaign that does not exist yet starts one with no dataset and no test set (an
unlabelled pool: nothing to score until operators' labels are imported as a campaign of its own).
Photos go in once: a second import of the same crawl, or a photo already in any campaign's pool,
is counted and skipped. The crawl is told every photo the cloud's campaigns hold (`known`), so a
near duplicate of a campaign's photo is dropped before it is fetched twice.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud import campaigns
from cloud.db import session_scope, upgrade
from cloud.models import Campaign, Image, PoolPhoto
from cloud.paths import cloud_dir
from cloud.storage import store
from training.crawl.records import MANIFEST, read_lines

MAX_TEXT = 500  # attribution fields longer than this are cut (the manifest keeps them whole)


def key_for(campaign: str, file: str) -> str:
    """The object-store key of a crawled photo (`campaigns/<name>/<sha256>.<ext>`): the shape the
    selection job and the learning service read a photo's campaign from."""
    return f"campaigns/{campaign}/{Path(file).name}"


def local_dir(campaign: str) -> Path:
    return campaigns.campaign_dir(campaign) / "pool"


def _campaign(session: Session, name: str) -> Campaign:
    row = session.scalar(select(Campaign).where(Campaign.name == name))
    if row is None:
        row = Campaign(name=name, description="unlabelled pool gathered by pli data crawl", test_set=[], data=None)
        session.add(row)
        session.flush()
    return row


def add_crawl(out: Path, campaign: str, database_url: str | None = None) -> dict:
    """A crawl's kept photos (its manifest) into the campaign's pool. Returns what happened:
    added, aside (added, not offered for labelling), skipped (already in a pool)."""

    out = Path(out)
    if not (out / MANIFEST).exists():
        raise ValueError(f"{out}: no {MANIFEST} (not a crawl's folder)")
    rows = read_lines(out / MANIFEST)
    upgrade(database_url)
    counts: Counter = Counter()
    with session_scope(database_url) as s:
        camp = _campaign(s, campaign)
        held = set(s.scalars(select(PoolPhoto.sha256)))
        for r in rows:
            if r["sha256"] in held:
                counts["skipped (already in a pool)"] += 1
                continue
            src = out / r["file"]
            data = src.read_bytes()  # read once: checked, stored, kept locally
            if hashlib.sha256(data).hexdigest() != r["sha256"]:
                raise ValueError(f"{src}: its bytes are not the manifest's sha256 (the crawl's folder was changed)")
            key = key_for(campaign, r["file"])
            store().put_bytes(key, data)
            local = local_dir(campaign) / Path(r["file"]).name
            local.parent.mkdir(parents=True, exist_ok=True)
            if not local.exists():
                local.write_bytes(data)
            image = s.scalar(select(Image).where(Image.key == key))
            if image is None:
                image = Image(name=Path(r["file"]).name, key=key, sha256=r["sha256"])
                s.add(image)
                s.flush()
            rel = r.get("relevance")
            s.add(PoolPhoto(campaign_id=camp.id, image_id=image.id, sha256=r["sha256"], phash=r["phash"],
                            source_url=r["url"][:2048], page_url=(r.get("page") or "")[:2048],
                            licence=(r.get("licence") or "")[:255], licence_family=r.get("licence_family", "unknown"),
                            author=(r.get("author") or "")[:MAX_TEXT], title=(r.get("title") or "")[:MAX_TEXT],
                            relevance=rel, max_fault_confidence=rel.get("max_fault_confidence") if rel else None,
                            aside=bool(r.get("aside"))))
            held.add(r["sha256"])
            counts["aside" if r.get("aside") else "added"] += 1
        total = s.scalar(select(func.count()).select_from(PoolPhoto).where(PoolPhoto.campaign_id == camp.id))
    return {"campaign": campaign, "added": counts["added"], "aside": counts["aside"],
            "skipped": counts["skipped (already in a pool)"], "pool": total}


def photos(session: Session, campaign: str, aside: bool = False) -> list[tuple[PoolPhoto, Path]]:
    """The pool's photos (not the aside ones, unless asked) with a local copy of each, fetched
    from the object store when this machine has none (another worker imported the crawl)."""

    camp = campaigns.get(session, campaign)
    q = select(PoolPhoto).where(PoolPhoto.campaign_id == camp.id, PoolPhoto.aside.is_(aside)).order_by(PoolPhoto.id)
    out = []
    for row in session.scalars(q):
        image = session.get(Image, row.image_id)
        local = local_dir(campaign) / image.name
        if not local.exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(local.name + ".tmp")
            tmp.write_bytes(store().read(image.key))
            tmp.replace(local)
        out.append((row, local))
    return out


def known(database_url: str | None = None) -> list[tuple[str, str, str]]:
    """(sha256, phash, where) of every photo the cloud's campaigns hold: their pools from the
    database, their datasets' photos hashed once and cached beside them (`<cloud>/hashes/`)."""

    upgrade(database_url)
    rows: list[tuple[str, str, str]] = []
    with session_scope(database_url) as s:
        names = {c.id: c.name for c in s.scalars(select(Campaign))}
        datasets = {c.name: c.data for c in s.scalars(select(Campaign)) if c.data}
        for p in s.scalars(select(PoolPhoto)):
            rows.append((p.sha256, p.phash, f"campaign {names[p.campaign_id]} pool"))
    for name, data in sorted(datasets.items()):
        rows += _dataset_hashes(name, Path(data).parent)
    return rows


def _dataset_hashes(name: str, root: Path) -> list[tuple[str, str, str]]:
    images = root / "images"
    if not images.is_dir():
        return []
    stamp = [[str(f.relative_to(images)), f.stat().st_size] for f in sorted(images.rglob("*")) if f.is_file()]
    cache = cloud_dir() / "hashes" / f"{name}.json"
    if cache.exists():
        doc = json.loads(cache.read_text())
        if doc.get("stamp") == stamp:
            return [tuple(r) for r in doc["rows"]]
    from training.crawl.dedupe import known_hashes  # imagehash: the crawl extra

    rows = [(sha, ph, f"campaign {name}: {Path(where).name}") for sha, ph, where in known_hashes([images])]
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps({"stamp": stamp, "rows": rows}))
    tmp.replace(cache)
    return rows


def attribution(session: Session, image_ids: list[int]) -> dict[int, dict]:
    """Per crawled photo among `image_ids`, what a Label Studio task shows of its origin."""
    rows = session.scalars(select(PoolPhoto).where(PoolPhoto.image_id.in_(image_ids))) if image_ids else []
    return {r.image_id: {"source_url": r.source_url, "licence": r.licence or "not stated",
                         "author": r.author or "unknown"} for r in rows}


def summary(session: Session, campaign: str) -> dict:
    """The pool's counts: offered, aside, by licence family."""
    camp = campaigns.get(session, campaign)
    rows = list(session.scalars(select(PoolPhoto).where(PoolPhoto.campaign_id == camp.id)))
    return {"pool": sum(not r.aside for r in rows), "aside": sum(r.aside for r in rows),
            "licences": dict(sorted(Counter(r.licence_family for r in rows).items()))}
