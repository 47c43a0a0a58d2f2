"""The dashboard in a real browser (Debian's chromium + chromium-driver through selenium).

Usage: dashboard.py URL SCREENSHOT_DIR
Opens the page, checks that it names all three nodes online with the GPU shown, prints READY
and waits for the test to kill `backup`; then checks that the open page shows backup offline
without a reload and that the browser console holds no errors. Prints READY again and waits
for the test to stop the node serving the page: the page must say so (AWAY), and come back by
itself once the test restarts it. Screenshots of each step are saved.
"""

import sys
import time

from selenium.webdriver.common.by import By

from browser import chromium

URL, SHOTS = sys.argv[1], sys.argv[2]

driver = chromium()


def wait(what, check, limit=20.0):
    until = time.time() + limit
    while time.time() < until:
        try:
            if check():
                return
        except Exception:  # the page may be re-rendering
            pass
        time.sleep(0.1)
    driver.save_screenshot(f"{SHOTS}/failed.png")
    raise AssertionError(f"the page never showed {what}; it shows:\n{driver.find_element(By.TAG_NAME, 'body').text}")


# The page re-renders its cards on every poll, so an element found a moment ago may be gone:
# every read below is one script run in the page, which sees one rendering whole.
def cards():
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('.card')]"
        ".map(c => [c.dataset.node, {state: c.dataset.state, text: c.innerText}]))")


def state(node):
    return cards().get(node, {}).get("state")


def text_of(selector):
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", selector)


try:
    driver.get(URL)
    wait("three nodes online", lambda: [state(n) for n in ("hetzner", "zombie-pc", "backup")] == ["self", "online", "online"])
    shown = {node: card["text"] for node, card in cards().items()}
    assert "RX 6800 XT" in shown["zombie-pc"], shown["zombie-pc"]
    assert "online" in shown["backup"] and "this node" in shown["hetzner"], shown
    wait("the tasks the test ran", lambda: driver.execute_script("return document.querySelectorAll('#tasks tr').length") >= 3)
    driver.save_screenshot(f"{SHOTS}/all-online.png")
    driver.set_window_size(390, 844)  # a phone
    driver.save_screenshot(f"{SHOTS}/phone.png")
    driver.set_window_size(1280, 900)
    print("READY", flush=True)
    sys.stdin.readline()  # the test kills backup, then writes a line

    started = time.time()
    wait("backup offline", lambda: state("backup") == "offline")
    print(f"backup shown offline {time.time() - started:.1f} s after the kill, without a reload")
    assert "offline" in text_of('.card[data-node="backup"] .badge')
    wait("the offline event", lambda: "went offline" in text_of("#events"))
    driver.save_screenshot(f"{SHOTS}/backup-offline.png")

    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, f"browser console errors: {errors}"
    print("no console errors", flush=True)

    # The node serving the page goes away: the page says so, then recovers on its own.
    print("READY", flush=True)
    sys.stdin.readline()  # the test stopped hetzner
    banner = driver.find_element(By.ID, "banner")  # never re-rendered: only its class and text change
    wait("the lost-contact banner", lambda: banner.is_displayed() and "Lost contact" in banner.text)
    driver.save_screenshot(f"{SHOTS}/serving-node-away.png")
    print("AWAY", flush=True)
    sys.stdin.readline()  # the test restarted hetzner
    wait("the page back without a reload", lambda: not banner.is_displayed() and state("hetzner") == "self", limit=30)
    print("back; screenshots in", SHOTS)
finally:
    driver.quit()
