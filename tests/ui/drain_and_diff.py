#!/usr/bin/python3
"""Click-through test of draining a node and reading a version diff in headless Chromium
(Debian's chromium + chromium-driver + python3-selenium), modelled on live_jobs.py.

Starts `drover agent -dev` on a free port, runs a one-allocation job with the CLI, opens the
allocation's page and its file browser and the topology page, then goes to the dev agent's
only node, opens the Drain form with the keyboard, drains with a 10s deadline and watches
the drain monitor count the allocation and then say the drain completed, without a reload
(the page's JS global survives). Then it edits the job with the CLI and sees the version
diff on the job page without a reload; and checks the CSP reported no violation.
Screenshots go to $UI_SCREENSHOTS (default: a temporary directory, printed).

Run:  cargo build -p drover && /usr/bin/python3 tests/ui/drain_and_diff.py
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
job "selenium-drain" {
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
        memory = MEMORY
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


def get_json(addr, path):
    return json.load(urllib.request.urlopen(f"{addr}{path}", timeout=5))


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
    env = dict(os.environ, NOMAD_ADDR=addr)
    job_file = os.path.join(tmp, "job.hcl")

    def run_job(memory):
        with open(job_file, "w") as f:
            f.write(JOB.replace("MEMORY", str(memory)))
        subprocess.run([BIN, "job", "run", "-detach", job_file], env=env, check=True,
                       stdout=subprocess.DEVNULL)

    try:
        wait_until("the agent's leader", 30, lambda: get_json(addr, "/v1/status/leader"))
        node = wait_until("the dev node", 30, lambda: get_json(addr, "/v1/nodes")[0]["ID"])
        run_job(16)
        alloc = wait_until(
            "the allocation running", 30,
            lambda: [a["ID"] for a in get_json(addr, "/v1/job/selenium-drain/allocations")
                     if a["ClientStatus"] == "running"][0])

        opts = Options()
        for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"]:
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)

        # The allocation's page (actions, resources used) and its file browser.
        driver.get(f"{addr}/ui/allocations/{alloc}")
        WebDriverWait(driver, 10).until(lambda d: "Using now" in d.page_source)
        assert "Send a signal" in driver.page_source
        driver.save_screenshot(os.path.join(shots, "1-allocation.png"))
        driver.find_element(By.LINK_TEXT, "Browse the allocation's files").click()
        WebDriverWait(driver, 10).until(lambda d: "Contents of /" in d.page_source)
        driver.find_element(By.LINK_TEXT, "alloc/").click()
        WebDriverWait(driver, 10).until(lambda d: "Contents of /alloc" in d.page_source)
        driver.save_screenshot(os.path.join(shots, "2-files.png"))

        # Topology, through the navigation.
        driver.find_element(By.LINK_TEXT, "Topology").click()
        WebDriverWait(driver, 10).until(lambda d: "selenium-drain (20, 16)" in d.page_source)
        driver.save_screenshot(os.path.join(shots, "3-topology.png"))

        # Drain the node from its page, keyboard only.
        driver.get(f"{addr}/ui/clients/{node}")
        WebDriverWait(driver, 10).until(
            lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "live")
        summaries = driver.find_elements(By.CSS_SELECTOR, ".actions details summary")
        drain = [s for s in summaries if s.text.startswith("Drain")][0]
        drain.send_keys(Keys.ENTER)
        box = act(driver, "#drain-deadline", lambda e: e)
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys("10s")
        driver.save_screenshot(os.path.join(shots, "4-drain-form.png"))
        box.send_keys(Keys.ENTER)
        WebDriverWait(driver, 10).until(lambda d: "The drain was set" in d.page_source)
        driver.execute_script("window.__noReload = 'still here';")
        t0 = time.monotonic()
        try:
            WebDriverWait(driver, 5).until(lambda d: "left to migrate" in d.page_source)
            driver.save_screenshot(os.path.join(shots, "5-draining.png"))
        except Exception:
            pass  # it may have completed already
        WebDriverWait(driver, 60).until(lambda d: "Drain complete" in d.page_source)
        took = time.monotonic() - t0
        assert driver.execute_script("return window.__noReload;") == "still here", "the page reloaded"
        driver.save_screenshot(os.path.join(shots, "6-drain-complete.png"))
        print(f"the drain completed {took:.1f}s after it was set, shown without a reload")

        # A version diff on the job page after an edit.
        driver.get(f"{addr}/ui/jobs/selenium-drain")
        WebDriverWait(driver, 10).until(
            lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "live")
        driver.execute_script("window.__noReload = 'still here';")
        run_job(32)
        WebDriverWait(driver, 10).until(lambda d: "Changes in version 1" in d.page_source)
        assert driver.execute_script("return window.__noReload;") == "still here", "the page reloaded"
        el = driver.find_element(By.CSS_SELECTOR, 'pre.diff[aria-label="Changes in version 1"]')
        assert el.is_displayed(), "the newest version's diff is not open"
        assert "Memory" in el.text or "memory" in el.text, el.text
        driver.execute_script("arguments[0].scrollIntoView();", el)
        driver.save_screenshot(os.path.join(shots, "7-version-diff.png"))

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
