"""Headless Chromium from the system (Debian's ``chromium`` + ``chromium-driver``), driven by Selenium.

Nothing is downloaded: the browser and its driver are the ones on ``PATH`` (or ``CHROMIUM`` /
``CHROMEDRIVER``); ``.ci/run`` installs them where they are missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

#: flags for a quiet headless browser: no sandbox (root in CI), and none of the background traffic
#: (component updates, sync, safe browsing lists...) Chromium otherwise sends to a closed network
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--metrics-recording-only", "--mute-audio",
)
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> tuple[str, str] | str:
    """``(browser, driver)`` paths, or why there are none (naming what to install)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements.txt)"
    browser = os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, BROWSER_NAMES)), None)
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    if not browser or not driver:
        missing = " and ".join(name for name, path in (("chromium", browser), ("chromedriver", driver)) if not path)
        return f"{missing} not found: apt-get install chromium chromium-driver (.ci/run does)"
    return browser, driver


def start_chromium(profile_dir: Path, width: int = 1280, height: int = 860) -> Any:
    """A headless Chromium (a Selenium ``WebDriver``) with its own profile; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_chromium()
    if isinstance(found, str):
        raise RuntimeError(found)
    browser, driver = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def require_chromium() -> None:
    """Skip (naming what is missing) when there is no browser, unless ``REQUIRE_TEST_SERVICES`` is set (CI): fail."""
    import pytest

    found = find_chromium()
    if isinstance(found, str):
        if os.environ.get("REQUIRE_TEST_SERVICES"):
            pytest.fail(f"REQUIRE_TEST_SERVICES is set but {found}")
        pytest.skip(found)
