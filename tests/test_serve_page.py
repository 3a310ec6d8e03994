"""The page of `headcls serve` in a real browser: headless Chromium from Debian's `chromium` package, driven by
Selenium through Debian's `chromium-driver` (.ci/run installs both; no browser is downloaded). The screenshot is
kept in test-artifacts/serve_page.png."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_serve import serving

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and DRIVER):
        if os.environ.get("HEADCLS_REQUIRE_BROWSER"):
            pytest.fail("chromium and chromedriver are required (Debian packages chromium, chromium-driver)")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1000,800", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_classifies_a_sentence_and_shows_a_bar_per_label(browser, trained_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with serving(trained_dir) as server:
        browser.get(f"http://127.0.0.1:{server.port}/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: "labels:" in d.find_element(By.ID, "model").text)
        assert browser.find_element(By.ID, "model").text == "Model: model (torch) — labels: business, science, sports"

        browser.find_element(By.ID, "classify").click()  # an empty box: the server refuses, the page says why
        wait.until(lambda d: d.find_element(By.ID, "message").is_displayed())
        assert "The server refused the request (422): text 1 is empty" in browser.find_element(By.ID, "message").text

        browser.find_element(By.ID, "text").send_keys("the team scored a goal in the match")
        browser.find_element(By.ID, "classify").click()
        wait.until(lambda d: d.find_element(By.ID, "label").text)
        assert browser.find_element(By.ID, "label").text == "sports"
        assert not browser.find_element(By.ID, "message").is_displayed()
        bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
        assert sorted(bar.get_attribute("data-label") for bar in bars) == ["business", "science", "sports"]
        shares = [float(bar.find_element(By.CSS_SELECTOR, ".score").text.rstrip("%")) for bar in bars]
        assert sum(shares) == pytest.approx(100, abs=0.3) and shares == sorted(shares, reverse=True)
        assert "best" in bars[0].get_attribute("class") and bars[0].get_attribute("data-label") == "sports"
        ARTIFACTS.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / "serve_page.png"))
