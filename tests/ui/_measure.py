#!/usr/bin/python3
"""First paint and DOM size of every UI page in headless Chromium, over the synthetic
state of the bench (1,000 jobs x 10 allocations + one job of 10,000, 5,000 nodes) served
by the `ui` example. Not run by CI (its name starts with `_`): a measuring tool.

Run:  cargo run --release -p ui --example ui -- 7777 &
      /usr/bin/python3 tests/ui/_measure.py http://127.0.0.1:7777 [RUNS]

Prints, per page: the median and worst first-contentful-paint over RUNS loads (default 5,
each in a fresh tab state: the cache is kept, as for a user moving between pages), the
number of elements (`document.getElementsByTagName('*').length`) and the HTML size; and
fails (exit 1) when a page is over the targets: first paint 300 ms, 4,000 elements.
"""

import statistics
import sys
import urllib.request

from _common import chrome

FIRST_PAINT_MS = 300
ELEMENTS = 4000


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7777"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    pages = [line.split("\t") for line in
             urllib.request.urlopen(f"{base}/pages", timeout=10).read().decode().splitlines()]
    driver = chrome()
    over = []
    try:
        print("| Page                 | First paint (median / worst) | Elements | HTML      |")
        print("|----------------------|------------------------------|----------|-----------|")
        for url, name in pages:
            paints = []
            for _ in range(runs + 1):  # the first load warms the asset cache
                driver.get(f"{base}{url}")
                # The entry is queued once the frame is presented, a moment after load.
                fcp = driver.execute_async_script(
                    "var done = arguments[arguments.length - 1];"
                    "new PerformanceObserver(function (list) {"
                    "  list.getEntries().forEach(function (e) {"
                    "    if (e.name === 'first-contentful-paint') { done(e.startTime); } });"
                    "}).observe({ type: 'paint', buffered: true });"
                    "setTimeout(function () { done(null); }, 3000);")
                paints.append(fcp if fcp is not None else float("inf"))
            paints = paints[1:]
            elements = driver.execute_script("return document.getElementsByTagName('*').length;")
            size = driver.execute_script(
                "var n = performance.getEntriesByType('navigation')[0];"
                "return n ? n.decodedBodySize : 0;")
            median, worst = statistics.median(paints), max(paints)
            print(f"| {name:<20} | {median:>7.0f} ms / {worst:>5.0f} ms         | "
                  f"{elements:>8} | {size / 1000:>6.1f} KB |")
            if worst > FIRST_PAINT_MS or elements > ELEMENTS:
                over.append(f"{name}: first paint {worst:.0f} ms, {elements} elements")
    finally:
        driver.quit()
    if over:
        print("over the targets:\n  " + "\n  ".join(over), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
