"""The report: what a real run writes for Allure (labels, links, attachments,
environment, categories, the controller's cleaning), and what
harness.report builds from results (matrix, claims page, HTML report).

The unit tests use results written here; the integration tests (root) run
the suite for real and read what it wrote."""
import hashlib
import json
import shutil
import re
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET

import pytest
from scapy.utils import rdpcap

from conftest import ROOT
from harness import report
from harness.segment import Segment, tcpdump_line

CATEGORIES = report.load_categories()


def allure_result(directory, stack, case, family, status, message="", test="test_x", seeds=(), observed=None,
                  stop=1, history=None, params=None, requirements=("RFC9293/3.4",), story=None, variant=None):
    """Write one result as allure-pytest does; returns its dict."""
    rid = str(uuid.uuid4())
    labels = [{"name": "case", "value": case}, {"name": "stack", "value": stack},
              {"name": "family", "value": family}, {"name": "story", "value": story or f"title of {case}"},
              {"name": "tag", "value": "MUST"}]
    labels += [{"name": "requirement", "value": r} for r in requirements]
    labels += [{"name": "seed", "value": s} for s in seeds]
    labels += [{"name": "variant", "value": variant}] if variant else []
    data = {"uuid": rid, "historyId": history or f"{stack}-{case}-{test}-{family}" + "".join(f"-{v}" for v in
                                                                                          (params or {}).values()),
            "name": f"{test} [{family}{''.join(f'-{v}' for v in (params or {}).values())}]",
            "fullName": f"conformance.test_x#{test}", "status": status, "labels": labels, "stop": stop,
            "statusDetails": {"message": message} if message else {},
            "parameters": [{"name": "family", "value": f"'{family}'"}]
            + [{"name": k, "value": str(v)} for k, v in (params or {}).items()], "attachments": []}
    if observed is not None:
        source = f"{uuid.uuid4()}-attachment.json"
        (directory / source).write_text(json.dumps(observed))
        data["attachments"].append({"name": "observed values", "source": source, "type": "application/json"})
    (directory / f"{rid}-result.json").write_text(json.dumps(data))
    return data


@pytest.fixture
def two_stacks(tmp_path):
    linux, lwip = tmp_path / "linux", tmp_path / "lwip"
    linux.mkdir()
    lwip.mkdir()
    for fam in ("ipv4", "ipv6"):
        allure_result(linux, "linux", "handshake.lost-third-ack", fam, "passed", seeds=("S13", "S2"),
                      test="test_synack", params={"retries": "default"}, variant="default",
                      observed={"measured": {"synack_retransmissions": [1.0, 3.0, 7.0, 15.0, 31.0]},
                                "profile": {"synack_retries": 5}})
        allure_result(linux, "linux", "handshake.lost-third-ack", fam, "passed", seeds=("S13", "S2"),
                      test="test_synack", params={"retries": "2"}, variant="retries-2",
                      observed={"measured": {"synack_retransmissions": [1.0, 3.0]}, "profile": {"synack_retries": 2},
                                "set": {"synack_retries": 2}})
        allure_result(linux, "linux", "timers.time-wait-duration", fam, "failed", seeds=("S5",), test="test_tw",
                      message="Documented deviation from RFC9293/MUST-13 (a MUST rule) of linux: 2 MSL",
                      observed={"measured": {"time_wait": 62.03}, "profile": {"time_wait": 60.0}})
        allure_result(linux, "linux", "teardown.fin-wait-2-timeout", fam, "passed", seeds=("S21",),
                      test="test_fw2", params={"how": "default"}, variant="default",
                      observed={"measured": {"fin_wait_2_lasted": 61.98}, "profile": {"fin_timeout": 60},
                                "set": {"invalid_ratelimit": 0}})
        allure_result(linux, "linux", "teardown.fin-wait-2-timeout", fam, "passed", seeds=("S21",),
                      test="test_fw2", params={"how": "sysctl-1s"}, variant="sysctl-1s",
                      observed={"measured": {"fin_wait_2_lasted": 1.02}, "profile": {"fin_timeout": 1},
                                "set": {"fin_timeout": 1}})
        allure_result(linux, "linux", "timers.retransmission-backoff", fam, "passed", seeds=("S2",),
                      test="test_backoff", params={"rto_max_ms": "1000"}, variant="rto-max-1s",
                      observed={"measured": {"retransmission_intervals": [0.2, 0.2, 0.4]},
                                "profile": {"rto_max": 1000, "rto_min": 200000}, "set": {"rto_max": 1000}})
        allure_result(linux, "linux", "timers.retransmission-backoff", fam, "passed", seeds=("S2",),
                      test="test_backoff", params={"rto_max_ms": "None"}, variant="default",
                      observed={"measured": {"retransmission_intervals": [0.2, 0.2, 0.4]},
                                "profile": {"rto_max": 120000, "initial_rto": 1.0}})
        allure_result(linux, "linux", "trace.relative-and-absolute", fam, "passed", seeds=("S9",))
        allure_result(lwip, "lwip", "handshake.lost-third-ack", fam, "failed", seeds=("S13", "S2"),
                      test="test_synack", params={"retries": "default"},
                      message="harness.verdict.TimingFailure: timing: RFC6298/5.5: late\n  expected: 1\n  seen: 2",
                      observed={"profile": {"synack_retries": 4}})
        allure_result(lwip, "lwip", "trace.relative-and-absolute", fam, "failed", seeds=("S9",),
                      message="harness.verdict.ConformanceFailure: RFC9293/3.4: line 4\n  expected: seq 1:16\n"
                              "  seen:     seq 2:17")
    (linux / "environment.properties").write_text("stack=linux\nkernel=Linux 6.18\npython=3.11.7\n")
    (lwip / "environment.properties").write_text("stack=lwip\nkernel=Linux 6.18\npython=3.11.7\n")
    return [linux, lwip]


