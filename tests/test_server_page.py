"""The page at `/` of `fastergpt serve`, in a real headless browser (Debian's chromium
driven by selenium): it types a prompt, presses Generate and sees the continuation
stream in, equal to what the API returns. Skipped, saying so, without chromium."""
import shutil
import time

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
pytest.importorskip("fastapi")

from test_server import model_dir, post, start  # noqa: E402,F401  (the same tiny model and server)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="chromium and chromium-driver are not installed (apt)")


def test_the_page_streams_a_continuation(model_dir):  # noqa: F811
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    proc, url = start(model_dir)
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        browser.get(url + "/")
        box = browser.find_element(By.ID, "prompt")
        box.clear()
        box.send_keys("hello world")
        browser.find_element(By.ID, "max").clear()
        browser.find_element(By.ID, "max").send_keys("12")
        browser.find_element(By.ID, "temp").clear()
        browser.find_element(By.ID, "temp").send_keys("0")
        browser.find_element(By.ID, "go").click()
        seen, deadline = set(), time.time() + 60
        while time.time() < deadline:
            made = browser.find_elements(By.ID, "generated")
            if made:
                seen.add(made[0].text)
                if made[0].get_attribute("data-done") == "1":
                    break
            time.sleep(0.02)
        text = browser.find_element(By.ID, "generated").get_attribute("textContent")
        want = post(url, "/v1/completions", {"prompt": "hello world", "max_tokens": 12,
                                             "temperature": 0})[1]["choices"][0]["text"]
        assert text == want and text
        assert browser.find_element(By.ID, "generated").get_attribute("data-done") == "1"
    finally:
        browser.quit()
        proc.terminate()
        proc.wait(timeout=30)
