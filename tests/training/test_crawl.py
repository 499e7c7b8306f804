"""`pli data crawl` against a fixture site on loopback (tests/crawl_site.py): exactly the
expected photos kept, with their licences; every other candidate dropped with its reason;
robots.txt obeyed; GPS stripped and the rest of EXIF kept; an interrupted crawl resumed without
fetching again; the MediaWiki source with its licences and the licence filter; and the pure
parts (checks, licence names, srcset) with hypothesis where they parse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import piexif
import pytest
from crawl_site import Site, photo
from hypothesis import given
from hypothesis import strategies as st

from training.crawl import licences
from training.crawl.checks import Refused, check
from training.crawl.dedupe import Seen
from training.crawl.spiders import largest_in_srcset

ROOT = Path(__file__).resolve().parents[2]


def _crawl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PLI_CRAWL_CONTACT": "ops@example.invalid"}
    return subprocess.run([sys.executable, "-m", "pli", "-q", "data", "crawl", "--rate", "50", "--backoff", "0.1",
                           "--no-progress", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def site():
    with Site() as s:
        yield s


@pytest.fixture(scope="module")
def site_crawl(site, tmp_path_factory):
    out = tmp_path_factory.mktemp("crawl") / "site"
    run = _crawl("--out", str(out), "--seed", f"{site.base}/index.html", "--seed", f"{site.base}/sitemap.xml",
                 "--licence", "unknown")
    assert run.returncode == 0, run.stderr[-3000:]
    return out, json.loads(run.stdout.strip().splitlines()[-1])


def test_a_site_crawl_keeps_exactly_the_expected_photos_and_says_why_it_dropped_the_rest(site, site_crawl):
    out, summary = site_crawl
    kept = {Path(r["url"]).name for r in _lines(out / "manifest.jsonl")}
    assert kept == {"a.jpg", "b.jpg", "c.jpg", "d.png", "e.jpg", "direct.jpg", "slow.jpg", "flaky.jpg"}
    dropped = {Path(r["url"]).name: r["reason"] for r in _lines(out / "dropped.jsonl")}
    assert dropped == {"tiny.jpg": "too_small", "dup_a.jpg": "duplicate", "near_a.jpg": "near_duplicate",
                       "truncated.jpg": "truncated", "bomb.png": "bomb", "fake.jpg": "not_an_image",
                       "fail.jpg": "fetch_failed"}
    assert summary["kept"] == 8 and summary["dropped"]["duplicate"] == 1
    assert "b_small.jpg" not in kept | set(dropped)  # the srcset's largest only
    for row in _lines(out / "manifest.jsonl"):
        stored = check((out / row["file"]).read_bytes())
        assert stored.sha256 == row["sha256"] == Path(row["file"]).stem and len(row["phash"]) == 16
        assert row["licence_family"] == "unknown" and row["page"].startswith(site.base)


def test_robots_txt_is_obeyed_and_nothing_is_fetched_twice(site, site_crawl):
    assert site.log["/robots.txt"] >= 1
    assert site.log["/private/secret.html"] == 0 and site.log["/private/p.jpg"] == 0
    assert site.log["/photos/a.jpg"] == 1  # shown on two pages, fetched once
    assert site.log["/photos/flaky.jpg"] == 3 and site.log["/photos/fail.jpg"] == 4  # retried (3 times at most)


def test_gps_is_stripped_and_the_rest_of_exif_kept(site_crawl):
    out, _ = site_crawl
    (row,) = [r for r in _lines(out / "manifest.jsonl") if r["url"].endswith("/a.jpg")]
    exif = piexif.load((out / row["file"]).read_bytes())
    assert not exif["GPS"] and exif["0th"][piexif.ImageIFD.Make] == b"pli-test" and row["gps_stripped"]


def test_an_interrupted_crawl_resumes_without_fetching_again(site, tmp_path):
    """Killed (SIGKILL) after a few photos, then run again: every candidate judged once, also
    those whose page the first run had read, and no photo fetched from the site twice."""
    import signal
    import time

    out = tmp_path / "resumed"
    before = dict(site.log)
    args = ["--out", str(out), "--seed", f"{site.base}/index.html", "--licence", "unknown"]
    env = {**os.environ, "PLI_CRAWL_CONTACT": "ops@example.invalid"}
    first = subprocess.Popen([sys.executable, "-m", "pli", "-q", "data", "crawl", "--rate", "2", "--backoff", "0.1",
                              "--no-progress", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)

    def judged() -> int:
        return sum(len(_lines(out / f)) for f in ("manifest.jsonl", "dropped.jsonl") if (out / f).exists())

    deadline = time.monotonic() + 60
    while judged() < 3 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    partial = judged()
    assert 3 <= partial < 14, partial  # stopped part way
    second = _crawl("--rate", "50", *args)
    assert second.returncode == 0, second.stderr[-2000:]
    urls = [r["url"] for r in _lines(out / "manifest.jsonl") + _lines(out / "dropped.jsonl")]
    assert len(urls) == len(set(urls)) == 14  # each candidate of index.html and page2.html judged once
    fetched = {k: v - before.get(k, 0) for k, v in site.log.items()}
    assert all(n <= 1 for k, n in fetched.items() if k.startswith("/photos/") and "fail" not in k and "flaky" not in k)


def test_a_mediawiki_category_with_its_licences_and_the_licence_filter(site, tmp_path):
    out = tmp_path / "wiki"
    run = _crawl("--out", str(out), "--api", f"{site.base}/w/api.php", "--category", "Insulators")
    assert run.returncode == 0, run.stderr[-2000:]
    kept = {Path(r["url"]).name: r for r in _lines(out / "manifest.jsonl")}
    assert set(kept) == {"w1.jpg", "w3.jpg"}  # two pages of results; W2 is non-commercial
    assert (kept["w1.jpg"]["licence"], kept["w1.jpg"]["licence_family"]) == ("CC BY-SA 4.0", "cc-by-sa")
    assert kept["w1.jpg"]["author"] == "Ann Author" and kept["w3.jpg"]["licence_family"] == "pd"
    (w2,) = _lines(out / "dropped.jsonl")
    assert w2["reason"] == "licence" and "CC BY-NC 4.0" in w2["detail"]
    assert site.log["/wiki/w2.jpg"] == 0  # refused before a byte was fetched
    attribution = (out / "ATTRIBUTION.md").read_text()
    assert "Ann Author" in attribution and "CC BY-SA 4.0" in attribution


def test_a_crawl_without_a_source_or_with_two_fails_clearly(tmp_path):
    run = _crawl("--out", str(tmp_path / "x"))
    assert run.returncode != 0 and "give one source" in run.stderr and "Traceback" not in run.stderr
    run = _crawl("--out", str(tmp_path / "x"), "--seed", "http://127.0.0.1:9/", "--licence", "cc-by,kind-of-free")
    assert run.returncode != 0 and "--licence" in run.stderr


@given(st.binary(max_size=2000))
def test_check_refuses_random_bytes_with_a_reason(data):
    with pytest.raises(Refused) as exc:
        check(data)
    assert exc.value.reason in {"not_an_image", "truncated", "type", "too_small", "bomb"}


def test_check_keeps_a_photo_and_hashes_near_copies_close():
    from crawl_site import near_copy

    a = check(photo(1))
    assert (a.width, a.height, a.format, a.exif) == (640, 480, "JPEG", True)
    with pytest.raises(Refused, match="too_small"):
        check(photo(1), min_side=500)
    seen = Seen()
    seen.add(a.sha256, a.phash, "a")
    assert seen.exact(a.sha256) == "a"
    assert seen.near(check(near_copy(photo(1)), min_side=100).phash) == "a"
    assert seen.near(check(photo(2)).phash) is None


@pytest.mark.parametrize(("text", "family"), [
    ("CC BY-SA 4.0", "cc-by-sa"), ("cc-by-4.0", "cc-by"), ("CC0", "cc0"), ("Public domain", "pd"),
    ("CC BY-NC-SA 3.0", "cc-by-nc-sa"), ("All rights reserved", "other"), ("", "unknown"), (None, "unknown")])
def test_licence_names_become_families(text, family):
    assert licences.normalise(text)[0] == family


@given(st.text(max_size=200))
def test_any_licence_text_gets_a_known_family(text):
    family, written = licences.normalise(text)
    assert family in licences.FAMILIES and len(written) <= 120


URLS = st.sampled_from(["a.jpg", "b.jpg", "c%20d.jpg", "/x/y.png?s=1"])


@given(st.lists(st.tuples(URLS, st.integers(1, 4000)), max_size=6))
def test_srcset_gives_the_widest_candidate(entries):
    srcset = ", ".join(f"{u} {w}w" for u, w in entries)
    best = largest_in_srcset(srcset)
    if not entries:
        assert best is None
    else:
        widest = max(w for _, w in entries)
        assert best == next(u for u, w in entries if w == widest).split()[0]


def _fetched(out: Path) -> list[str]:
    """The URLs a crawler downloaded: its HTTP cache keeps each response's `meta` (a dict's repr)."""
    import ast

    return [ast.literal_eval(m.read_text())["url"] for m in (out / ".cache").rglob("meta")]


def test_two_crawlers_share_one_queue_on_a_real_redis_and_fetch_no_photo_twice(tmp_path):
    """scrapy-redis: two processes, one queue and dupefilter on a local redis-server; each
    writes its own folder; together they judge every candidate once, as one crawl would, and the
    one whose queue runs dry first stays while the other is busy, so both do part of the work."""
    from collections import Counter

    import redis

    from training.crawl.local_redis import LocalRedis

    try:
        server = LocalRedis(tmp_path / "redis")
    except FileNotFoundError as exc:  # a missing service fails: scripts/setup.sh installs it
        pytest.fail(str(exc))
    with server, Site() as site:
        env = {**os.environ, "PLI_CRAWL_CONTACT": "ops@example.invalid"}
        outs = [tmp_path / who / "shared" for who in ("a", "b")]
        procs = [subprocess.Popen([sys.executable, "-m", "pli", "-q", "data", "crawl", "--rate", "5", "--backoff",
                                   "0.1", "--no-progress", "--out", str(out), "--seed", f"{site.base}/index.html",
                                   "--seed", f"{site.base}/sitemap.xml", "--licence", "unknown",
                                   "--redis", server.url], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for out in outs]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-2000:]
        keys = {k.decode() for k in redis.Redis.from_url(server.url).keys("pli-crawl:shared:*")}

    def rows(name: str) -> list[dict]:  # a crawler that kept or dropped nothing writes no file
        return [r for out in outs if (out / name).exists() for r in _lines(out / name)]

    kept, dropped = rows("manifest.jsonl"), rows("dropped.jsonl")
    urls = [r["url"] for r in kept + dropped]
    assert len(urls) == len(set(urls)) == 15  # every candidate judged once, by one of them
    assert len(kept) == 8 and Counter(r["reason"] for r in dropped) == Counter(
        {"too_small": 1, "duplicate": 1, "near_duplicate": 1, "truncated": 1, "bomb": 1, "not_an_image": 1,
         "fetch_failed": 1})  # duplicates found across the two crawlers' photos
    for page in ("/index.html", "/page2.html", "/gallery.html", "/sitemap.xml"):
        assert site.log[page] == 1, page  # one shared dupefilter
    photos = {k: n for k, n in site.log.items() if k.startswith("/photos/")}
    assert photos.pop("/photos/fail.jpg") == 4 and photos.pop("/photos/flaky.jpg") == 3  # retried by one only
    assert set(photos.values()) == {1}
    assert {"pli-crawl:shared:dupefilter", "pli-crawl:shared:photos", "pli-crawl:shared:hashes"} <= keys
    assert "pli-crawl:shared:workers" not in keys  # each crawler left the roll as it closed
    fetched = [_fetched(out) for out in outs]  # what each crawler downloaded, from its own HTTP cache
    assert all(any(u.endswith((".html", ".xml")) for u in f) for f in fetched), fetched  # both took pages
    assert not (set(fetched[0]) & set(fetched[1])) - {f"{site.base}/robots.txt"}  # and nothing twice
