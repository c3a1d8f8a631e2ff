#!/usr/bin/python3
"""Click-through test of the web UI in headless Chromium (Debian's chromium + chromium-driver
+ python3-selenium).

Starts `drover agent -dev` on a free port, opens /ui/jobs, runs a job with the CLI and
checks that it appears in the open page without a reload (the page's JS global survives),
that the live indicator says so, that the CSP reported no violation, and that the
keyboard-only path to a job's Stop confirmation works. Screenshots go to
$UI_SCREENSHOTS (default: a temporary directory, printed).

Run:  cargo build --bin drover && /usr/bin/python3 tests/ui/live_jobs.py  (Debian's python3,
      which has selenium; set-up in _common.py)
"""

import time

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from _common import UiSession, act, sleep_job



def main(s):
    driver = s.driver
    driver.get(s.url("/ui/jobs"))
    s.wait_live()
    driver.execute_script("window.__noReload = 'still here';")
    # Something typed in a filter (not submitted, focus gone) must survive the swap.
    act(driver, 'main input[name="search"]', lambda e: e.send_keys("sel"))
    act(driver, "h1", lambda e: e.click())
    s.shot("1-jobs-empty")

    t0 = time.monotonic()
    s.run_job("selenium-web", sleep_job("selenium-web"))
    WebDriverWait(driver, 5).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, 'a[href="/ui/jobs/selenium-web"]')
    )
    took = time.monotonic() - t0
    assert driver.execute_script("return window.__noReload;") == "still here", "the page reloaded"
    assert took <= 5, f"the job took {took:.1f}s to appear"
    kept = act(driver, 'main input[name="search"]', lambda e: e.get_attribute("value"))
    assert kept == "sel", f"the typed filter was lost: {kept!r}"
    # It becomes running, still without a reload.
    WebDriverWait(driver, 30).until(
        lambda d: "1" in [c.text for c in d.find_elements(
            By.XPATH, '//a[@href="/ui/jobs/selenium-web"]/ancestor::tr/td[6]')]
    )
    s.shot("2-jobs-live")
    print(f"job appeared {took:.2f}s after `job run`, without a reload")

    # Keyboard only: the search box jumps to the job, then Stop's confirmation opens.
    box = driver.find_element(By.ID, "q")
    box.send_keys("selenium", Keys.ENTER)
    WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith("/ui/jobs/selenium-web"))
    act(driver, ".actions details summary", lambda e: e.send_keys(Keys.ENTER))
    shown = act(driver, ".actions details button.danger", lambda e: e.is_displayed())
    assert shown, "the confirmation did not open"
    s.shot("3-job-stop-confirm")
    act(driver, ".actions details button.danger", lambda e: e.send_keys(Keys.ENTER))
    WebDriverWait(driver, 10).until(lambda d: "/ui/jobs/selenium-web" in d.current_url)
    WebDriverWait(driver, 10).until(lambda d: "The job was stopped" in d.page_source)
    s.shot("4-job-stopped")

    # A client's page, reached through the navigation.
    driver.find_element(By.LINK_TEXT, "Clients").click()
    WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith("/ui/clients"))
    act(driver, "tbody th a", lambda e: e.click())
    WebDriverWait(driver, 10).until(lambda d: "Drain…" in d.page_source)
    s.shot("5-client")


if __name__ == "__main__":
    UiSession.run(main)
