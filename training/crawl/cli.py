"""`pli data crawl`: the thin command over training/crawl/run.py. With `--campaign NAME` the
kept photos go on into the cloud (its object store and database) through a step the cloud
provides (`INTO_CAMPAIGN`, set when `pli cloud`'s commands register: training does not import the
cloud)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

# (out folder, campaign name) -> a one-line summary; filled in by cloud/cli/learning.py
INTO_CAMPAIGN: list[Callable[[Path, str], str]] = []
KNOWN_FROM_CLOUD: list[Callable[[], list[tuple[str, str, str]]]] = []


def register(dsub: argparse._SubParsersAction) -> None:
    p = dsub.add_parser("crawl", help="gather candidate photos from the web (Scrapy): deduplicated, licensed, scored",
                        description="Crawl seed pages and sitemaps (--seed), a MediaWiki API (--api with --category "
                        "or --search) or a list of URLs (--urls) for photos. Keeps decodable photos of at least "
                        "--min-side px, neither duplicates nor near duplicates of one another or of --known photos, "
                        "under the --licence families; with --model, photos the model finds nothing in are kept "
                        "aside. Writes OUT/manifest.jsonl, OUT/dropped.jsonl (the rule that removed each), "
                        "OUT/ATTRIBUTION.md and OUT/summary.json. Polite: robots.txt, 1 request/s per host, a "
                        "User-Agent with $PLI_CRAWL_CONTACT. Interrupt and run again to resume.")
    p.add_argument("--out", type=Path, required=True, help="the crawl's folder (its state too: run again to resume)")
    p.add_argument("--seed", action="append", default=[], help="a page or sitemap URL (repeatable)")
    p.add_argument("--depth", type=int, default=2, help="links followed from a seed (default 2)")
    p.add_argument("--api", help="a MediaWiki api.php URL (e.g. https://commons.wikimedia.org/w/api.php)")
    p.add_argument("--category", help="a category of the wiki, without 'Category:'")
    p.add_argument("--search", help="a full-text search of the wiki's files")
    p.add_argument("--urls", type=Path, help="a file of image URLs, one per line")
    p.add_argument("--licence", default="cc-by,cc-by-sa,cc0,pd",
                   help="licence families kept: cc-by, cc-by-sa, cc0, pd, cc-by-nc..., other, unknown, or any "
                        "(default cc-by,cc-by-sa,cc0,pd)")
    p.add_argument("--min-side", type=int, default=480, help="the shorter side at least this many px (default 480)")
    p.add_argument("--keep-gps", action="store_true", help="keep the EXIF GPS block (default: removed)")
    p.add_argument("--model", type=Path, help="score relevance with this ONNX model (none: every photo kept)")
    p.add_argument("--threshold", type=float, default=0.25, help="the model's threshold for relevance (0.25)")
    p.add_argument("--known", type=Path, action="append", default=[],
                   help="photos held already (a manifest.jsonl or a folder): their duplicates are dropped")
    p.add_argument("--rate", type=float, default=1.0, help="requests per second per host (default 1)")
    p.add_argument("--backoff", type=float, default=1.0, help="seconds before the first retry, doubling (default 1)")
    p.add_argument("--redis", metavar="URL", help="share the queue and seen requests on Redis (scrapy-redis)")
    p.add_argument("--max", type=int, default=0, help="stop after this many candidates (default: no limit)")
    p.add_argument("--campaign", help="store the kept photos as this campaign's unlabelled pool in the cloud")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_crawl)


def _crawl(args: argparse.Namespace) -> int:
    from training.crawl import licences
    from training.crawl.dedupe import known_hashes
    from training.crawl.run import CrawlConfig, crawl

    sources = [name for name, given in (("site", args.seed), ("wiki", args.api), ("list", args.urls)) if given]
    if len(sources) != 1:
        raise ValueError("give one source: --seed URL..., --api URL (with --category or --search), or --urls FILE")
    if args.campaign and not INTO_CAMPAIGN:
        raise ValueError("--campaign needs the cloud (pip install '.[cloud]'); without it the crawl writes a folder")
    known = known_hashes(args.known)
    if args.campaign:
        for more in KNOWN_FROM_CLOUD:
            known += more()
    cfg = CrawlConfig(out=args.out, source=sources[0], seeds=args.seed, api=args.api, category=args.category,
                      search=args.search, url_file=args.urls, depth=args.depth, rate=args.rate,
                      licences=licences.parse_filter(args.licence), min_side=args.min_side,
                      strip_gps=not args.keep_gps, model=args.model, threshold=args.threshold, known=known,
                      redis_url=args.redis, progress=not args.no_progress, max_items=args.max,
                      backoff_s=args.backoff)
    summary = crawl(cfg)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}))
    if args.campaign:
        for step in INTO_CAMPAIGN:
            print(step(args.out, args.campaign))
    return 0