# --- verdicts and reading ----------------------------------------------------------------------

@pytest.mark.parametrize("status, message, verdict", [
    ("passed", "", "Passed"),
    ("failed", "harness.verdict.ConformanceFailure: RFC9293/3.4: what\n  expected: a\n  seen:     b", "RFC violation"),
    ("failed", "harness.verdict.TimingFailure: timing: RFC6298/5.5: what", "Timing tolerance exceeded"),
    ("failed", "Failed: harness: cannot start stack linux: no TUN", "Harness or environment error"),
    ("broken", "RuntimeError: boom", "Harness or environment error"),
    ("failed", "Documented deviation from RFC9293/MUST-13 (a MUST rule) of linux: TIME-WAIT lasts 2 MSL",
     "Documented deviation from a MUST rule"),
    ("failed", "Documented deviation from RFC9293/3.10.7.4 (a MUST rule) of lwip: a SYN draws an ACK",
     "Documented deviation from a MUST rule"),
    ("failed", "Documented deviation from RFC6298/2.4 (a SHOULD rule) of linux: 1 s",
     "Documented deviation from a SHOULD rule"),
    ("failed", "Documented deviation from RFC9293/MAY-2 (a MAY rule) of linux: back to TIME-WAIT",
     "Documented deviation from a MAY rule or a documented choice"),
    ("failed", "Documented deviation from RFC9293/3.7.1 (a documented rule) of lwip: x",
     "Documented deviation from a MAY rule or a documented choice"),
    ("skipped", "Skipped: stack lwip lacks capability sysctl", "Skipped (capability missing)"),
])
def test_verdicts_are_the_report_categories(status, message, verdict):
    """The messages are those allure-pytest writes for each kind of outcome."""
    assert report.verdict(status, message, CATEGORIES) == verdict


def test_categories_are_in_the_allure_config_and_in_the_order_of_the_brief():
    names = [c["name"] for c in CATEGORIES]
    assert set(names) == set(report.VERDICTS) - {report.PASSED}
    assert names.index("Timing tolerance exceeded") < names.index("RFC violation")
    assert "categories.json" in (ROOT / "reports" / "allurerc.mjs").read_text()


def test_results_of_several_directories_merge_and_a_rerun_counts_once(two_stacks, tmp_path):
    rerun = tmp_path / "rerun"
    rerun.mkdir()
    allure_result(rerun, "lwip", "trace.relative-and-absolute", "ipv4", "passed", seeds=("S9",), stop=99,
                  history="lwip-trace.relative-and-absolute-test_x-ipv4")
    results = report.load_results(two_stacks + [rerun])
    assert report.stacks_of(results) == ["linux", "lwip"]
    lwip_trace = [r for r in results if r.stack == "lwip" and r.case == "trace.relative-and-absolute"]
    assert sorted(r.verdict for r in lwip_trace) == ["Passed", "RFC violation"]
    assert len(results) == 20
    synack = next(r for r in results if r.stack == "linux" and r.variant == "default"
                  and r.case == "handshake.lost-third-ack")
    assert synack.test == "test_synack[retries=default]" and synack.observed["profile"]["synack_retries"] == 5


def test_missing_directory_is_one_clear_error(tmp_path):
    with pytest.raises(report.ReportError, match="no such results directory"):
        report.load_results([tmp_path / "nope"])


