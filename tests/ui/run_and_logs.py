#!/usr/bin/python3
"""Click-through test of running a job and reading its logs in headless Chromium (Debian's
chromium + chromium-driver + python3-selenium), modelled on live_jobs.py.

Starts `drover agent -dev` on a free port, goes from the jobs list to "Run a job" with the
keyboard, types a job specification into the text area, Plans (the diff and "All tasks
successfully allocated" appear), Runs, lands on the job page and sees its allocation
running without a reload, opens the task's logs, sees new lines arrive, filters them with a
regex (old and new lines), pauses, wraps, and checks the Download link; then edits the job
from its page (Plan shows the task's diff), runs version 1 and sees the version diff; checks that a
task that printed 15,000 lines shows only the last 10,000; and that the CSP reported no
violation. Screenshots go to $UI_SCREENSHOTS (default: a temporary directory,
printed).

Run:  cargo build --bin drover && /usr/bin/python3 tests/ui/run_and_logs.py
      (set-up in _common.py)
"""

import re
import time
import urllib.request

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from _common import UiSession, act

JOB = """job "selenium-run" {
datacenters = ["dc1"]
type = "service"
group "main" {
count = 1
task "ticker" {
driver = "raw_exec"
kill_timeout = "2s"
config {
command = "/bin/sh"
args = ["-c", "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.1; done"]
}
resources {
cpu = 20
memory = 16
}
}
}
}
"""


def log_lines(driver):
    return driver.execute_script(
        "return Array.prototype.map.call(document.querySelectorAll('#log span'),"
        " function (s) { return s.textContent.replace(/\\n$/, ''); });")


