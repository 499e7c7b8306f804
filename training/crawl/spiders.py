"""The crawl's sources, each a Scrapy spider yielding photo candidates (`PhotoItem`); the
images pipeline (pipeline.py) fetches and judges them.

- `site`: seed pages and sitemaps, links followed within the seeds' domains to a stated depth
  (DEPTH_LIMIT); photos from `<img src>`, the largest `srcset` entry, `og:image` and links to
  image files.
- `wiki`: a MediaWiki API (Wikimedia Commons-style): the files of a category or a search, with
  their licence, author and description from `imageinfo`/`extmetadata`.
- `list`: the URLs in a file, one per line (`#` comments).
"""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlencode, urlparse

import scrapy
from scrapy.http import Response, TextResponse

IMAGE_LINK = re.compile(r"\.(jpe?g|png|webp|tiff?)(\?.*)?$", re.I)
TAGS = re.compile(r"<[^>]+>")


def photo_item(url: str, source: str, page: str = "", licence: str = "", author: str = "", title: str = "",
               description: str = "") -> dict:
    return {"url": url, "source": source, "page": page, "licence": licence, "author": author[:300],
            "title": title[:300], "description": description[:1000], "image_urls": [url]}


def _text(html: str | None) -> str:
    return re.sub(r"\s+", " ", unescape(TAGS.sub(" ", html or ""))).strip()


def largest_in_srcset(srcset: str) -> str | None:
    """The candidate with the largest width (`800w`) or density (`2x`) descriptor."""
    best, best_size = None, -1.0
    for part in srcset.split(","):
        bits = part.strip().split()
        if not bits:
            continue
        size = 1.0
        if len(bits) > 1:
            m = re.match(r"^(\d+(?:\.\d+)?)([wx])$", bits[1])
            size = float(m.group(1)) if m else 1.0
        if size > best_size:
            best, best_size = bits[0], size
    return best


class Resumable(scrapy.Spider):
    """A spider that, on a resumed crawl, first yields the candidates its last run found and did
    not judge (their pages were read, so the scheduler will not give them again)."""

    def pending(self):
        from training.crawl.pipeline import pending

        store = self.settings.get("IMAGES_STORE")
        return pending(Path(store)) if store else []


class SiteSpider(Resumable):
    name = "site"

    def __init__(self, seeds: list[str], **kw):
        super().__init__(**kw)
        self.seeds = list(seeds)
        self.allowed_domains = sorted({urlparse(u).hostname or "" for u in self.seeds} - {""})

    async def start(self):
        for item in self.pending():
            yield item
        for url in self.seeds:
            yield scrapy.Request(url, callback=self.parse)

    def parse(self, response: Response):
        if not isinstance(response, TextResponse):
            return
        if b"xml" in (response.headers.get("Content-Type") or b"") or response.url.endswith(".xml"):
            for loc in response.xpath("//*[local-name()='loc']/text()").getall():
                url = loc.strip()
                if IMAGE_LINK.search(url):
                    yield photo_item(url, "site", response.url)
                else:
                    yield response.follow(url, callback=self.parse)
            return
        page, title = response.url, (response.css("title::text").get() or "").strip()
        found: list[str] = []
        found += response.css("img::attr(src)").getall()
        found += [u for s in response.css("img::attr(srcset), source::attr(srcset)").getall()
                  if (u := largest_in_srcset(s))]
        found += response.css('meta[property="og:image"]::attr(content)').getall()
        links = response.css("a::attr(href)").getall()
        found += [h for h in links if IMAGE_LINK.search(h)]
        seen = set()
        for url in found:
            absolute = response.urljoin(url.strip())
            if absolute.startswith(("http://", "https://")) and absolute not in seen:
                seen.add(absolute)
                yield photo_item(absolute, "site", page, title=title)
        for href in links:
            if not IMAGE_LINK.search(href) and not href.startswith(("mailto:", "javascript:", "#")):
                yield response.follow(href, callback=self.parse)


class WikiSpider(Resumable):
    """Files of `category` (without the `Category:` prefix) or of a full-text `search`."""

    name = "wiki"
    PROPS: ClassVar[dict[str, str]] = {"prop": "imageinfo", "iiprop": "url|size|mime|extmetadata",
                                       "format": "json", "formatversion": "2"}

    def __init__(self, api: str, category: str | None = None, search: str | None = None, limit: int = 50, **kw):
        super().__init__(**kw)
        if not (category or search):
            raise ValueError("a MediaWiki crawl needs --category or --search")
        self.api, self.category, self.search, self.limit = api, category, search, limit

    def _query(self, cont: dict | None = None) -> str:
        if self.category:
            q = {"action": "query", "generator": "categorymembers", "gcmtype": "file", "gcmlimit": str(self.limit),
                 "gcmtitle": f"Category:{self.category}"}
        else:
            q = {"action": "query", "generator": "search", "gsrnamespace": "6", "gsrlimit": str(self.limit),
                 "gsrsearch": self.search}
        return f"{self.api}?{urlencode({**q, **self.PROPS, **(cont or {})})}"

    async def start(self):
        for item in self.pending():
            yield item
        yield scrapy.Request(self._query(), callback=self.parse)

    def parse(self, response: Response):
        doc = response.json()
        for page in (doc.get("query") or {}).get("pages") or []:
            for info in page.get("imageinfo") or []:
                meta = info.get("extmetadata") or {}

                def value(key: str, meta=meta) -> str:
                    return _text(str((meta.get(key) or {}).get("value") or ""))

                if info.get("url"):
                    yield photo_item(info["url"], "wiki", info.get("descriptionurl") or "",
                                     value("LicenseShortName") or value("License"), value("Artist"),
                                     page.get("title") or "", value("ImageDescription"))
        if "continue" in doc:
            yield scrapy.Request(self._query(doc["continue"]), callback=self.parse)


class ListSpider(Resumable):
    name = "list"

    def __init__(self, url_file: str, **kw):
        super().__init__(**kw)
        self.urls = [line.strip() for line in Path(url_file).read_text(encoding="utf-8").splitlines()
                     if line.strip() and not line.lstrip().startswith("#")]

    async def start(self):
        for item in self.pending():
            yield item
        for url in self.urls:  # those judged before are skipped by the pipeline
            yield photo_item(url, "list")
