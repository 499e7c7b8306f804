"""Crawling: candidate inspection photos from the web for a new campaign (`pli data crawl`).

Scrapy does the fetching (robots.txt, AutoThrottle, per-host concurrency, retries, HTTP cache,
JOBDIR to pause and resume; scrapy-redis to share one queue between crawlers): `spiders.py`
holds the three sources, `pipeline.py` its images pipeline with the project's rules, `checks.py`
what makes a file a usable photo, `dedupe.py` exact and near duplicates, `licences.py` the
licence names and the filter, `run.py` a crawl from a config to a folder with a manifest.
"""
