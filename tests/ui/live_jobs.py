#!/usr/bin/python3
"""Click-through test of the web UI in headless Chromium (Debian's chromium + chromium-driver
+ python3-selenium).

Starts `drover agent -dev` on a free port, opens /ui/jobs, runs a job with the CLI and
checks that it appears in the open page without a reload (the page's JS global survives),
that the live indicator says so, that the CSP reported no violation, and that the
keyboard-only path to a job's Stop confirmation works. Screenshots go to
$UI_SCREENSHOTS (default: a temporary directory, printed).

Run:  cargo build -p drover && /usr/bin/python3 tests/ui/live_jobs.py  (Debian's python3, which has selenium)
      (DROVER_BIN overrides target/debug/drover)
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("DROVER_BIN", os.path.join(ROOT, "target", "debug", "drover"))

JOB = """
job "selenium-web" {
  datacenters = ["dc1"]
  type = "service"
  group "main" {
    count = 1
    task "sleep" {
      driver = "raw_exec"
      kill_timeout = "2s"
      config {
        command = "/bin/sh"
        args    = ["-c", "exec sleep 3600"]
      }
      resources {
        cpu    = 20
        memory = 16
      }
    }
  }
}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(what, timeout, f):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = f()
            if v:
                return v
        except Exception:  # not up yet
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def act(driver, css, f):
    """Find `css` and apply `f` to it, again if the live refresh swapped it meanwhile."""
    for _ in range(10):
        try:
            return f(driver.find_element(By.CSS_SELECTOR, css))
        except StaleElementReferenceException:
            time.sleep(0.1)
    raise AssertionError(f"{css} kept being replaced")


def main():
    tmp = tempfile.mkdtemp(prefix="drover-ui-selenium-")
    shots = os.environ.get("UI_SCREENSHOTS") or os.path.join(tmp, "screenshots")
    os.makedirs(shots, exist_ok=True)
    port = free_port()
    addr = f"http://127.0.0.1:{port}"
    log = open(os.path.join(tmp, "agent.log"), "w")
    agent = subprocess.Popen(
        [BIN, "agent", "-dev", "-data-dir", os.path.join(tmp, "data"), "-http-port", str(port)],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    driver = None
    try:
        wait_until(
            "the agent's leader",
            30,
            lambda: json.load(urllib.request.urlopen(f"{addr}/v1/status/leader", timeout=2)),
        )
        opts = Options()
        for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"]:
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        driver.get(f"{addr}/ui/jobs")
        WebDriverWait(driver, 10).until(
            lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "live"
        )
        driver.execute_script("window.__noReload = 'still here';")
        # Something typed in a filter (not submitted, focus gone) must survive the swap.
        act(driver, 'main input[name="search"]', lambda e: e.send_keys("sel"))
        act(driver, "h1", lambda e: e.click())
        driver.save_screenshot(os.path.join(shots, "1-jobs-empty.png"))

        job_file = os.path.join(tmp, "job.hcl")
        with open(job_file, "w") as f:
            f.write(JOB)
        env = dict(os.environ, NOMAD_ADDR=addr)
        t0 = time.monotonic()
        subprocess.run([BIN, "job", "run", "-detach", job_file], env=env, check=True,
                       stdout=subprocess.DEVNULL)
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
        driver.save_screenshot(os.path.join(shots, "2-jobs-live.png"))
        print(f"job appeared {took:.2f}s after `job run`, without a reload")

        # Keyboard only: the search box jumps to the job, then Stop's confirmation opens.
        box = driver.find_element(By.ID, "q")
        box.send_keys("selenium", Keys.ENTER)
        WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith("/ui/jobs/selenium-web"))
        act(driver, ".actions details summary", lambda e: e.send_keys(Keys.ENTER))
        shown = act(driver, ".actions details button.danger", lambda e: e.is_displayed())
        assert shown, "the confirmation did not open"
        driver.save_screenshot(os.path.join(shots, "3-job-stop-confirm.png"))
        act(driver, ".actions details button.danger", lambda e: e.send_keys(Keys.ENTER))
        WebDriverWait(driver, 10).until(lambda d: "/ui/jobs/selenium-web" in d.current_url)
        WebDriverWait(driver, 10).until(lambda d: "The job was stopped" in d.page_source)
        driver.save_screenshot(os.path.join(shots, "4-job-stopped.png"))

        # A client's page, reached through the navigation.
        driver.find_element(By.LINK_TEXT, "Clients").click()
        WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith("/ui/clients"))
        act(driver, "tbody th a", lambda e: e.click())
        WebDriverWait(driver, 10).until(lambda d: "Drain…" in d.page_source)
        driver.save_screenshot(os.path.join(shots, "5-client.png"))

        csp = [e["message"] for e in driver.get_log("browser")
               if "Content Security Policy" in e["message"]]
        assert not csp, f"CSP violations: {csp}"
        print(f"ok; screenshots in {shots}")
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(agent.pid, 9)
        agent.wait()
        log.close()


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
