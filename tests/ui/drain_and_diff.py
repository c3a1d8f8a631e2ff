#!/usr/bin/python3
"""Click-through test of draining a node and reading a version diff in headless Chromium
(Debian's chromium + chromium-driver + python3-selenium), modelled on live_jobs.py.

Starts `drover agent -dev` on a free port, runs a one-allocation job with the CLI, opens the
allocation's page, runs a command in its task from the page (stdout, stderr and exit
code shown, escaped), opens its file browser and the topology page, then goes to the dev agent's
only node, opens the Drain form with the keyboard, drains with a 10s deadline and watches
the drain monitor count the allocation and then say the drain completed, without a reload
(the page's JS global survives). Then it edits the job with the CLI and sees the version
diff on the job page without a reload; and checks the CSP reported no violation.
Screenshots go to $UI_SCREENSHOTS (default: a temporary directory, printed).

Run:  cargo build --bin drover && /usr/bin/python3 tests/ui/drain_and_diff.py
      (set-up in _common.py)
"""

import time

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from _common import UiSession, act, sleep_job



def main(s):
    driver = s.driver

    def run_job(memory):
        s.run_job("selenium-drain", sleep_job("selenium-drain", memory=memory))

    run_job(16)
    alloc = s.running_alloc("selenium-drain")
    node = s.node

    # The allocation's page (actions, resources used) and its file browser.
    driver.get(s.url(f"/ui/allocations/{alloc}"))
    WebDriverWait(driver, 10).until(lambda d: "Using now" in d.page_source)
    assert "Send a signal" in driver.page_source
    s.shot("1-allocation")
    # Run command: the output (escaped) and the exit code, through the exec API.
    summary = [e for e in driver.find_elements(By.CSS_SELECTOR, ".actions summary")
               if e.text.startswith("Run command")][0]
    summary.click()
    box = driver.find_element(By.ID, "exec-command")
    box.send_keys("sh -c 'echo \"<b>out</b>\"; echo err >&2; exit 3'", Keys.ENTER)
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "exec-exit"))
    assert driver.find_element(By.ID, "exec-exit").text == "3"
    assert driver.find_element(By.ID, "exec-stdout").text == "<b>out</b>"
    assert driver.find_element(By.ID, "exec-stderr").text == "err"
    assert not driver.find_elements(By.CSS_SELECTOR, "#exec-stdout b"), "stdout was not escaped"
    s.shot("1b-run-command")
    driver.find_element(By.LINK_TEXT, "Browse the allocation's files").click()
    WebDriverWait(driver, 10).until(lambda d: "Contents of /" in d.page_source)
    driver.find_element(By.LINK_TEXT, "alloc/").click()
    WebDriverWait(driver, 10).until(lambda d: "Contents of /alloc" in d.page_source)
    s.shot("2-files")

    # Topology, through the navigation.
    driver.find_element(By.LINK_TEXT, "Topology").click()
    WebDriverWait(driver, 10).until(lambda d: "selenium-drain (20, 16)" in d.page_source)
    s.shot("3-topology")

    # Drain the node from its page, keyboard only.
    driver.get(s.url(f"/ui/clients/{node}"))
    s.wait_live()
    summaries = driver.find_elements(By.CSS_SELECTOR, ".actions details summary")
    drain = [s for s in summaries if s.text.startswith("Drain")][0]
    drain.send_keys(Keys.ENTER)
    box = act(driver, "#drain-deadline", lambda e: e)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("10s")
    s.shot("4-drain-form")
    box.send_keys(Keys.ENTER)
    WebDriverWait(driver, 10).until(lambda d: "The drain was set" in d.page_source)
    driver.execute_script("window.__noReload = 'still here';")
    t0 = time.monotonic()
    try:
        WebDriverWait(driver, 5).until(lambda d: "left to migrate" in d.page_source)
        s.shot("5-draining")
    except Exception:
        pass  # it may have completed already
    WebDriverWait(driver, 60).until(lambda d: "Drain complete" in d.page_source)
    took = time.monotonic() - t0
    assert driver.execute_script("return window.__noReload;") == "still here", "the page reloaded"
    s.shot("6-drain-complete")
    print(f"the drain completed {took:.1f}s after it was set, shown without a reload")

    # A version diff on the job page after an edit.
    driver.get(s.url("/ui/jobs/selenium-drain"))
    s.wait_live()
    driver.execute_script("window.__noReload = 'still here';")
    run_job(32)
    WebDriverWait(driver, 10).until(lambda d: "Changes in version 1" in d.page_source)
    assert driver.execute_script("return window.__noReload;") == "still here", "the page reloaded"
    # The live refresh may swap the block while it is read: `act` finds it again.
    diff = 'pre.diff[aria-label="Changes in version 1"]'
    shown, text = act(driver, diff, lambda e: (e.is_displayed(), e.text))
    assert shown, "the newest version's diff is not open"
    assert "Memory" in text or "memory" in text, text
    act(driver, diff, lambda e: driver.execute_script("arguments[0].scrollIntoView();", e))
    s.shot("7-version-diff")


if __name__ == "__main__":
    UiSession.run(main, window="1400,900")
