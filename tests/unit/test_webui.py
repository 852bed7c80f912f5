"""The browser client's files and the labeling rate limit, without a server."""

from __future__ import annotations

import re

from serving.ratelimit import TokenBucket

from serving import webui


def test_the_page_loads_nothing_from_outside_the_service():
    files = webui.load_files()
    assert set(files) == {"", "app.js", "style.css"}
    for content, _ in files.values():
        text = content.decode()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), \
            "an external address in the page"
    html = files[""][0].decode()
    assert re.findall(r'(?:src|href)="([^"]+)"', html) == ["data:,", "/ui/style.css", "/ui/app.js"]
    csp = webui.HEADERS["content-security-policy"]
    assert "connect-src 'self'" in csp and "script-src 'self'" in csp


def test_the_page_asks_for_consent_and_says_what_is_kept():
    html = webui.load_files()[""][0].decode()
    assert "never stored" in html and "48x48" in html and "data/incoming/" in html
    js = webui.load_files()["app.js"][0].decode()
    assert "consent: \"yes\"" in js and "askConsent" in js


def test_the_token_bucket_allows_a_burst_then_the_rate():
    now = [0.0]
    bucket = TokenBucket(per_minute=30, burst=5, clock=lambda: now[0])
    assert [bucket.take() for _ in range(5)] == [0.0] * 5
    wait = bucket.take()
    assert 1.9 < wait <= 2.0                       # 30 a minute: one every 2 s
    now[0] += 2.0
    assert bucket.take() == 0.0
    assert bucket.take() > 0
    now[0] += 600                                  # idle time refills to the burst, no more
    assert [bucket.take() for _ in range(6)].count(0.0) == 5
