"""Debian's chromium, headless, through chromium-driver, for the dashboard tests."""

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def chromium():
    """A headless chromium that keeps its console log and reaches no host but this machine."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-default-apps", "--no-proxy-server",
                 # The network rule: the browser reaches no host but localhost and 127.0.0.1 (the
                 # page), so nothing it might want to fetch on its own can leave the machine.
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
