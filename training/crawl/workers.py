"""The crawlers of one distributed crawl keep each other alive: a crawler whose own queue ran dry
stays while another is still busy, since that one may yet push pages into the shared queue.

Without this, Scrapy closes a crawler as soon as it is idle: the first to run dry leaves and the
rest of the crawl falls to whoever was slowest. Each busy crawler beats (`<key>:workers`, a Redis
hash of crawler → last busy time, refreshed every `PLI_REDIS_BEAT_S`); an idle one raises
`DontCloseSpider` while the shared queue holds requests or another crawler beat within
`PLI_REDIS_LINGER_S`, and polls the queue at every beat (Scrapy's own heartbeat for an idle
crawler is 5 s: the engine's next call is scheduled directly, its one private attribute used).
When all are idle and the queue is empty, all close.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

from scrapy import signals
from scrapy.exceptions import DontCloseSpider, NotConfigured


def others_busy(client, key: str, me: str, now: float, linger_s: float) -> list[str]:
    """The other crawlers of `key` that were busy within `linger_s` seconds of `now`."""
    beats = client.hgetall(f"{key}:workers")
    return sorted(k.decode() for k, v in beats.items() if k.decode() != me and now - float(v) <= linger_s)


class StayWhileOthersWork:
    def __init__(self, crawler, client, key: str, beat_s: float, linger_s: float):
        self.crawler, self.client, self.key = crawler, client, key
        self.beat_s, self.linger_s = beat_s, linger_s
        self.me = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.task = None
        self.waited = 0

    @classmethod
    def from_crawler(cls, crawler):
        s = crawler.settings
        key = s.get("PLI_REDIS_KEY")
        if not key:
            raise NotConfigured("not a distributed crawl")
        import redis

        ext = cls(crawler, redis.Redis.from_url(s.get("REDIS_URL")), key, s.getfloat("PLI_REDIS_BEAT_S", 0.5),
                  s.getfloat("PLI_REDIS_LINGER_S", 4.0))
        crawler.signals.connect(ext.opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.idle, signal=signals.spider_idle)
        crawler.signals.connect(ext.closed, signal=signals.spider_closed)
        return ext

    def opened(self, spider=None) -> None:
        from twisted.internet import task

        self.mark()
        self.task = task.LoopingCall(self.beat)
        self.task.start(self.beat_s, now=False)

    def mark(self) -> None:
        pipe = self.client.pipeline()
        pipe.hset(f"{self.key}:workers", self.me, repr(time.time()))
        pipe.expire(f"{self.key}:workers", 86400)
        pipe.execute()

    def beat(self) -> None:
        engine = self.crawler.engine
        if engine is None:
            return
        if not engine.spider_is_idle():
            self.mark()
        if self.waited:  # staying: look at the shared queue now, not at Scrapy's next 5 s heartbeat
            slot = getattr(engine, "_slot", None)
            if slot is not None:
                slot.nextcall.schedule()

    def idle(self, spider=None) -> None:
        queued = self.client.zcard(f"{self.key}:requests") if self.client.type(
            f"{self.key}:requests") == b"zset" else self.client.llen(f"{self.key}:requests")
        busy = others_busy(self.client, self.key, self.me, time.time(), self.linger_s)
        if queued or busy:
            self.waited += 1
            spider.logger.info("idle, staying: %d requests queued, busy: %s", queued, ", ".join(busy) or "-")
            raise DontCloseSpider

    def closed(self, spider=None) -> None:
        if self.task is not None and self.task.running:
            self.task.stop()
        self.client.hdel(f"{self.key}:workers", self.me)
