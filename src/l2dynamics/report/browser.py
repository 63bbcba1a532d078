"""Check a rendered report in a real headless browser (Debian's Chromium through Selenium).

:func:`check_page_in_browser` loads a URL in headless Chromium and reports the page title,
every ``<img>`` with whether it loaded, the internal ``#anchor`` links that point nowhere and
the SEVERE entries of the browser console (failed resource loads, script errors). Serve the
report over HTTP (e.g. :func:`serve_directory`) rather than ``file://``, as a reader would.

Needs ``selenium`` (the ``dev`` extra) and ``chromium`` + ``chromium-driver`` from apt
(``/usr/bin/chromium``, ``/usr/bin/chromedriver``); the paths can be overridden with the
environment variables ``L2DYNAMICS_CHROMIUM`` and ``L2DYNAMICS_CHROMEDRIVER``. Selenium
Manager is never used, so nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from l2dynamics.errors import L2DynamicsError

__all__ = ["BrowserUnavailable", "check_page_in_browser", "find_browser", "headless_chromium",
           "serve_directory"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL_HINT = ("install them with `apt-get install -y chromium chromium-driver` and "
                "`pip install selenium` (or `pip install -e .[dev]`)")

CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--window-size=1280,1024",
)

_IMAGES_JS = """
return Array.from(document.images).map(function (img) {
  return {src: img.getAttribute('src'), url: img.currentSrc || img.src, alt: img.alt,
          complete: img.complete, naturalWidth: img.naturalWidth,
          naturalHeight: img.naturalHeight};
});
"""

_ANCHORS_JS = """
return Array.from(document.querySelectorAll('a[href^="#"]'))
  .map(function (a) { return a.getAttribute('href'); })
  .filter(function (h) {
    if (h === '#') { return false; }
    var id = decodeURIComponent(h.slice(1));
    return document.getElementById(id) === null && document.getElementsByName(id).length === 0;
  });
"""


class BrowserUnavailable(L2DynamicsError, RuntimeError):
    """selenium, chromium or chromedriver is not installed."""


def find_browser() -> tuple[str, str]:
    """Paths of (chromium, chromedriver); raise :class:`BrowserUnavailable` if one is missing.

    Also checks that selenium imports.
    """
    try:
        import selenium  # noqa: F401
    except ImportError as exc:
        raise BrowserUnavailable(f"selenium is not installed; {INSTALL_HINT}") from exc
    chromium = os.environ.get("L2DYNAMICS_CHROMIUM") or _first_existing(
        CHROMIUM, "chromium", "chromium-browser")
    driver = os.environ.get("L2DYNAMICS_CHROMEDRIVER") or _first_existing(
        CHROMEDRIVER, "chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver))
               if not path or not Path(path).is_file()]
    if missing:
        raise BrowserUnavailable(f"{' and '.join(missing)} not found; {INSTALL_HINT}")
    return str(chromium), str(driver)


def _first_existing(*candidates: str) -> str | None:
    for c in candidates:
        path = c if os.path.isabs(c) else shutil.which(c)
        if path and Path(path).is_file():
            return path
    return None


@contextlib.contextmanager
def headless_chromium(window: str = "1280,1024") -> Iterator[Any]:
    """A Selenium driver of headless Chromium with a throw-away profile and the given window
    size ("WIDTH,HEIGHT"), quit on exit. Raises :class:`BrowserUnavailable` when selenium,
    chromium or chromedriver is missing."""
    chromium, driver_path = find_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="l2d-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={window}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def check_page_in_browser(url: str, *, timeout: float = 30.0) -> dict[str, Any]:
    """Load ``url`` in headless Chromium and report what a reader would see broken.

    Returns a dict:

    - ``title``: the document title;
    - ``images``: one dict per ``<img>`` (``src``, ``url``, ``alt``, ``complete``,
      ``naturalWidth``, ``naturalHeight``);
    - ``broken_images``: the ``src`` of every image that is not ``complete`` with
      ``naturalWidth > 0`` (missing file, not an image);
    - ``broken_anchors``: in-page links ``#x`` with no element ``id="x"``;
    - ``console_errors``: the messages of the SEVERE browser-console entries;
    - ``ok``: True when the three lists above are empty.

    Raises :class:`BrowserUnavailable` when selenium, chromium or chromedriver is missing.
    """
    with headless_chromium() as driver:
        driver.set_page_load_timeout(timeout)
        driver.get(url)  # returns after the load event: images have loaded or failed
        title = driver.title
        images = driver.execute_script(_IMAGES_JS) or []
        anchors = driver.execute_script(_ANCHORS_JS) or []
        logs = driver.get_log("browser")
    broken = [img["src"] for img in images
              if not (img.get("complete") and (img.get("naturalWidth") or 0) > 0)]
    errors = [entry.get("message", "") for entry in logs if entry.get("level") == "SEVERE"]
    return {"title": title, "images": images, "broken_images": broken,
            "broken_anchors": list(anchors), "console_errors": errors,
            "ok": not (broken or anchors or errors)}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def serve_directory(directory: str | Path) -> Iterator[str]:
    """Serve ``directory`` on http://127.0.0.1:<free port>/ in a thread; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="l2d-report-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def check_report(out_dir: str | Path, timeout: float = 30.0) -> dict[str, Any]:
    """Serve `out_dir` on 127.0.0.1 and check its index.html in headless Chromium (see
    :func:`check_page_in_browser`)."""
    with serve_directory(out_dir) as base:
        return check_page_in_browser(base + "index.html", timeout=timeout)