def test_the_runs_verdict_counts_the_documented_deviations_from_must_rules(two_stacks):
    results = report.load_results(two_stacks)
    linux = [r for r in results if r.stack == "linux"]
    assert report.verdict_line(linux) == ("NOT CONFORMANT: 14 of 16 passed · 2 documented deviations (2 from MUST "
                                          "rules) · 0 RFC violations")
    name = report.report_name(results)
    assert name.startswith("linux: NOT CONFORMANT") and "| lwip: NOT CONFORMANT: 0 of 4 passed" in name
    passed = [r for r in linux if r.verdict == report.PASSED]
    assert report.verdict_line(passed) == "conformant: 14 of 14 passed · 0 documented deviations · 0 RFC violations"


@pytest.mark.parametrize("ref, url", [
    ("RFC 9293 §3.10.7.4", "https://www.rfc-editor.org/rfc/rfc9293#section-3.10.7.4"),
    ("RFC9293/3.10.7.4", "https://www.rfc-editor.org/rfc/rfc9293#section-3.10.7.4"),
    ("RFC6298/2.4", "https://www.rfc-editor.org/rfc/rfc6298#section-2"),       # rule (2.4) of section 2
    ("RFC7323/2.2", "https://www.rfc-editor.org/rfc/rfc7323#section-2.2"),
    ("RFC 6528", "https://www.rfc-editor.org/rfc/rfc6528"),
    ("linux-profile", None),
])
def test_references_link_to_the_rfc_text(ref, url):
    assert report.rfc_url(ref) == url


def test_a_numbered_requirement_links_to_its_section_from_the_requirement_tables(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "REQUIREMENT_TABLES", tmp_path)              # no table yet
    report.requirement_sections.cache_clear()
    assert report.rfc_url("RFC9293/MUST-13").endswith("rfc9293#appendix-B")     # the requirement summary
    (tmp_path / "rfc9293.toml").write_text('[[requirement]]\nid = "RFC9293/MUST-13"\nsection = "3.6.1"\n')
    report.requirement_sections.cache_clear()
    try:
        assert report.rfc_url("RFC9293/MUST-13") == "https://www.rfc-editor.org/rfc/rfc9293#section-3.6.1"
    finally:
        report.requirement_sections.cache_clear()


def test_the_project_tables_give_every_numbered_requirement_its_section():
    report.requirement_sections.cache_clear()
    assert report.rfc_url("RFC9293/MUST-13") == "https://www.rfc-editor.org/rfc/rfc9293#section-3.6.1"
    assert report.rfc_url("RFC9293/REC-1") == "https://www.rfc-editor.org/rfc/rfc9293#section-3.1"


# --- the matrix ------------------------------------------------------------------------------

def _ctx(results, catalog=None):
    return report.Context(results, report.load_catalog() if catalog is None else catalog, ["x"], "html/index.html")


def test_matrix_puts_stacks_side_by_side_with_verdicts(two_stacks):
    results = report.load_results(two_stacks)
    catalog = report.load_catalog()
    page = report.matrix_html(_ctx(results, catalog))
    assert "<script" not in page and "http:" not in page
    head = re.search(r"<thead>(.*?)</thead>", page.split("<h2>Cases</h2>")[1], re.S).group(1)
    assert head.count("<tr>") == 1                          # one header row: it never hides the stack's name
    assert head.index(">linux<br>ipv4<") < head.index(">lwip<br>ipv4<")
    row = re.search(r'<tr id="trace\.relative-and-absolute">.*?</tr>', page, re.S).group(0)
    assert row.count("PASS 1") == 2 and row.count("FAIL 1") == 2 and "S9" in row
    assert '<a href="https://www.rfc-editor.org/rfc/rfc9293#section-3.4">RFC9293/3.4</a>' in row
    assert 'href="claims.html#S9"' in row
    assert 'class="v timing"' in page
    must = re.search(r'<tr id="timers\.time-wait-duration">.*?</tr>', page, re.S).group(0)
    assert must.count('class="v dev-must"') == 2 and "MUST DEVIATION 1" in must
    assert "linux: NOT CONFORMANT: 14 of 16 passed · 2 documented deviations (2 from MUST rules)" in page
    # what the words mean is on the page
    for text in ("seed claims</b>: the claims S1..S21", "<b>documented</b>", "MUST DEVIATION", "SHOULD DEVIATION"):
        assert text in page
    # every catalog case has a row, run or not (the state x event cells: on their own page)
    for cid in catalog:
        assert (f"<code>{cid}</code>" in page) != report.is_cell(cid)
    md = report.matrix_markdown(results, catalog)
    assert "| case | level | linux ipv4 | linux ipv6 | lwip ipv4 | lwip ipv6 |" in md
    assert "❌ FAIL 1" in md and "⏱️" in md and "### Not passed" in md and "### Documented deviations" in md
    assert "RFC9293/3.4: line 4" in md


