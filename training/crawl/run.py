"""A crawl from its config: Scrapy's settings (polite by default), one of the spiders, the photo
pipeline, and a summary (`summary.json`, what each rule removed) when it ends.

Politeness: robots.txt obeyed, one request per second per host (`rate`), AutoThrottle slowing
further when a host answers slowly, retries of failed requests with backoff (`backoff.py`), a
User-Agent that names the project and a contact (`PLI_CRAWL_CONTACT`). Resumable: the queue and
the seen requests persist in `<out>/.job` (Scrapy's JOBDIR), answers in an HTTP cache; stop with
Ctrl-C (once: Scrapy finishes what is in flight) and run the same command again. With `redis_url`
the same spiders share one queue and one dupefilter on Redis (scrapy-redis), for several crawler
processes or machines, each writing its own folder: crawlers whose folders have one name
(`--out .../NAME`) are one crawl (keys `pli-crawl:NAME:*`); the pipeline claims each photo URL
there before fetching it and judges duplicates against every crawler's photos (pipeline.py); a
crawler whose queue ran dry stays while another is busy (workers.py).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from training.crawl import licences
from training.crawl.records import DROPPED, MANIFEST, read_lines

CONTACT_ENV = "PLI_CRAWL_CONTACT"


@dataclass
class CrawlConfig:
    out: Path
    source: str  # site | wiki | list
    seeds: list[str] = field(default_factory=list)  # site: pages and sitemaps
    api: str | None = None  # wiki: the api.php URL
    category: str | None = None
    search: str | None = None
    url_file: Path | None = None  # list
    depth: int = 2
    rate: float = 1.0  # requests per second per host
    licences: tuple[str, ...] = licences.OPEN
    min_side: int = 480
    strip_gps: bool = True
    model: Path | None = None  # relevance: the current model (ONNX); None: every photo kept
    threshold: float = 0.25
    known: list[tuple[str, str, str]] = field(default_factory=list)  # (sha256, phash, id) already held
    redis_url: str | None = None
    progress: bool = True
    max_items: int = 0  # stop after this many candidates (0: no limit)
    timeout_s: float = 20.0
    backoff_s: float = 1.0  # the first retry waits this long, each next one twice as long


def settings(cfg: CrawlConfig) -> dict:
    contact = os.environ.get(CONTACT_ENV, "").strip() or "set PLI_CRAWL_CONTACT"
    s = {
        "BOT_NAME": "pli-crawler",
        "USER_AGENT": f"pli-crawler/1 (power-line inspection dataset crawler; +{contact})",
        "ROBOTSTXT_OBEY": True,
        "CONCURRENT_REQUESTS": 8,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
        "DOWNLOAD_DELAY": 1.0 / max(cfg.rate, 1e-3),
        "DOWNLOAD_DELAY_JITTER": 0,
        "AUTOTHROTTLE_ENABLED": True,
        "AUTOTHROTTLE_START_DELAY": 1.0 / max(cfg.rate, 1e-3),
        "AUTOTHROTTLE_TARGET_CONCURRENCY": 1.0,
        "RETRY_ENABLED": True,
        "RETRY_TIMES": 3,
        "PLI_BACKOFF_BASE_S": cfg.backoff_s,
        "DOWNLOAD_TIMEOUT": cfg.timeout_s,
        "DEPTH_LIMIT": cfg.depth,
        "HTTPCACHE_ENABLED": True,
        "HTTPCACHE_DIR": str((cfg.out / ".cache").resolve()),
        "HTTPCACHE_IGNORE_HTTP_CODES": [429, 500, 502, 503, 504],
        "JOBDIR": str((cfg.out / ".job").resolve()),
        "MEDIA_ALLOW_REDIRECTS": True,
        "DOWNLOADER_MIDDLEWARES": {"scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
                                   "training.crawl.backoff.BackoffRetry": 550},
        "ITEM_PIPELINES": {"training.crawl.pipeline.PhotoPipeline": 1},
        "IMAGES_STORE": str(cfg.out.resolve()),
        "IMAGES_URLS_FIELD": "image_urls",
        "IMAGES_RESULT_FIELD": "images",
        "PLI_MIN_SIDE": cfg.min_side,
        "PLI_STRIP_GPS": cfg.strip_gps,
        "PLI_LICENCES": list(cfg.licences),
        "PLI_RELEVANCE_MODEL": str(cfg.model) if cfg.model else None,
        "PLI_RELEVANCE_THRESHOLD": cfg.threshold,
        "PLI_KNOWN_HASHES": [" ".join(k) for k in cfg.known],
        "PLI_PROGRESS": cfg.progress,
        "LOG_LEVEL": "WARNING",
        "LOG_INSTALL_ROOT_HANDLER": False,  # the CLI's logging stands
        "TELNETCONSOLE_ENABLED": False,
    }
    if cfg.max_items:
        s["CLOSESPIDER_ITEMCOUNT"] = cfg.max_items
    if cfg.redis_url:  # the same crawl spread over processes: one queue, one set of seen requests
        key = f"pli-crawl:{cfg.out.name}"  # crawlers writing folders of one name share one crawl
        s.update({"SCHEDULER": "scrapy_redis.scheduler.Scheduler",
                  "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
                  "SCHEDULER_PERSIST": True, "REDIS_URL": cfg.redis_url,
                  "SCHEDULER_QUEUE_KEY": f"{key}:requests", "SCHEDULER_DUPEFILTER_KEY": f"{key}:dupefilter",
                  "PLI_REDIS_KEY": key, "EXTENSIONS": {"training.crawl.workers.StayWhileOthersWork": 500}})
        s.pop("JOBDIR")
    return s


def _spider(cfg: CrawlConfig):
    from training.crawl.spiders import ListSpider, SiteSpider, WikiSpider

    if cfg.source == "site":
        if not cfg.seeds:
            raise ValueError("a site crawl needs --seed URL (pages or sitemaps)")
        return SiteSpider, {"seeds": cfg.seeds}
    if cfg.source == "wiki":
        if not cfg.api:
            raise ValueError("a MediaWiki crawl needs --api URL (its api.php)")
        return WikiSpider, {"api": cfg.api, "category": cfg.category, "search": cfg.search}
    if cfg.source == "list":
        if cfg.url_file is None or not Path(cfg.url_file).is_file():
            raise ValueError(f"a list crawl needs --urls FILE (one URL per line), not {cfg.url_file}")
        return ListSpider, {"url_file": str(cfg.url_file)}
    raise ValueError(f"source {cfg.source!r}: site, wiki or list")


def crawl(cfg: CrawlConfig) -> dict:
    """Run the crawl to its end (once per process: Scrapy's reactor does not restart) and return
    the summary it writes to `<out>/summary.json`."""
    from scrapy.crawler import CrawlerProcess

    cfg.out.mkdir(parents=True, exist_ok=True)
    spider, kwargs = _spider(cfg)
    root = logging.getLogger()
    quiet = _ScrapyAt(root.level)  # Scrapy sets its loggers to DEBUG and the root's level to NOTSET
    for handler in root.handlers:
        handler.addFilter(quiet)
    try:
        process = CrawlerProcess(settings(cfg))
        process.crawl(spider, **kwargs)
        process.start()
    finally:
        for handler in root.handlers:
            handler.removeFilter(quiet)
    return summarise(cfg)


class _ScrapyAt(logging.Filter):
    """Records at the CLI's level, and Scrapy's at WARNING unless -v asked for DEBUG."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level or logging.WARNING
        self.scrapy = level if level == logging.DEBUG else max(level, logging.WARNING)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(("scrapy", "py.warnings", "twisted")):
            return record.levelno >= self.scrapy
        return record.levelno >= self.level


def summarise(cfg: CrawlConfig) -> dict:
    kept = read_lines(cfg.out / MANIFEST)
    dropped = read_lines(cfg.out / DROPPED)
    summary = {"out": str(cfg.out), "source": cfg.source, "kept": sum(not r.get("aside") for r in kept),
               "kept_aside": sum(bool(r.get("aside")) for r in kept),
               "dropped": dict(sorted(Counter(r["reason"] for r in dropped).items())),
               "licences": dict(sorted(Counter(r["licence_family"] for r in kept).items())),
               "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k != "known"}}
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2))
    write_attribution(cfg.out, kept)
    return summary


def write_attribution(out: Path, kept: list[dict]) -> None:
    """ATTRIBUTION.md: every kept photo's title, author, licence and source, as CC BY asks."""
    lines = ["# Attribution", "", "Photos gathered by `pli data crawl`; each keeps its own licence.", "",
             "| file | title | author | licence | source |", "|---|---|---|---|---|"]
    for r in kept:
        cells = [r["file"], r.get("title") or "-", r.get("author") or "unknown", r.get("licence") or "not stated",
                 r.get("page") or r["url"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    (out / "ATTRIBUTION.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
