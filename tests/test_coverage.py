"""The coverage page (harness/coverage.py): the requirement lists, counting
from the catalog, verdicts per stack from results, and the page itself."""
import pytest

from harness import coverage
from harness.catalog import Case, Catalog
from harness.report import Context, ReportError, load_results, main
from test_report import allure_result


def _case(cid, *requirements, title="a case"):
    return Case(cid, title, ("RFC 9293 §3.1",), tuple(requirements), (), "MUST")


def test_rfc9293_list_is_complete():
    """All 119 numbered requirements, classified as the research note does: 70 on the wire, 40 with the
    application, 9 not observable, each of those with the reason."""
    reqs, titles = coverage.load_requirements()
    mine = [r for r in reqs if r.rfc == "RFC 9293"]
    assert len(mine) == 119
    counts = {t: sum(1 for r in mine if r.testable == t) for t in "YAN"}
    assert counts == {"Y": 70, "A": 40, "N": 9}
    assert all(r.why for r in mine if r.testable == "N")
    levels = {r.id.split("/")[1].split("-")[0] for r in mine}
    assert levels == {"MUST", "SHLD", "MAY", "REC"}
    assert titles["RFC 9293"] and titles["RFC 5961"]


def test_counted_from_the_catalog_whatever_ran():
    reqs, _ = coverage.load_requirements()
    catalog = {"a.one": _case("a.one", "RFC9293/MUST-1", "RFC9293/3.10.7.4"),
               "b.two": _case("b.two", "RFC5961/3.2", "RFC9999/1", "linux-profile")}
    covs = coverage.coverage(reqs, catalog, [])
    by = {c.requirement.id: c for c in covs}
    assert by["RFC9293/MUST-1"].covered and not by["RFC9293/MUST-2"].covered
    assert by["RFC5961/3.2"].covered
    assert not by["RFC9293/3.10.7.4"].requirement.listed        # a rule without a number: shown all the same
    assert by["RFC9999/1"].requirement.rfc == "RFC 9999"        # an RFC the lists do not know: shown too
    assert "linux-profile" not in by
    t = coverage.totals(covs, [])
    assert t["classes"]["Y"] == {"listed": 70, "covered": 1, "stacks": {}}
    assert coverage.outcome(["Passed", "Skipped (capability missing)"]) == "passed"
    assert coverage.outcome(["Passed", "Documented deviation from a SHOULD rule"]) == "deviation"
    assert coverage.outcome(["Passed", "RFC violation"]) == "failed"
    assert coverage.outcome(["Skipped (capability missing)"]) == "skipped"
    assert t["rfcs"]["RFC 9293 (rules without a number)"] == [1, 1]
    assert t["rfcs"]["RFC 9999"] == [1, 1]


def test_the_real_catalog_covers_every_wire_requirement():
    reqs, _ = coverage.load_requirements()
    covs = coverage.coverage(reqs, Catalog.load().cases, [])
    t = coverage.totals(covs, [])
    missing = [c.requirement.id for c in covs if c.requirement.testable == "Y" and not c.covered]
    assert not missing, f"wire-testable requirements without a case: {missing}"
    assert t["classes"]["A"]["covered"] >= 32


def test_page_shows_verdicts_per_stack(tmp_path):
    linux, lwip = tmp_path / "linux", tmp_path / "lwip"
    linux.mkdir()
    lwip.mkdir()
    for fam in ("ipv4", "ipv6"):
        allure_result(linux, "linux", "a.one", fam, "passed", requirements=("RFC9293/MUST-1",))
        allure_result(lwip, "lwip", "a.one", fam, "skipped", message="stack lwip lacks it: no urgent data",
                      requirements=("RFC9293/MUST-1",))
    results = load_results([linux, lwip])
    reqs, titles = coverage.load_requirements()
    catalog = {"a.one": _case("a.one", "RFC9293/MUST-1")}
    covs = coverage.coverage(reqs, catalog, results)
    page = coverage.coverage_html(covs, titles, Context(results, catalog, ["linux", "lwip"]))
    assert "1 / 70" in page and "0 / 40" in page
    assert "1: 1 passed, 0 deviations, 0 failed, 0 skipped" in page         # linux, Y
    assert "1: 0 passed, 0 deviations, 0 failed, 1 skipped" in page         # lwip, Y
    row = page[page.index('id="RFC9293/MUST-1"'):]
    row = row[:row.index("</tr>")]
    assert "PASS 2" in row and "SKIP 2" in row and "a.one" in row
    assert "no case yet" in page                                   # MUST-2 and the others
    assert "Whether outsiders can compute" in page                 # an N id says why
    md = coverage.coverage_markdown(covs, titles, catalog, results)
    assert "| `RFC9293/MUST-1` | MUST | Y |" in md and "✅ PASS 2" in md


def test_report_command_builds_the_page(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    allure_result(results, "linux", "options.syn", "ipv4", "passed", requirements=("RFC9293/SHLD-5",))
    out = tmp_path / "out"
    assert main(["coverage", str(results), "--out", str(out)]) == 0
    assert (out / "coverage.html").exists() and (out / "coverage.md").exists()
    assert "RFC9293/SHLD-5" in (out / "coverage.md").read_text()


@pytest.mark.parametrize("text, why", [
    ('[[requirement]]\nid = "RFC9293/MUST-1"\n', "needs id"),
    ('[[requirement]]\nid = "RFC9293/MUST-1"\ntext = "x"\ntestable = "N"\n', "says why"),
    ('[[requirement]]\nid = "RFC9293/MUST-1"\ntext = "x"\ncolour = "red"\n', "unknown key"),
    ('[[item]]\nid = "RFC9293/MUST-1"\ntext = "x"\n[[item]]\nid = "RFC9293/MUST-1"\ntext = "y"\n', "twice"),
])
def test_malformed_lists_are_one_line(tmp_path, text, why):
    (tmp_path / "x.toml").write_text(text)
    with pytest.raises(ReportError, match=why):
        coverage.load_requirements(tmp_path)
