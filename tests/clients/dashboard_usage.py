"""The door's dashboard in a real browser (chromium + chromium-driver through selenium): the
usage table shows what each key used today.

Usage: dashboard_usage.py URL EXPECTED
URL is the door's /ui#key=KEY (a key with the dashboard permission); EXPECTED is
`key:requests:errors:prompt:completion,...`. Waits until the table shows exactly those rows, and
checks that the browser console holds no errors.
"""

import sys
import time

from selenium.webdriver.common.by import By

from browser import chromium

URL, EXPECTED = sys.argv[1], sys.argv[2]
expected = {}
for item in EXPECTED.split(","):
    key, *counts = item.split(":")
    expected[key] = counts

driver = chromium()


def shown():
    """The usage table as the page renders it: key -> [requests, errors, prompt, completion]."""
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#usage tr')]"
        ".map(r => [r.dataset.key, [...r.children].slice(1, 5).map(c => c.innerText)]))")


try:
    driver.get(URL)
    until = time.time() + 20
    while shown() != expected:
        if time.time() > until:
            body = driver.find_element(By.TAG_NAME, "body").text
            raise AssertionError(f"the usage table never showed {expected}; it shows {shown()}:\n{body}")
        time.sleep(0.2)
    title = driver.find_element(By.ID, "usage-title").text
    assert title.startswith("Usage today ("), title
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, f"browser console errors: {errors}"
    print("usage table shown:", shown())
finally:
    driver.quit()
