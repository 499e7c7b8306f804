"""Scrapy's images pipeline with the project's rules: the licence filter before a byte is
fetched, then each photo checked (checks.py), deduplicated (dedupe.py) and scored for relevance
by the current model (optional), stored by its sha256 with its attribution in `manifest.jsonl`;
every candidate not kept goes to `dropped.jsonl` with the rule that removed it. Photos the model
finds nothing in are kept aside (`aside/`, `"aside": true`), not thrown away, so an operator can
check a sample of what the filter refused.

Every candidate is written to `candidates.jsonl` before its photo is asked for; the three files
are appended a line at a time (fsync) and read back at the start, so a crawl resumed from its
JOBDIR, even after kill -9, neither counts twice what it judged nor forgets a candidate whose
page it had already read (the spiders yield the unjudged ones first, spiders.py)."""

from __future__ import annotations

from collections import Counter
from io import BytesIO
from pathlib import Path

from scrapy import Request
from scrapy.pipelines.images import ImagesPipeline
from scrapy.pipelines.media import FileException
from tqdm import tqdm

from training.crawl import licences
from training.crawl.checks import Refused, check
from training.crawl.dedupe import Seen
from training.crawl.records import CANDIDATES, DROPPED, MANIFEST, append_line, read_lines


def pending(out: Path) -> list[dict]:
    """Candidates written down and not judged yet (a crawl stopped between the two)."""
    judged = {r["url"] for r in read_lines(out / MANIFEST) + read_lines(out / DROPPED)}
    rows, seen = [], set()
    for r in read_lines(out / CANDIDATES):
        if r["url"] not in judged and r["url"] not in seen:
            seen.add(r["url"])
            rows.append({**r, "image_urls": [r["url"]]})
    return rows