def test_a_mixed_cell_names_and_links_the_test_that_did_not_pass(two_stacks):
    results = report.load_results(two_stacks)
    lost = [r for r in results if r.case == "handshake.lost-third-ack" and r.stack == "linux" and r.family == "ipv4"]
    bad = lost[0]
    bad.verdict = "Documented deviation from a SHOULD rule"
    cell = report.verdict_cell(lost, _ctx(results))
    assert 'class="v dev-should"' in cell and "SHOULD DEVIATION 1 · PASS 1" in cell
    # the Allure 3 report's id of a result is md5 of its uuid
    href = f"html/index.html#{hashlib.md5(json.loads(next(two_stacks[0].glob('*-result.json')).read_text())['uuid'].encode()).hexdigest()}"
    assert href.startswith("html/index.html#") and len(href) == len("html/index.html#") + 32
    assert f'<div class="variants"><a href="html/index.html#{bad.allure_id}">SHOULD DEVIATION: synack[retries=' in cell
    assert report.verdict_cell([r for r in lost if r is not bad], _ctx(results)).count("variants") == 0


def test_another_page_is_one_registered_function(two_stacks, tmp_path, monkeypatch):
    """How the state x event matrix (issue 11) will plug in: a function of the
    Context, registered; main builds it, alone or with the others, and every
    page's navigation links to it."""
    monkeypatch.setattr(report, "PAGES", dict(report.PAGES))

    @report.page("extra", "an extra page")
    def extra(ctx):
        return {"extra.html": report.frame("extra", "Extra", "", report.verdict_cell(ctx.results, ctx), ctx)}

    assert report.main(["extra", *map(str, two_stacks), "--out", str(tmp_path)]) == 0
    assert 'class="here">an extra page</a>' in (tmp_path / "extra.html").read_text()
    assert report.main(["matrix", *map(str, two_stacks), "--out", str(tmp_path)]) == 0
    assert '<a href="extra.html">an extra page</a>' in (tmp_path / "matrix.html").read_text()


# --- the state x event page ------------------------------------------------------------------

def test_the_state_x_event_page_grids_the_cells_per_stack_and_merged(tmp_path):
    """States down, events across, one grid per stack and one merged; a
    cell counts its verdicts and opens its cases; deviations by rule; the
    conformance matrix leaves the generated cells to this page."""
    linux, lwip = tmp_path / "linux", tmp_path / "lwip"
    linux.mkdir()
    lwip.mkdir()
    dev = ("Documented deviation from RFC5961/3.2 (a MUST rule) of lwip: nothing, then TIME-WAIT "
           "(rst.in-window: second, check the RST bit)")
    for fam in ("ipv4", "ipv6"):
        allure_result(linux, "linux", "matrix.time-wait.rst.in-window", fam, "passed", test="test_cell")
        allure_result(lwip, "lwip", "matrix.time-wait.rst.in-window", fam, "failed", dev, test="test_cell")
        allure_result(linux, "linux", "matrix.closed.syn.any", fam, "passed", test="test_cell")
        allure_result(linux, "linux", "handshake.lost-third-ack", fam, "passed", test="test_synack")
    assert report.main(["states", str(linux), str(lwip), "--out", str(tmp_path)]) == 0
    page = (tmp_path / "states.html").read_text()
    assert page.count('<table class="grid">') == 3                  # all stacks, linux, lwip
    assert 'href="#cell-time-wait-rst"' in page and 'id="cell-time-wait-rst"' in page
    assert "MUST DEVIATION 2" in page and "rst.in-window" in page
    md = (tmp_path / "states.md").read_text()
    assert "| TIME-WAIT |" in md and "### lwip" in md
    assert report.main(["matrix", str(linux), "--out", str(tmp_path)]) == 0
    matrix = (tmp_path / "matrix.html").read_text()
    assert 'id="matrix.closed.syn.any"' not in matrix and 'href="states.html"' in matrix
    assert 'id="handshake.lost-third-ack"' in matrix


# --- the seed-claims page ----------------------------------------------------------------------

def test_seed_claims_are_parsed_from_the_table():
    claims = report.parse_claims(report.CLAIMS.read_text())
    assert [c[0] for c in claims] == [f"S{i}" for i in range(1, 22)]
    assert claims[12][1].startswith("If the third ACK is lost the server retransmits the SYN-ACK")


def _section(page, cid, following):
    return page[page.index(f'id="{cid}"'):page.index(f'id="{following}"') if following else None]


