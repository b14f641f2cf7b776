"""The report in a real headless Chromium: it loads offline with no console errors, every image
decodes, and a screenshot is taken. Skipped only where no Chromium binary exists (install it with
`apt-get install -y chromium`; scripts/test.sh does where it can)."""

from __future__ import annotations

import struct

import pytest

from browser import check_page, find_chromium

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="no Chromium found (chromium, chromium-browser, google-chrome or $SCALEGRID_CHROMIUM): "
           "install Debian's `chromium` package to run the browser test",
)


def test_report_opens_in_chromium(paper_report, tmp_path):
    shot = tmp_path / "report.png"
    page = check_page(paper_report.index, shot)

    assert page.exceptions == []
    assert page.console_errors == []
    n_figures = sum(len(s["figures"]) for s in paper_report.fits["sections"].values())
    assert len(page.images) == n_figures >= 10
    assert all(img["ok"] and img["width"] > 0 and img["height"] > 0 for img in page.images), page.images
    # offline: the page itself, and its images from data: URIs, nothing else
    assert all(u.startswith(("file://", "data:")) for u in page.requests), page.requests
    assert page.title.startswith("Scaling report") and page.text_length > 2000

    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1280 and height > 5000  # the whole page, not one screen