class PhotoPipeline(ImagesPipeline):
    def __init__(self, store_uri, *, crawler=None):
        super().__init__(store_uri, crawler=crawler)
        s = crawler.settings
        self.out = Path(store_uri)
        self.min_side = s.getint("PLI_MIN_SIDE", 480)
        self.strip_gps = s.getbool("PLI_STRIP_GPS", True)
        self.families = tuple(s.getlist("PLI_LICENCES") or licences.OPEN)
        self.threshold = s.getfloat("PLI_RELEVANCE_THRESHOLD", 0.25)
        self.model = s.get("PLI_RELEVANCE_MODEL")
        self.detector = None
        self.seen = Seen(s.getint("PLI_NEAR_BITS", 8))
        self.refusals: dict[str, tuple[str, str]] = {}
        self.judged: dict[str, dict] = {}  # url -> what was decided (kept facts), this run
        self.done: set[str] = set()
        self.candidates: set[str] = set()
        self.counts: Counter = Counter()
        self.bar = None
        self.redis, self.key = None, s.get("PLI_REDIS_KEY")
        if self.key:  # a distributed crawl: photo URLs claimed and hashes shared on Redis
            import redis

            self.redis = redis.Redis.from_url(s.get("REDIS_URL"))
            self.shared_seen = 0  # entries of <key>:hashes already added to self.seen
        for row in s.getlist("PLI_KNOWN_HASHES"):
            sha, ph, ident = row.split(" ", 2)
            self.seen.add(sha, ph, ident)

    def open_spider(self, spider=None):
        super().open_spider()
        (self.out / "photos").mkdir(parents=True, exist_ok=True)
        for row in read_lines(self.out / MANIFEST):
            self.seen.add(row["sha256"], row["phash"], row["file"])
            self.done.add(row["url"])
            self.counts["kept_aside" if row.get("aside") else "kept"] += 1
        self.candidates = {row["url"] for row in read_lines(self.out / CANDIDATES)}
        for row in read_lines(self.out / DROPPED):
            self.done.add(row["url"])
            self.counts[f"dropped: {row['reason']}"] += 1
        if self.model:
            from edge.detector import Detector

            self.detector = Detector(Path(self.model))
        self.bar = tqdm(desc="photos judged", unit="photo", initial=sum(self.counts.values()),
                        disable=not self.crawler.settings.getbool("PLI_PROGRESS", True))

    def close_spider(self, spider=None):
        if self.bar is not None:
            self.bar.close()

    def _drop(self, item: dict, reason: str, detail: str) -> None:
        append_line(self.out / DROPPED, {"url": item["url"], "page": item.get("page", ""), "source": item["source"],
                                         "reason": reason, "detail": detail[:300]})
        self.done.add(item["url"])
        self.counts[f"dropped: {reason}"] += 1
        self.crawler.stats.inc_value(f"pli/dropped/{reason}")
        self._progress()

    def _progress(self) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())), refresh=False)

    def get_media_requests(self, item, info):
        url = item["url"]
        if url in self.done:
            return []
        if url not in self.candidates:
            self.candidates.add(url)
            append_line(self.out / CANDIDATES, {k: v for k, v in item.items() if k != "image_urls"})
        family, written = licences.normalise(item.get("licence"))
        item["licence_family"], item["licence"] = family, written
        if family not in self.families:
            self._drop(item, "licence", f"{written or 'no licence stated'} ({family}) is not among "
                                        f"{', '.join(self.families)}")
            return []
        self.done.add(url)  # one fetch per URL, even when two pages show it
        if self.redis is not None and not self.redis.sadd(f"{self.key}:photos", url):
            return []  # another crawler of this crawl took it
        return [Request(url, meta={"pli_item": url})]

    def file_path(self, request, response=None, info=None, *, item=None):
        facts = self.judged.get(request.url)
        if facts is None:
            return super().file_path(request, response=response, info=info, item=item)
        return facts["file"]

    async def file_downloaded(self, response, request, info, *, item=None):
        url = request.url
        try:
            photo = check(response.body, self.min_side, self.strip_gps)
        except Refused as exc:
            self.refusals[url] = (exc.reason, exc.detail)
            raise FileException(exc.reason) from None
        relevance = self._relevance(photo.data)
        if self.redis is not None:  # one judge at a time across crawlers, against all their photos
            with self.redis.lock(f"{self.key}:judge", timeout=30, blocking_timeout=30):
                return self._judge(url, photo, relevance, info)
        return self._judge(url, photo, relevance, info)

    def _judge(self, url: str, photo, relevance: dict | None, info) -> str:
        if self.redis is not None:
            rows = self.redis.lrange(f"{self.key}:hashes", self.shared_seen, -1)
            for raw in rows:
                sha, ph, ident = raw.decode().split(" ", 2)
                self.seen.add(sha, ph, ident)
            self.shared_seen += len(rows)
        if (other := self.seen.exact(photo.sha256)) is not None:
            self.refusals[url] = ("duplicate", f"the same bytes as {other}")
            raise FileException("duplicate")
        if (other := self.seen.near(photo.phash)) is not None:
            self.refusals[url] = ("near_duplicate", f"perceptual hash within {self.seen.near_bits} bits of {other}")
            raise FileException("near_duplicate")
        aside = relevance is not None and not relevance["relevant"]
        file = f"{'aside' if aside else 'photos'}/{photo.sha256}{photo.suffix}"
        self.seen.add(photo.sha256, photo.phash, file)
        if self.redis is not None:
            self.shared_seen += 1
            self.redis.rpush(f"{self.key}:hashes", f"{photo.sha256} {photo.phash} {self.out / file}")
        self.judged[url] = {"file": file, "sha256": photo.sha256, "phash": photo.phash, "width": photo.width,
                            "height": photo.height, "format": photo.format, "exif": photo.exif,
                            "gps_stripped": self.strip_gps, "relevance": relevance, "aside": aside}
        self.store.persist_file(file, BytesIO(photo.data), info)
        return photo.sha256

    def _relevance(self, data: bytes) -> dict | None:
        """What the current model sees at the threshold: insulators, faults, the top fault score."""
        if self.detector is None:
            return None
        import cv2
        import numpy as np

        from edge.tiled import detect

        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        dets = detect(self.detector, image, "auto")
        names = [self.detector.names[int(c)] for c, s in zip(dets.class_id, dets.confidence, strict=True)
                 if s >= self.threshold]
        faults = [float(s) for c, s in zip(dets.class_id, dets.confidence, strict=True)
                  if self.detector.names[int(c)] != "insulator"]
        return {"threshold": self.threshold, "detections": len(names), "insulators": names.count("insulator"),
                "faults": len(names) - names.count("insulator"),
                "max_fault_confidence": round(max(faults, default=0), 4),
                "relevant": bool(names)}

    def item_completed(self, results, item, info):
        for ok, value in results:
            url = item["url"]
            if ok:
                facts = self.judged.pop(url, None)
                if facts is None:
                    continue
                row = {"url": url, "page": item.get("page", ""), "source": item["source"],
                       "licence": item.get("licence", ""), "licence_family": item.get("licence_family", "unknown"),
                       "author": item.get("author", ""), "title": item.get("title", ""),
                       "description": item.get("description", ""), **facts}
                append_line(self.out / MANIFEST, row)
                self.counts["kept_aside" if facts["aside"] else "kept"] += 1
                self.crawler.stats.inc_value("pli/kept")
                self._progress()
            else:
                reason, detail = self.refusals.pop(url, ("fetch_failed", str(getattr(value, "value", value))))
                self._drop(item, reason, detail)
        return item