def test_claims_page_compares_only_the_stacks_defaults_with_the_note(two_stacks):
    results = report.load_results(two_stacks)
    claims = report.parse_claims(report.CLAIMS.read_text())
    page = report.claims_html(claims, _ctx(results, {}))
    s13 = _section(page, "S13", "S14")
    assert "handshake.lost-third-ack" in s13 and "PASS 2" in s13 and "TIMING 1" in s13
    assert "The note says</b> (SYN-ACK retransmissions (tcp_synack_retries)): <b>5</b>" in s13
    rows_ = re.findall(r"<tr><td>(\w+)</td>.*?<td>(documented|measured): <code>(\w+)</code></td><td>(.*?)</td>"
                       r"<td>(.*?)</td></tr>", s13)
    got = {(stack, key, value, re.sub(r"<.*?>", "", v)[:20]) for stack, _, key, value, v in rows_}
    assert ("linux", "synack_retries", "5", "as the note says") in got
    assert ("lwip", "synack_retries", "4", "differs from the not") in got
    assert ("linux", "synack_retransmissions", "5 (1, 3, 7, 15, 31 s after the first)", "as the note says") in got
    assert ("linux", "synack_retries", "2", "variant (synack_retr") in got       # set on purpose: not compared
    # S21: 61.98 s is within the tolerance of 60 s; the 1 s variant is no "differs"
    s21 = _section(page, "S21", None)
    assert "differs from the note" not in s21
    assert re.search(r"fin_wait_2_lasted</code></td><td>61\.98 s</td><td><span class=\"holds\">", s21)
    assert "variant (fin_timeout): not the stack's default" in s21
    # S5: 60 s against 240 s is a real difference, with units
    s5 = _section(page, "S5", "S6")
    assert re.search(r"time_wait</code></td><td>60 s</td><td><span class=\"differs\">", s5)
    assert "linux: <span class=\"differs\">differs from the note</span>" in page
    # S2, a list: the stack's intervals against the note's, with a verdict
    s2 = _section(page, "S2", "S3")
    assert "1, 3, 6, 12, 24, 48, 64 s" in s2
    assert "intervals 1, 2, 4, 8, 16 s: interval 2 is 2 s, the note&#x27;s 3 s" in s2
    assert re.search(r"rto_max</code></td><td>120 s \(120000 ms\)</td><td><span class=\"differs\">", s2)
    assert re.search(r"initial_rto</code></td><td>1 s</td><td><span class=\"holds\">", s2)
    # every result links into the Allure report
    for r in results:
        if "S13" in r.seeds:
            assert f'href="html/index.html#{r.allure_id}"' in s13
    md = report.claims_markdown(claims, results, {})
    assert "| S4 " in md and "**no case yet**" in md and "linux synack_retries 5 (as the note says)" in md
    assert "linux time_wait 60 s (differs)" in md and "variant" not in md


# --- environment and HTML ------------------------------------------------------------------------

def test_environment_of_several_runs_keeps_what_differs_per_stack():
    merged = report.merge_environment([("linux", "stack=linux\nkernel=6.18\n"), ("lwip", "stack=lwip\nkernel=6.18\n")])
    assert merged.splitlines() == ["linux.stack=linux", "lwip.stack=lwip", "kernel=6.18"]


def test_analytics_tag_is_stripped_or_the_build_fails():
    page = ('<head><script src="app.js"></script>\n    <script async src="https://www.googletagmanager.com/gtag/js?'
            'id=G-X"></script>\n    <script>\n        window.dataLayer = window.dataLayer || [];\n        '
            "function gtag(){dataLayer.push(arguments);}\n        gtag('js', new Date());\n    </script>\n</head>")
    out = report.strip_analytics(page)
    assert "googletagmanager" not in out and "gtag" not in out and '<script src="app.js"></script>' in out
    with pytest.raises(report.ReportError, match="Google Analytics"):
        report.strip_analytics('<script src="https://www.googletagmanager.com/gtag/js?id=1" async></script>')


