"""Retries with exponential backoff: Scrapy's RetryMiddleware retries at once; this one waits
`PLI_BACKOFF_BASE_S * 2**n` before the n-th retry (asyncio reactor), so a host that is failing
is given time, not hammered."""

from __future__ import annotations

import asyncio

from scrapy.downloadermiddlewares.retry import RetryMiddleware


class BackoffRetry(RetryMiddleware):
    def __init__(self, settings):
        super().__init__(settings)
        self.base_s = settings.getfloat("PLI_BACKOFF_BASE_S", 1.0)

    async def process_request(self, request, spider=None):
        tries = request.meta.get("retry_times", 0)
        if tries:
            await asyncio.sleep(self.base_s * 2 ** (tries - 1))
        return None
