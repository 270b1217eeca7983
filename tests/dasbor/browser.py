"""Headless Chromium from Debian's packages, driven by Selenium, for the dasbor's tests.

Never a downloaded browser: the executable and its driver are the ones
``make install`` puts in /usr/bin (packages ``chromium`` and
``chromium-driver``); Selenium is told both paths, so its manager looks
nothing up. Each driver gets a fresh profile in a temporary folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

__all__ = ["CHROMEDRIVER", "CHROMIUM", "SCREENSHOTS", "chromium", "has_no_horizontal_scroll"]

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMEDRIVER: Final = Path("/usr/bin/chromedriver")
ROOT: Final = Path(__file__).resolve().parents[2]
#: test artefacts (git-ignored): what each page looked like when the test ran
SCREENSHOTS: Final = ROOT / "artifacts" / "screenshots"
#: a phone's screen: the pages are made for it first
PHONE_WIDTH: Final = 390
PHONE_HEIGHT: Final = 844

_FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--lang=id-ID",
)


def chromium(profile_dir: Path) -> webdriver.Chrome:
    """A headless Chromium at 390x844 with a fresh profile in ``profile_dir``."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        raise AssertionError(
            f"{', '.join(missing)} missing: `make install` installs Debian's chromium and"
            " chromium-driver (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*_FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    # a phone set up in Indonesia: the pages' own default language is what it asks for
    options.add_experimental_option("prefs", {"intl.accept_languages": "id-ID,id"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    phone(driver, PHONE_HEIGHT)
    return driver


def phone(driver: webdriver.Chrome, height: int) -> None:
    """A 390 px wide phone screen (a desktop window cannot be that narrow: Chromium
    keeps it at least 500 px), with the page's viewport meta honoured as a phone does."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": PHONE_WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": True},
    )


def wait_for(driver: webdriver.Chrome, css: str, timeout_s: float = 10.0) -> Any:
    return WebDriverWait(driver, timeout_s).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def has_no_horizontal_scroll(driver: webdriver.Chrome) -> tuple[bool, int, int]:
    """``(ok, scrollWidth, innerWidth)``: nothing wider than the phone's screen."""
    width = int(driver.execute_script("return document.documentElement.scrollWidth"))
    inner = int(driver.execute_script("return window.innerWidth"))
    return width <= PHONE_WIDTH and width <= inner, width, inner


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """The whole page (not only the screen) as a PNG under artifacts/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    phone(driver, max(PHONE_HEIGHT, min(height, 6000)))
    try:
        driver.save_screenshot(str(path))
    finally:
        phone(driver, PHONE_HEIGHT)
    return path


#: per chart: its datasets and whether any pixel of the canvas was painted
CHARTS_JS: Final = """
return Array.from(document.querySelectorAll('canvas.chart')).map(function (c) {
  var chart = window.Chart && Chart.getChart(c);
  var data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  var painted = 0;
  for (var i = 3; i < data.length; i += 4) { if (data[i] !== 0) { painted++; } }
  return {id: c.dataset.source, series: chart ? chart.data.datasets.length : -1,
          labels: chart ? chart.data.labels.length : -1, painted: painted,
          width: c.width, height: c.height};
});
"""
