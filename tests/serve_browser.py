#!/usr/bin/env python3
"""serve_browser.py FIXTURE WORKDIR: the upload page of `simtune serve` in headless Chromium.

Debian's chromium and chromium-driver through python3-selenium, as a technician's browser:
open GET /, choose a gallery image in the file input (what a phone camera or a dropped file
fills), press Search. The results page must show k (10) result figures, each with a thumbnail
that loaded (naturalWidth > 0, served by GET /images/<id>), a score and a label, the query
image itself first with score 1.0000 and its label, the metadata shown escaped ("<script>" as
text, and no script ran: no alert opened) and URLs as links. The page is saved as
WORKDIR/serve.png (docs/serve.png is such a screenshot). A missing chromium / chromedriver /
selenium skips (77), or fails under SIMTUNE_REQUIRE_ORACLES=1.
Exit 0 on success, 1 on a failure.
"""
import os
import shutil
import sys

import serve_common as sc
import testlib
from testlib import check

try:
    import h5py
except ImportError as e:
    testlib.missing_oracle("serve_browser.py", e)

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as e:
    testlib.missing_oracle("serve_browser.py", e)

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,900"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)


def drive(driver, server, query, label, work):
    driver.get(server.url("/"))
    check("simtune image search" in driver.page_source, "the upload page")
    driver.find_element(By.ID, "image").send_keys(query)
    driver.find_element(By.ID, "search").click()
    WebDriverWait(driver, 60).until(ec.presence_of_element_located((By.ID, "results")))
    figures = driver.find_elements(By.CSS_SELECTOR, "figure.result")
    check(len(figures) == 10, f"{len(figures)} results shown, want 10")
    loaded = driver.execute_script(
        "return Array.from(document.querySelectorAll('figure.result img')).map(i => i.complete && i.naturalWidth)")
    check(all(loaded), f"thumbnails not loaded: {loaded}")
    first = figures[0].text
    check(first.startswith("1. 1.0000") and label in first, f"first result {first!r}")
    text = driver.find_element(By.ID, "results").text
    check("<script>alert(1)</script>" in text, "the metadata with <script> shown as text")
    links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "figcaption a")]
    check(any(h.startswith("https://example.com/m?id=") for h in links), f"URL metadata not linked: {links[:3]}")
    check(driver.save_screenshot(os.path.join(work, "serve.png")), "screenshot saved")


def main():
    fixture, work = testlib.inputs(["FIXTURE", "WORKDIR"])
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        testlib.missing_oracle("serve_browser.py", "chromium or chromium-driver is not installed")
    index = os.path.join(fixture, "index.h5")
    with h5py.File(index, "r") as h:
        paths = [p.decode() for p in h["paths"][()]]
        label = h["label_names"][h["labels"][1]].decode()
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    sc.Server.LOG_DIR = work
    server = sc.Server(index)
    driver = None
    try:
        if check(server.port, f"no startup line: {server.text()}"):
            driver = browser()
            drive(driver, server, paths[1], label, work)
    finally:
        if driver:
            driver.quit()
        check(server.stop() == 0, "SIGTERM: exit 0")
    print(f"serve_browser: screenshot {os.path.join(work, 'serve.png')}")
    return testlib.finish("serve_browser", [], note="WORKDIR kept: it holds the screenshot")


if __name__ == "__main__":
    sys.exit(main())
