#!/usr/bin/python3
"""Accessibility of every page of the web UI: axe-core (bundled by axe-selenium-python,
installed by scripts/test) runs in headless Chromium on each page (jobs, job, run a job,
allocation, logs, files, clients, client, servers, evaluations, evaluation, allocations,
topology, search results, and the allocation page showing a Run command's output) and the
test fails on any serious or critical violation, naming
the rule, the page and the elements. A screenshot of each page goes to $UI_SCREENSHOTS
(default: a temporary directory, printed).

Run:  cargo build --bin drover && /usr/bin/python3 tests/ui/accessibility.py
      (set-up in _common.py)
"""

from axe_selenium_python import Axe
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from _common import UiSession, sleep_job


SERIOUS = ("serious", "critical")


def main(s):
    driver = s.driver
    s.run_job("a11y-web", sleep_job("a11y-web", task="web", script="echo ready; exec sleep 3600"))
    alloc = s.running_alloc("a11y-web")
    evals = s.get_json("/v1/job/a11y-web/evaluations")
    pages = [
        ("jobs", "/ui/jobs"),
        ("job", "/ui/jobs/a11y-web"),
        ("run", "/ui/jobs/run"),
        ("alloc", f"/ui/allocations/{alloc}"),
        ("logs", f"/ui/allocations/{alloc}/web/logs"),
        ("files", f"/ui/allocations/{alloc}/fs?path=/alloc"),
        ("clients", "/ui/clients"),
        ("client", f"/ui/clients/{s.node}"),
        ("servers", "/ui/servers"),
        ("evaluations", "/ui/evaluations"),
        ("eval", f"/ui/evaluations/{evals[0]['ID']}"),
        ("allocations", "/ui/allocations"),
        ("topology", "/ui/topology"),
        ("search", "/ui/search?q=no-such-thing"),
    ]
    failures = []

    def run_command():
        # The page a Run command answers with (a POST's answer, so reached by the form).
        driver.get(s.url(f"/ui/allocations/{alloc}"))
        summary = [e for e in driver.find_elements(By.CSS_SELECTOR, ".actions summary")
                   if e.text.startswith("Run command")][0]
        summary.click()
        driver.find_element(By.ID, "exec-command").send_keys("sh -c 'echo out; echo err >&2'")
        driver.find_element(By.ID, "exec-command").submit()
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "exec-exit"))

    pages.append(("exec output", run_command))
    for i, (name, path) in enumerate(pages):
        if callable(path):
            path()
            path = "POST " + driver.current_url.replace(s.addr, "")
        else:
            driver.get(s.url(path))
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.TAG_NAME, "main"))
        axe = Axe(driver)
        axe.inject()
        results = axe.run()
        bad = [v for v in results["violations"] if v.get("impact") in SERIOUS]
        minor = [v["id"] for v in results["violations"] if v.get("impact") not in SERIOUS]
        s.shot(f"{i + 1:02}-{name.replace(' ', '-')}")
        print(f"{name:12} {path}: {len(bad)} serious or critical, "
              f"{len(minor)} minor {sorted(set(minor))}")
        for v in bad:
            where = [n["target"] for n in v["nodes"]][:5]
            failures.append(f"{name} ({path}): {v['id']} [{v['impact']}] {v['help']} at {where}")
    assert not failures, "axe-core found:\n  " + "\n  ".join(failures)


if __name__ == "__main__":
    UiSession.run(main)