def test_matrix_and_claims_commands_need_no_node(two_stacks, tmp_path):
    out = tmp_path / "out"
    for command in ("matrix", "claims"):
        p = subprocess.run([sys.executable, "-m", "harness.report", command, *map(str, two_stacks), "--out", str(out)],
                           cwd=ROOT, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    assert {p.name for p in out.iterdir()} == {"matrix.html", "matrix.md", "claims.html", "claims.md"}


def test_no_results_is_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "harness.report", "matrix", str(tmp_path), "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "no conformance results" in p.stderr


# --- a real run (root) ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A quick real run with xdist into a results directory that holds an
    earlier run's leftovers, a history and a file of the user's."""
    results = tmp_path_factory.mktemp("run") / "allure-results"
    (results / "history").mkdir(parents=True)
    (results / "history" / "history.jsonl").write_text("{}\n")
    (results / "stale-result.json").write_text("{}")
    (results / "0000-attachment.txt").write_text("stale")
    (results / "notes.txt").write_text("mine")
    p = subprocess.run([sys.executable, "-m", "pytest", "conformance/", "-m", "not slow and not matrix", "-n", "2", "-p",
                        "no:randomly", "-k", "test_data_on_third_ack_is_delivered or test_fin_retransmitted_into_time_wait or tcpdump", f"--alluredir={results}",
                        "--sysctl", "net.ipv4.tcp_synack_retries=3"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:]
    found = [json.loads(f.read_text()) for f in results.glob("*-result.json")]
    return results, found


def _attachment(results, res, name):
    a = next(a for a in res["attachments"] if a["name"] == name)
    return results / a["source"], a["type"]


@pytest.mark.root
def test_real_run_results_carry_the_labels_and_rfc_links(real_run):
    results, found = real_run
    assert len(found) == 6
    for res in found:
        labels = {}
        for label in res["labels"]:
            labels.setdefault(label["name"], []).append(label["value"])
        assert labels["stack"] == ["linux"] and labels["epic"] == ["RFC 9293"]
        assert labels["family"][0] in ("ipv4", "ipv6")
        assert {p["name"]: p["value"] for p in res["parameters"]}["family"].strip("'") == labels["family"][0]
        assert labels["case"][0].split(".")[0] == labels["feature"][0]
        assert labels["requirement"] and labels["seed"] and labels["story"]
        assert labels["severity"] == ["critical"] and labels["tag"] == ["MUST"]
        for link in res["links"]:                 # Allure links a test to http(s) addresses only
            assert link["type"] == "rfc" and link["url"].startswith("https://www.rfc-editor.org/rfc/rfc"), link
        assert f"<code>matrix.html#{labels['case'][0]}</code>" in res["descriptionHtml"]
        assert "variant" not in labels or labels["variant"] != [labels["family"][0]]
    data = next(r for r in found if "third_ack" in r["fullName"])
    assert {"type": "rfc", "url": "https://www.rfc-editor.org/rfc/rfc9293#section-3.10.7.4",
            "name": "RFC 9293 §3.10.7.4"} in data["links"]
    trace_case = next(r for r in found if "tcpdump" in r["fullName"])
    assert {l["value"] for l in trace_case["labels"] if l["name"] == "seed"} == {"S9", "S10"}


@pytest.mark.root
def test_real_run_attaches_the_exchange_every_way(real_run):
    results, found = real_run
    for res in found:
        names = [a["name"] for a in res["attachments"]]
        assert names[:4] == ["exchange (RFC 9293 notation)", "sequence diagram", "tcpdump (relative sequence numbers)",
                             "tcpdump -S (absolute sequence numbers)"]
        case = next(label["value"] for label in res["labels"] if label["name"] == "case")
        assert re.match(rf"^linux-{re.escape(case)}-test_\w+-ipv[46]\.pcap$", names[4])   # the case's name
        assert f"<code>pcaps/{names[4]}</code>" in res["descriptionHtml"]
        # every check is a step: numbered, with its requirement, expected and seen
        assert res["steps"] and all(re.match(r"^(#\d+ |state read: |… and \d+ more)", st["name"])
                                    for st in res["steps"])
        first = res["steps"][0]
        assert first["status"] == "passed" and {p["name"] for p in first["parameters"]} >= {"expected", "seen"}
        svg, kind = _attachment(results, res, "sequence diagram")
        assert kind == "image/svg+xml" and ET.parse(svg).getroot().tag.endswith("svg")
        ladder = _attachment(results, res, "exchange (RFC 9293 notation)")[0].read_text()
        assert "-->" in ladder and "<--" in ladder and "SYN-SENT" in ladder and "ESTABLISHED" in ladder
        assert "<SEQ=0><CTL=SYN>" in ladder or "<SEQ=0><ACK=1><CTL=SYN,ACK>" in ladder
        # the pcap holds exactly the traced segments: the -S view, line for line
        pcap, kind = _attachment(results, res, names[4])
        assert kind == "application/vnd.tcpdump.pcap"
        packets = rdpcap(str(pcap))
        absolute = _attachment(results, res, "tcpdump -S (absolute sequence numbers)")[0].read_text().splitlines()
        assert len(packets) == len(absolute)
        for pkt, line in zip(packets, absolute):
            seg = Segment.parse(bytes(pkt), 0.0, "?")
            assert tcpdump_line(seg, 0.0).split(": ", 1)[1] == line.split(": ", 1)[1]
    # the test page opens with the exchange: description, diagram (an image) and ladder
    for res in found:
        page = res["descriptionHtml"]
        assert page.count('<img alt="sequence diagram"') == 1 and "data:image/svg+xml;base64," in page
        assert "&lt;SEQ=0&gt;&lt;CTL=SYN&gt;" in page or "&lt;SEQ=0&gt;&lt;ACK=1&gt;&lt;CTL=SYN,ACK&gt;" in page
    trace_case = next(r for r in found if "tcpdump" in r["fullName"])
    observed = json.loads(_attachment(results, trace_case, "observed values")[0].read_text())
    assert any("seq 1:16" in line for line in observed["measured"]["relative_view"])


@pytest.mark.root
def test_real_run_environment_categories_and_cleaning(real_run):
    results, _ = real_run
    env = dict(line.split("=", 1) for line in (results / "environment.properties").read_text().splitlines())
    assert env["stack"] == "linux" and env["kernel"].startswith("Linux ") and env["stack.version"] != "unknown"
    assert env["sysctl.net.ipv4.tcp_synack_retries"] == "3 (namespace default 5)"
    for tool in ("python", "scapy", "pyroute2", "pytest", "pytest-xdist", "allure-pytest"):
        assert re.match(r"^\d+\.\d+", env[tool]), tool
    assert json.loads((results / "categories.json").read_text()) == CATEGORIES
    # the controller removed the earlier run's files, not the history or the user's
    assert not (results / "stale-result.json").exists() and not (results / "0000-attachment.txt").exists()
    assert (results / "history" / "history.jsonl").exists() and (results / "notes.txt").read_text() == "mine"
    # no phantom `<fixture>::<lambda>` teardowns (allure-python#918) left to show as "unknown"
    for path in results.glob("*-container.json"):
        for after in json.loads(path.read_text()).get("afters", []):
            assert "status" in after, (path.name, after)


@pytest.mark.root
def test_real_run_builds_the_matrix_and_the_claims_page(real_run, tmp_path):
    results, _ = real_run
    for command in ("matrix", "claims"):
        p = subprocess.run([sys.executable, "-m", "harness.report", command, str(results), "--out", str(tmp_path)],
                           cwd=ROOT, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    matrix = (tmp_path / "matrix.html").read_text()
    row = re.search(r"<code>handshake\.data-ack-to-syn-received</code>.*?</tr>", matrix, re.S).group(0)
    assert row.count("PASS 1") == 2
    claims = (tmp_path / "claims.html").read_text()
    s9 = claims[claims.index('id="S9"'):claims.index('id="S10"')]
    assert "trace.relative-and-absolute" in s9 and "PASS 1" in s9


@pytest.mark.root
@pytest.mark.skipif(not report.ALLURE.exists(), reason="Allure 3 comes with python3 -m harness.setup --report")
def test_real_run_builds_the_html_report_offline_without_analytics(real_run, tmp_path):
    results, _ = real_run
    p = subprocess.run([sys.executable, "-m", "harness.report", str(results), "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    index = (tmp_path / "html" / "index.html").read_text()
    assert "googletagmanager" not in index and "gtag(" not in index
    assert len(index) > 1_000_000            # one file: the app, the data and the attachments inline
    matrix = (tmp_path / "matrix.html").read_text()
    assert 'href="html/index.html#' in matrix  # cells open their test in the report


@pytest.mark.root
@pytest.mark.skipif(not report.ALLURE.exists(), reason="Allure 3 comes with python3 -m harness.setup --report")
def test_runs_of_several_stacks_merge_into_one_html_report(real_run, tmp_path):
    """A second run labelled as a remote host is (remote:linux-6.1): Allure's
    environment ids allow [A-Za-z0-9_-] only, the label is shown as it is."""
    results, _ = real_run
    other = tmp_path / "remote"
    shutil.copytree(results, other)
    for f in other.glob("*-result.json"):
        res = json.loads(f.read_text())
        for label in res["labels"]:
            if label["name"] == "stack":
                label["value"] = "remote:linux-6.1"
        f.write_text(json.dumps(res))
    p = subprocess.run([sys.executable, "-m", "harness.report", str(results), str(other), "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "allure generate failed" not in p.stdout + p.stderr, p.stdout + p.stderr
    assert (tmp_path / "html" / "index.html").exists()
    assert "remote:linux-6.1 ipv4" in (tmp_path / "matrix.md").read_text()


@pytest.mark.root
def test_a_failure_attaches_expected_vs_seen_and_lands_in_its_category(run_case, tmp_path):
    """The S9 case with the SUT's data one sequence number late (its negative control)."""
    from faults import Fault, FaultPlugin

    results = tmp_path / "results"
    outcome = run_case("conformance/test_trace.py::test_tcpdump_relative_and_absolute[ipv4]",
                       f"--alluredir={results}", plugins=[FaultPlugin(Fault("A", nth=1, action="seq", offset=1))])
    outcome.assert_outcomes(failed=1)
    assert "exchange (RFC 9293 notation)" in outcome.stdout.str()      # also printed under the failure
    (res,) = [json.loads(p.read_text()) for p in results.glob("*-result.json")]
    assert res["status"] == "failed"
    assert report.verdict(res["status"], res["statusDetails"]["message"], CATEGORIES) == "RFC violation"
    assert res["attachments"][0]["name"] == "expected vs seen"
    text = (results / res["attachments"][0]["source"]).read_text()
    assert text.splitlines() == [
        "RFC violation",
        "requirement: RFC9293/3.4",
        "check:       tcpdump (relative sequence numbers), line 4: SYN and FIN occupy one sequence number each, "
        "data starts at ISN+1",
        "expected:    server > client: Flags [.], seq 1:16, ack 1, length 15",
        "seen:        server > client: Flags [.], seq 2:17, ack 1, length 15"]
    page = res["descriptionHtml"]                       # the page opens with expected beside seen
    assert page.index("RFC violation: RFC9293/3.4") < page.index("<img")
    assert "<code style=\"white-space:pre-wrap\">server &gt; client: Flags [.], seq 1:16, ack 1, length 15</code>" in page
    # Allure's own expected and actual (the page's "Show difference"), and the rule as a label
    assert res["statusDetails"]["expected"] == "server > client: Flags [.], seq 1:16, ack 1, length 15"
    assert res["statusDetails"]["actual"] == "server > client: Flags [.], seq 2:17, ack 1, length 15"
    assert {"name": "rule", "value": "RFC9293/3.4"} in res["labels"]
    assert res["steps"][-1]["status"] == "failed" and res["steps"][-1]["name"].startswith("#")


@pytest.mark.root
def test_a_documented_deviation_is_a_failed_result_naming_its_rule_never_a_skip(run_case, tmp_path):
    """Linux answers the original SYN again in SYN-RECEIVED with its SYN-ACK
    (its profile documents it): an xfail for pytest, so the run stays green,
    and for Allure a failed result in the category of its rule's level."""
    results = tmp_path / "results"
    outcome = run_case("conformance/test_handshake.py::test_original_syn_again_in_syn_received[ipv4]",
                       f"--alluredir={results}")
    outcome.assert_outcomes(xfailed=1)
    (res,) = [json.loads(p.read_text()) for p in results.glob("*-result.json")]
    assert res["status"] == "failed" and res["name"].startswith("MUST deviation · The peer's original SYN")
    details = res["statusDetails"]
    assert details["message"].startswith("Documented deviation from RFC9293/3.10.7.4 (a MUST rule) of linux: a "
                                         "duplicate of the SYN")
    assert report.verdict(res["status"], details["message"], CATEGORIES) == report.MUST_DEVIATION
    assert "Traceback" not in details["trace"] and "XFailed" not in details["trace"]
    assert details["trace"].startswith("rule:          RFC9293/3.10.7.4 (MUST)\nit requires:")
    assert "why (cases/profiles/linux.toml, behaviour \"syn-received.retransmitted-syn\")" in details["trace"]
    assert details["expected"].startswith("a duplicate of the SYN") and "Flags [S.]" in details["actual"]
    assert {"name": "rule", "value": "RFC9293/3.10.7.4"} in res["labels"]
    assert res["attachments"][0]["name"] == "documented deviation"
    last = res["steps"][-1]
    assert last["status"] == "failed" and "departs from the rule: a documented deviation" in last["name"]
    assert "Documented deviation from a MUST rule: not conformant" in res["descriptionHtml"]


def test_a_merge_too_large_for_one_file_gets_one_report_per_stack(two_stacks, tmp_path, monkeypatch):
    """Allure's single file holds the whole report in one JavaScript string:
    several stacks' full runs (the workflow's report job) exceed it. Then
    each stack gets its own report and html/index.html lists them."""
    calls = []

    def generate(dirs, results, out, pages=()):
        stacks = report.stacks_of(results)
        calls.append(stacks)
        if len(stacks) > 1:
            raise report.ReportError("allure generate failed (exit 1): The report is too large to be generated "
                                     "in the single file mode!")
        out.mkdir(parents=True)
        (out / "index.html").write_text(f"report of {stacks[0]}")
        return out / "index.html"

    monkeypatch.setattr(report, "build_html", generate)
    linux, lwip = two_stacks
    assert report.main([str(linux), str(lwip), "--out", str(tmp_path / "out")]) == 0
    assert calls == [["linux", "lwip"], ["linux"], ["lwip"]]
    index = (tmp_path / "out" / "html" / "index.html").read_text()
    assert '<a href="linux/index.html">linux</a>: NOT CONFORMANT' in index and '<a href="lwip/index.html">' in index
    assert (tmp_path / "out" / "html" / "lwip" / "index.html").read_text() == "report of lwip"
