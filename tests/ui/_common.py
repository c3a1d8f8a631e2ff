"""What the browser tests share: a `drover agent -dev` on a free port, headless Chromium
(Debian's chromium + chromium-driver, driven by Debian's python3-selenium), a screenshots
directory, and small waits. Not a test itself: `scripts/test` skips files starting with `_`.

    from _common import UiSession, wait_until, act

    def main(s):
        s.driver.get(s.url("/ui/jobs"))
        s.shot("1-jobs")

    if __name__ == "__main__":
        UiSession.run(main)

Screenshots go to $UI_SCREENSHOTS (default: `screenshots/` in a temporary directory, kept
and printed); the agent's data directory is removed at the end, and its log is printed when
the test fails. `DROVER_BIN` overrides target/debug/drover.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("DROVER_BIN", os.path.join(ROOT, "target", "debug", "drover"))


def sleep_job(job_id, task="sleep", memory=16, script="exec sleep 3600", indent=True):
    """A one-task raw_exec service job that sleeps: what the browser tests run.

    `indent=False` gives the same job without leading spaces, for typing it key by key
    into a textarea that keeps the caret's indentation."""
    text = f"""job "{job_id}" {{
  datacenters = ["dc1"]
  type = "service"
  group "main" {{
    count = 1
    task "{task}" {{
      driver = "raw_exec"
      kill_timeout = "2s"
      config {{
        command = "/bin/sh"
        args    = ["-c", "{script}"]
      }}
      resources {{
        cpu    = 20
        memory = {memory}
      }}
    }}
  }}
}}
"""
    if not indent:
        text = "\n".join(line.lstrip() for line in text.splitlines()) + "\n"
    return text


_next_port = [0]


def free_port():
    """A loopback port nothing listens on, from 10000-19999: below the kernel's ephemeral
    range (which outgoing connections draw from) and Drover's dynamic port range (20000
    and up), as loadtest::free_port explains; each handed out once per process."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            high = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        high = 32768
    high = min(max(high, 11024), 20000)
    low = max(high - 10000, 1024)
    span = high - low
    start = (os.getpid() * 7919) % span
    for _ in range(span):
        port = low + (start + _next_port[0]) % span
        _next_port[0] += 1
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free loopback port")


def wait_until(what, timeout, f):
    """Polls `f` until it returns something truthy; fails with `what` after `timeout` s."""
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


def chrome(window="1400,1000"):
    """Headless Chromium through Debian's chromedriver, with the browser log kept."""
    opts = Options()
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={window}"]:
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


class UiSession:
    """A dev agent, a browser on it and a screenshots directory; `with` cleans them up."""

    def __init__(self, window="1400,1000"):
        self.window = window
        self.tmp = tempfile.mkdtemp(prefix="drover-ui-selenium-")
        self.shots = os.environ.get("UI_SCREENSHOTS") or os.path.join(self.tmp, "screenshots")
        os.makedirs(self.shots, exist_ok=True)
        self.port = free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, NOMAD_ADDR=self.addr)
        self.agent = None
        self.driver = None
        self._log = None

    def __enter__(self):
        self._log = open(os.path.join(self.tmp, "agent.log"), "w")
        self.agent = subprocess.Popen(
            [BIN, "agent", "-dev", "-data-dir", os.path.join(self.tmp, "data"),
             "-http-port", str(self.port)],
            stdout=self._log,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until("the agent's leader", 30, lambda: self.get_json("/v1/status/leader"))
        self.node = wait_until("the dev node", 30, lambda: self.get_json("/v1/nodes")[0]["ID"])
        self.driver = chrome(self.window)
        return self

    def __exit__(self, kind, value, tb):
        if self.driver is not None:
            if kind is not None:
                try:
                    self.shot("failure")
                    print(f"failed on {self.driver.current_url}; see failure.png in {self.shots}",
                          file=sys.stderr)
                except Exception:  # the browser itself may be what failed
                    pass
            self.driver.quit()
        if self.agent is not None:
            try:
                os.killpg(self.agent.pid, 9)
            except ProcessLookupError:
                pass
            self.agent.wait()
        if self._log is not None:
            self._log.close()
            if kind is not None:
                with open(os.path.join(self.tmp, "agent.log")) as f:
                    tail = f.read()[-4000:]
                print(f"--- the agent's log (end) ---\n{tail}", file=sys.stderr)
        # Keep only the screenshots (and the temporary directory only when they are in it).
        for name in os.listdir(self.tmp):
            path = os.path.join(self.tmp, name)
            if path != self.shots and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif path != self.shots:
                os.remove(path)
        if not os.listdir(self.tmp):
            os.rmdir(self.tmp)
        return False

    def url(self, path):
        return f"{self.addr}{path}"

    def get_json(self, path):
        return json.load(urllib.request.urlopen(self.url(path), timeout=5))

    def put_json(self, path, body):
        req = urllib.request.Request(self.url(path), data=json.dumps(body).encode(),
                                     method="PUT", headers={"Content-Type": "application/json"})
        return json.load(urllib.request.urlopen(req, timeout=5))

    def run_job(self, name, hcl):
        """`drover job run -detach` of `hcl`, as a user would."""
        path = os.path.join(self.tmp, f"{name}.hcl")
        with open(path, "w") as f:
            f.write(hcl)
        subprocess.run([BIN, "job", "run", "-detach", path], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)

    def running_alloc(self, job, timeout=30):
        return wait_until(
            f"an allocation of {job} running", timeout,
            lambda: [a["ID"] for a in self.get_json(f"/v1/job/{job}/allocations")
                     if a["ClientStatus"] == "running"][0])

    def wait_live(self, timeout=10):
        """The page's live stream is connected."""
        WebDriverWait(self.driver, timeout).until(
            lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "live")

    def shot(self, name):
        self.driver.save_screenshot(os.path.join(self.shots, f"{name}.png"))

    def csp_violations(self):
        return [e["message"] for e in self.driver.get_log("browser")
                if "Content Security Policy" in e["message"]]

    @staticmethod
    def run(main, window="1400,1000"):
        """Runs `main(session)`; exits 1 with the reason when an assertion fails."""
        try:
            with UiSession(window) as s:
                main(s)
                csp = s.csp_violations()
                assert not csp, f"CSP violations: {csp}"
                print(f"ok; screenshots in {s.shots}")
        except (AssertionError, TimeoutException) as e:
            traceback.print_exc()
            print(f"FAIL: {e}", file=sys.stderr)
            sys.exit(1)