def main(s):
    driver = s.driver
    driver.get(s.url("/ui/jobs"))

    # Keyboard only: the "Run a job" link, the text area, Plan.
    act(driver, 'a[href="/ui/jobs/run"]', lambda e: e.send_keys(Keys.ENTER))
    WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith("/ui/jobs/run"))
    spec = driver.find_element(By.ID, "spec")
    spec.send_keys(JOB)
    # Tab from the spec: the variables area, then Plan.
    spec.send_keys(Keys.TAB)
    driver.switch_to.active_element.send_keys(Keys.TAB)
    plan = driver.switch_to.active_element
    assert plan.text == "Plan", f"Tab reached {plan.text!r}, not Plan"
    s.shot("1-run-filled")
    plan.send_keys(Keys.ENTER)
    WebDriverWait(driver, 15).until(lambda d: d.find_elements(By.ID, "plan"))
    src = driver.page_source
    assert "+ Job: \"selenium-run\"" in src, "the plan shows no diff"
    assert "All tasks successfully allocated" in src, "the plan did not allocate"
    assert "tick-$i" in driver.find_element(By.ID, "spec").get_attribute("value"), \
        "the spec was not kept after Plan"
    s.shot("2-plan")

    # Run: the job page, where the allocation becomes running without a reload.
    driver.find_element(By.CSS_SELECTOR, 'button[value="run"]').send_keys(Keys.ENTER)
    WebDriverWait(driver, 15).until(lambda d: "/ui/jobs/selenium-run" in d.current_url)
    assert "The job was submitted" in driver.page_source
    driver.execute_script("window.__noReload = 'still here';")
    WebDriverWait(driver, 30).until(
        lambda d: any(c.text == "running" for c in d.find_elements(
            By.XPATH, '//caption[starts-with(., "Allocations")]/ancestor::table//td[4]')))
    assert driver.execute_script("return window.__noReload;") == "still here", "the page reloaded"
    s.shot("3-job-running")

    # The allocation, then its task's logs.
    act(driver, 'tbody th a[href^="/ui/allocations/"]', lambda e: e.click())
    WebDriverWait(driver, 20).until(
        lambda d: d.find_elements(By.PARTIAL_LINK_TEXT, "Logs of ticker"))
    act(driver, "main", lambda e: e.find_element(By.PARTIAL_LINK_TEXT, "Logs of ticker").click())
    WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith("/ticker/logs"))
    WebDriverWait(driver, 15).until(lambda d: len(log_lines(d)) >= 20)
    first = log_lines(driver)
    assert all(re.fullmatch(r"tick-\d+", l) for l in first), f"odd lines: {first[:5]}"
    # Following: new lines arrive.
    last = int(first[-1].split("-")[1])
    WebDriverWait(driver, 10).until(
        lambda d: int(log_lines(d)[-1].split("-")[1]) >= last + 10)
    s.shot("4-logs-follow")

    # Filter: a regex over old and new lines.
    box = driver.find_element(By.ID, "log-filter")
    box.send_keys("5$")
    shown = log_lines(driver)
    assert shown and all(l.endswith("5") for l in shown), f"filter kept {shown[:5]}"
    n = len(shown)
    WebDriverWait(driver, 10).until(lambda d: len(log_lines(d)) >= n + 2)
    assert all(l.endswith("5") for l in log_lines(driver)), "new lines were not filtered"
    count = driver.find_element(By.ID, "log-count").text
    assert "matching of" in count, count
    s.shot("5-logs-filtered")
    # An invalid regex is said, not thrown.
    box.send_keys("(")
    WebDriverWait(driver, 5).until(
        lambda d: d.find_element(By.ID, "log-filter").get_attribute("aria-invalid") == "true")
    box.send_keys(Keys.BACKSPACE)

    # Pause: no new lines shown; Resume shows what arrived meanwhile.
    pause = driver.find_element(By.ID, "log-pause")
    pause.send_keys(Keys.ENTER)
    assert pause.get_attribute("aria-pressed") == "true"
    held = len(log_lines(driver))
    time.sleep(1.5)
    assert len(log_lines(driver)) == held, "lines were added while paused"
    pause.send_keys(Keys.ENTER)
    WebDriverWait(driver, 5).until(lambda d: len(log_lines(d)) > held)
    # Wrap.
    driver.find_element(By.ID, "log-wrap").click()
    assert "wrap" in driver.find_element(By.ID, "log").get_attribute("class")
    dl = driver.find_element(By.ID, "log-download")
    href = dl.get_attribute("href")
    assert "origin=start" in href and dl.get_attribute("download"), href
    whole = urllib.request.urlopen(href, timeout=5).read().decode()
    assert whole.startswith("tick-0\n"), whole[:40]
    s.shot("6-logs-paused-wrapped")

    # Edit: the job page's link pre-fills the definition; Plan shows the change; Run
    # makes version 1, whose diff against version 0 the job page shows.
    driver.get(s.url("/ui/jobs/selenium-run"))
    act(driver, 'a[href="/ui/jobs/selenium-run/edit"]', lambda e: e.send_keys(Keys.ENTER))
    WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith("/edit"))
    spec = driver.find_element(By.ID, "spec")
    text = spec.get_attribute("value")
    assert '"Job"' in text and "tick-$i" in text, text[:200]
    driver.execute_script("arguments[0].value = arguments[1];", spec,
                          text.replace("tick-$i", "tock-$i"))
    driver.find_element(By.CSS_SELECTOR, 'button[value="plan"]').send_keys(Keys.ENTER)
    WebDriverWait(driver, 15).until(lambda d: d.find_elements(By.ID, "plan"))
    diff = driver.find_element(By.CSS_SELECTOR, "#plan pre.diff").text
    assert '+/- Task: "ticker" (forces create/destroy update)' in diff, diff
    assert "tock-$i" in diff, diff
    s.shot("7-edit-plan")
    driver.find_element(By.CSS_SELECTOR, 'button[value="run"]').send_keys(Keys.ENTER)
    WebDriverWait(driver, 15).until(lambda d: d.current_url.endswith("/ui/jobs/selenium-run"))
    # The page refreshes itself while the new version's allocation starts: find each
    # element again if it was swapped out between finding and using it.
    act(driver, "#versions-h",
        lambda e: driver.execute_script("arguments[0].scrollIntoView();", e))
    WebDriverWait(driver, 10).until(lambda d: "Changes from version 0" in d.page_source)
    shown = act(driver, "details.version pre.diff", lambda e: e.text)
    assert "tock-$i" in shown, shown
    s.shot("8-version-diff")

    # At most 10,000 lines in the page: a task that printed 15,000 shows the last ones.
    many = {"Job": {"ID": "selenium-many", "Type": "service", "Datacenters": ["dc1"],
                    "TaskGroups": [{"Name": "main", "Count": 1, "Tasks": [{
                        "Name": "seq", "Driver": "raw_exec", "KillTimeout": 2_000_000_000,
                        "Config": {"command": "/bin/sh",
                                   "args": ["-c", "seq 1 15000; exec sleep 3600"]},
                        "Resources": {"CPU": 20, "MemoryMB": 16}}]}]}}
    s.put_json("/v1/jobs", many)
    many_alloc = s.running_alloc("selenium-many")
    driver.get(s.url(f"/ui/allocations/{many_alloc}/seq/logs"))
    WebDriverWait(driver, 20).until(
        lambda d: (log_lines(d) or [""])[-1] == "15000")
    kept = log_lines(driver)
    assert len(kept) == 10000 and kept[0] == "5001", (len(kept), kept[:2])
    s.shot("9-logs-capped")


if __name__ == "__main__":
    UiSession.run(main)
