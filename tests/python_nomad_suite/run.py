#!/usr/bin/env python3
"""python-nomad's own test suite, from its PyPI sdist, against `drover agent -dev`.

Run the way python-nomad's upstream CI runs it: an agent started with `-dev -node pynomad1`,
`example.json` produced by `drover job run -output` of `example.nomad`, which
`drover job init example.nomad` writes,
then `pytest --runxfail tests/`. The sdist ships the tests without their `common.py` and
`conftest.py`; ours (beside this script) read the same environment variables.

Usage: run.py [--min N] [--keep]   (N: fewest passing tests accepted; default
$DROVER_PYNOMAD_MIN). Prints the pass count and every failing test's name.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DROVER = os.environ.get("DROVER_BIN", os.path.join(ROOT, "target", "debug", "drover"))
PYTEST_DEPS = ["pytest", "mock", "responses", "flaky", "requests"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pip(*args):
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True)


def ensure_deps():
    missing = []
    for m in ["pytest", "mock", "responses", "flaky", "nomad"]:
        try:
            __import__(m)
        except ImportError:
            missing.append("python-nomad" if m == "nomad" else m)
    if missing:
        pip("install", *missing)


def fetch_sdist(work):
    """The tests of the installed python-nomad version, from its sdist on PyPI."""
    import importlib.metadata as md

    version = md.version("python-nomad")
    pip("download", "--no-deps", "--no-binary", ":all:", f"python-nomad=={version}", "-d", work)
    (tgz,) = [f for f in os.listdir(work) if f.endswith(".tar.gz")]
    with tarfile.open(os.path.join(work, tgz)) as t:
        t.extractall(work, filter="data")
    src = os.path.join(work, tgz[: -len(".tar.gz")])
    for f in ["common.py", "conftest.py"]:
        shutil.copy(os.path.join(HERE, f), os.path.join(src, "tests", f))
    open(os.path.join(src, "tests", "__init__.py"), "a").close()
    return src, version


def wait_ready(port, deadline, data=None):
    """Until the dev node is ready. With ACLs on (`data` given) there is no token before
    the suite bootstraps, so the node's own secret (its identity, which may read nodes)
    asks instead."""
    while time.time() < deadline:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/nodes")
            if data is not None:
                secret_file = os.path.join(data, "client", "node-secret")
                if not os.path.exists(secret_file):
                    time.sleep(0.2)
                    continue
                with open(secret_file) as f:
                    req.add_header("X-Nomad-Node-Secret", f.read().strip())
            with urllib.request.urlopen(req, timeout=2) as r:
                nodes = json.load(r)
            if any(n.get("Status") == "ready" for n in nodes):
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit("drover agent -dev did not get a ready node in time")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--min", type=int, default=int(os.environ.get("DROVER_PYNOMAD_MIN", "0")))
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--acl", action="store_true",
                    help="start the agent with -acl-enabled, as upstream CI does; the suite's "
                         "first test bootstraps and the rest use that token")
    ap.add_argument("pytest_args", nargs="*")
    a = ap.parse_args()
    ensure_deps()
    work = tempfile.mkdtemp(prefix="drover-pynomad-")
    agent = None
    try:
        src, version = fetch_sdist(work)
        port = free_port()
        data = os.path.join(work, "data")
        log = open(os.path.join(work, "agent.log"), "wb")
        agent = subprocess.Popen(
            [DROVER, "agent", "-dev", "-node", "pynomad1", "-bind", "127.0.0.1",
             "-http-port", str(port), "-rpc-port", "4647", "-data-dir", data] + (["-acl-enabled"] if a.acl else []),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_ready(port, time.time() + 60, data if a.acl else None)
        env = dict(os.environ, NOMAD_ADDR=f"http://127.0.0.1:{port}", NOMAD_IP="127.0.0.1",
                   NOMAD_PORT=str(port), NOMAD_VERSION="1.9.0")
        env.pop("NOMAD_TOKEN", None)
        # The files upstream CI makes before the tests.
        # Upstream CI ran `nomad init` (which wrote `example.nomad`) and `nomad run -output
        # example.nomad`; test_parse_job reads that file.
        subprocess.run([DROVER, "job", "init", "example.nomad"], cwd=src, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        for hcl, out in [("example.nomad", "example.json"),
                         (os.path.join(HERE, "example_batch_parameterized.nomad.hcl"),
                          "example_batch_parameterized.json")]:
            with open(os.path.join(src, out), "wb") as f:
                subprocess.run([DROVER, "job", "run", "-output", hcl], cwd=src, env=env,
                               check=True, stdout=f)
        junit = os.path.join(work, "junit.xml")
        started = time.time()
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "--runxfail", f"--junitxml={junit}", "tests/", *a.pytest_args],
                       cwd=src, env=env, stdout=subprocess.DEVNULL if not a.keep else None)
        took = time.time() - started
        cases = ET.parse(junit).getroot().iter("testcase")
        passed, failed, skipped = 0, [], 0
        for c in cases:
            kinds = {ch.tag for ch in c}
            name = f"{c.get('classname')}.{c.get('name')}"
            if "skipped" in kinds:
                skipped += 1
            elif kinds & {"failure", "error"}:
                msg = next(ch for ch in c if ch.tag in ("failure", "error")).get("message", "")
                failed.append(f"{name}: {msg[:160]}")
            else:
                passed += 1
        total = passed + len(failed)
        mode = " -acl-enabled" if a.acl else ""
        print(f"python-nomad {version} suite against drover agent -dev{mode}: {passed} of {total} passed"
              f" ({skipped} skipped, {took:.0f} s)")
        for f in failed:
            print("  FAILED", f)
        if passed < a.min:
            print(f"fewer than {a.min} passed", file=sys.stderr)
            return 1
        return 0
    finally:
        if agent is not None:
            try:
                os.killpg(agent.pid, signal.SIGTERM)
                agent.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(agent.pid, signal.SIGKILL)
        if a.keep:
            print("work dir:", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
