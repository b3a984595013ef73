"""Reports from Allure results: the Allure HTML report, and pages beside it
(the conformance matrix, the state x event matrix, the seed-claims page, the requirement coverage). `python -m harness.report
[DIR ...]` after a run.

Rules of this file:
- Input is one or several Allure results directories (default
  reports/allure-results): runs of several stacks or machines merge into one
  view. Stacks come from the `stack` label, families from `family`, cases
  from `case` (the suite's Allure contract, ../shared/design.md).
- A result's verdict is its Allure category (reports/categories.json, the
  rules the HTML report uses), so the pages and the report always agree. A
  documented deviation is a failed result whose category names the level of
  the rule it departs from (MUST, SHOULD, MAY): never a pass or a skip.
- Every page is one self-contained HTML file (inline CSS, no scripts) plus
  Markdown for CI summaries, built from the shared helpers of the section
  "pages": the frame with its navigation, the colours by verdict, the verdict
  cell (linked into the Allure report, naming the variant that did not pass),
  RFC links for sections and requirement ids. Reading results and rendering
  pages are pure functions; only `main` and the `build_*` functions do IO.
- The HTML report is Allure 3 from reports/node_modules (installed by
  `python3 -m harness.setup --report`), run offline with reports/allurerc.mjs
  into a fresh OUT/html/ (Allure 3 has no --clean). Its name, on its start
  page, is the verdict of the run: passes, documented deviations and how many
  depart from MUST rules, failures. History carries over in OUT/history/
  (default reports/history/). The Google Analytics tag Allure writes into
  index.html is removed; if it cannot be, the build fails rather than ship
  it. The pages beside the report are built first and go into it as global
  attachments (its start page's tab "Global Attachments"); they link each
  result to its page in the report by the id Allure 3 gives it, md5 of the
  result's uuid. Each test's capture goes to OUT/pcaps/ under the name of its
  attachment (stack, case, test: Allure downloads an attachment under a
  hash). Allure links a test only to http(s) addresses, so a test's page
  names these files as text.

Another page: one function that takes the Context and returns its files,
registered with `@page(name, title)`; it is built by `python -m
harness.report` and alone by `python -m harness.report NAME`, and every page's
navigation links to it. Use `frame` for the page, `verdict_cell` for a cell
of results, `requirement_link`/`rfc_link` for the RFC, `ctx.allure_href` to
link a result into the Allure report (see matrix_page).
"""
from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "reports"
RESULTS = REPORTS / "allure-results"
CATEGORIES = REPORTS / "categories.json"
CLAIMS = ROOT / "cases" / "seed-claims.md"
REQUIREMENT_TABLES = ROOT / "cases" / "requirements"
ALLURE = REPORTS / "node_modules" / ".bin" / "allure"

PASSED = "Passed"
MUST_DEVIATION = "Documented deviation from a MUST rule"
# Verdicts from worst to best: category name -> (word, css class, emoji for Markdown, what it means).
VERDICTS = {
    "RFC violation": ("FAIL", "fail", "❌", "the stack broke the requirement the case names"),
    "Timing tolerance exceeded": ("TIMING", "timing", "⏱️",
                                  "the right segment, but outside the timing tolerance (late or early)"),
    "Harness or environment error": ("ERROR", "error", "💥", "the test could not judge the stack (harness, machine)"),
    MUST_DEVIATION: ("MUST DEVIATION", "dev-must", "🟧",
                     "the stack departs from a MUST rule, as its profile documents (with the reason): not conformant"),
    "Documented deviation from a SHOULD rule": ("SHOULD DEVIATION", "dev-should", "⚠️",
                                                "the stack departs from a SHOULD rule, as its profile documents"),
    "Documented deviation from a MAY rule or a documented choice": (
        "MAY DEVIATION", "dev-may", "⚠️", "the stack departs from a MAY rule or a choice the RFC leaves open, "
                                         "as its profile documents"),
    PASSED: ("PASS", "pass", "✅", "every check of the case as required"),
    "Skipped (capability missing)": ("SKIP", "skip", "⏭️", "the stack lacks a capability the case needs; not run"),
}
ORDER = list(VERDICTS)
DEVIATIONS = tuple(v for v in VERDICTS if v.startswith("Documented deviation"))
FAILURES = ("RFC violation", "Timing tolerance exceeded", "Harness or environment error")
FAMILIES = ("ipv4", "ipv6")
LEVELS = {
    "MUST": "an absolute requirement of the RFC (RFC 2119)",
    "SHOULD": "a recommendation: a stack may depart from it for a documented reason",
    "MAY": "an option of the RFC",
    "documented": "no RFC keyword: the case checks what the stack's profile documents where the RFC leaves the "
                  "choice to the implementation (retry counts, timer lengths)",
}


class ReportError(RuntimeError):
    """The report cannot be built; the message says what to do."""


# --- reading results ---------------------------------------------------------------------------

@dataclass
class Result:
    case: str
    title: str
    stack: str
    family: str
    test: str                  # test function and its parameters other than family
    name: str                  # the Allure name (title in words)
    verdict: str               # a key of VERDICTS
    message: str
    level: str
    requirements: tuple
    seeds: tuple
    observed: dict = field(default_factory=dict)   # {"measured": {...}, "profile": {...}, "set": {...}}
    stop: int = 0
    variant: str = ""          # the test's parameters other than the family ("default", "retries-2")
    pcap: tuple | None = None  # (attachment file, name of the capture beside the report)
    allure_id: str = ""        # the result's id in the Allure 3 report: md5 of its uuid
    directory: Path | None = None   # the results directory it was read from

    @property
    def changed(self) -> set:
        """Names of the values the test set (profile values and sysctls): a variant, not the default."""
        return set(self.observed.get("set") or {})


def load_categories(path: Path = CATEGORIES) -> list:
    return json.loads(path.read_text())


def verdict(status: str, message: str, categories: list) -> str:
    """The Allure category of a result (first match wins, as in Allure)."""
    if status == "passed":
        return PASSED
    for c in categories:
        if status in c.get("matchedStatuses", []) and re.search(c.get("messageRegex", ""), message or ""):
            return c["name"]
    return "Harness or environment error"


def parse_result(data: dict, categories: list, attachment=lambda source: None, directory: Path | None = None
                 ) -> Result | None:
    """A Result from one *-result.json (None for a test that is not a
    conformance case). `attachment(source)` returns an attachment's text."""
    labels: dict = {}
    for label in data.get("labels", []):
        labels.setdefault(label["name"], []).append(label["value"])
    if "case" not in labels:
        return None
    params = {p["name"]: p["value"].strip("'") for p in data.get("parameters", [])}
    family = labels.get("family", [params.get("family", "?")])[0]
    func = data.get("fullName", data.get("name", "?")).rpartition("#")[2]
    extra = [f"{k}={v}" for k, v in params.items() if k != "family"]
    message = (data.get("statusDetails") or {}).get("message") or ""
    observed = {}
    pcap = None
    for a in data.get("attachments", []):
        if a.get("name") == "observed values":
            text = attachment(a["source"])
            if text:
                try:
                    observed = json.loads(text)
                except ValueError:
                    observed = {}
        if a.get("type") == "application/vnd.tcpdump.pcap" and directory is not None:
            pcap = (directory / a["source"], re.sub(r"[^A-Za-z0-9._\[\]-]+", "_", a.get("name") or a["source"]))
    return Result(case=labels["case"][0], title=labels.get("story", [labels["case"][0]])[0],
                  stack=labels.get("stack", ["?"])[0], family=family,
                  test=func + (f"[{', '.join(extra)}]" if extra else ""), name=data.get("name", func),
                  verdict=verdict(data.get("status", "unknown"), message, categories), message=message,
                  level=labels.get("tag", [""])[0], requirements=tuple(labels.get("requirement", [])),
                  seeds=tuple(labels.get("seed", [])), observed=observed, stop=int(data.get("stop") or 0),
                  variant=labels.get("variant", [""])[0], pcap=pcap,
                  allure_id=hashlib.md5(data["uuid"].encode()).hexdigest() if data.get("uuid") else "",
                  directory=directory)


def load_results(dirs: list[Path], categories: list | None = None) -> list[Result]:
    """Every conformance result of the directories; a test reported twice
    (a rerun, the same stack on two machines) counts once, the latest."""
    categories = load_categories() if categories is None else categories
    latest: dict = {}
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise ReportError(f"{d}: no such results directory (run the suite with --alluredir={d})")

        def attachment(source, d=d):
            p = d / source
            return p.read_text(errors="replace") if p.is_file() else None

        for path in sorted(d.glob("*-result.json")):
            try:
                data = json.loads(path.read_text())
            except ValueError:
                continue
            r = parse_result(data, categories, attachment, d)
            if r is None:
                continue
            key = (r.stack, data.get("historyId") or (r.case, r.test, r.family))
            if key not in latest or latest[key].stop <= r.stop:
                latest[key] = r
    return list(latest.values())


def stack_slug(stack: str) -> str:
    """A stack's name as a directory name ("remote:linux-6.1" -> "remote-linux-6.1")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stack)


def stacks_of(results: list[Result]) -> list[str]:
    """Stacks in the order a reader expects: linux first, then by name."""
    return sorted({r.stack for r in results}, key=lambda s: (s != "linux", s))


def load_catalog() -> dict:
    """{case id: Case} of this checkout's catalog; empty if it cannot load."""
    try:
        from .catalog import Catalog
        return Catalog.load().cases
    except Exception:        # a results directory from another checkout still reports
        return {}


@lru_cache(maxsize=None)
def profile_of(stack: str):
    """The profile a stack label is judged by (linux, remote:linux-6.1 ->
    linux-6.1); None if this checkout has none."""
    try:
        from .catalog import Profile
        return Profile.load(stack.rpartition(":")[2])
    except Exception:
        return None


def parse_claims(text: str) -> list[tuple[str, str, str]]:
    """(id, claim, what a case must observe) per table row of seed-claims.md."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^\|\s*(S\d+)\s*\|(.*)\|(.*)\|\s*$", line)
        if m:
            out.append((m.group(1), m.group(2).strip(), m.group(3).strip()))
    return out


# --- verdicts, counted ----------------------------------------------------------------------

def worst(results: list[Result]) -> str:
    return min((r.verdict for r in results), key=lambda v: ORDER.index(v) if v in ORDER else 0)


def counts(results: list[Result]) -> list[tuple[str, int]]:
    n: dict = {}
    for r in results:
        n[r.verdict] = n.get(r.verdict, 0) + 1
    return sorted(n.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else 0)


def word(v: str) -> str:
    return VERDICTS.get(v, ("ERROR",))[0]


def css(v: str) -> str:
    return VERDICTS.get(v, ("", "error"))[1]


def cell_text(results: list[Result]) -> str:
    return " · ".join(f"{word(v)} {n}" for v, n in counts(results)) if results else "not run"


def first_line(message: str) -> str:
    line = message.strip().splitlines()[0] if message.strip() else ""
    return re.sub(r"^(?:[\w.]+\.)?(?:ConformanceFailure|TimingFailure|XFailed|Failed): ", "", line)


def verdict_line(results: list[Result]) -> str:
    """The run's verdict for one stack, in one line: what passed, the
    documented deviations and how many depart from MUST rules, the failures."""
    n = dict(counts(results))
    total = len(results)
    run = total - n.get("Skipped (capability missing)", 0)
    parts = [f"{n.get(PASSED, 0)} of {run} passed"]
    deviations = sum(n.get(v, 0) for v in DEVIATIONS)
    parts.append(f"{deviations} documented deviation{'s' if deviations != 1 else ''}"
                 + (f" ({n.get(MUST_DEVIATION, 0)} from MUST rules)" if deviations else ""))
    parts.append(f"{n.get('RFC violation', 0)} RFC violation{'s' if n.get('RFC violation', 0) != 1 else ''}")
    for v in ("Timing tolerance exceeded", "Harness or environment error", "Skipped (capability missing)"):
        if n.get(v):
            parts.append(f"{n[v]} {word(v).lower()}")
    conformant = not any(n.get(v) for v in (*FAILURES, *DEVIATIONS))
    return ("conformant: " if conformant else "NOT CONFORMANT: ") + " · ".join(parts)


def report_name(results: list[Result]) -> str:
    """The Allure report's name, on its start page: the verdict of each stack."""
    return " | ".join(f"{s}: {verdict_line([r for r in results if r.stack == s])}" for s in stacks_of(results))


# --- pages: the shared helpers ------------------------------------------------------------------

@dataclass
class Context:
    """What every page is built from."""

    results: list
    catalog: dict
    sources: list
    report: str | None = None                     # href of the Allure report, when there is one
    # (with "{stack}" in it where each stack has a report of its own)

    def allure_href(self, r: Result) -> str | None:
        """The result's page in the Allure report."""
        if not (self.report and r.allure_id):
            return None
        return f"{self.report.format(stack=stack_slug(r.stack))}#{r.allure_id}"


PAGES: dict[str, tuple[str, Callable]] = {}      # name -> (title in the navigation, builder)


def page(name: str, title: str):
    """Register a page: `builder(ctx) -> {file name: text}`; its HTML is NAME.html."""
    def register(builder):
        PAGES[name] = (title, builder)
        return builder
    return register


CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 24px 24px; color: #0f172a; }
nav { position: sticky; top: 0; z-index: 3; background: #0f172a; margin: 0 -24px 16px; padding: 8px 24px; }
nav a { color: #e2e8f0; margin-right: 18px; text-decoration: none; font-weight: 600; }
nav a.here { color: #fff; border-bottom: 2px solid #fbbf24; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.sub { color: #475569; margin-bottom: 16px; } a { color: #1d4ed8; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #cbd5e1; padding: 4px 8px; vertical-align: top; text-align: left; }
thead th { background: #f1f5f9; position: sticky; top: 37px; z-index: 2; }
td.v { text-align: center; font-weight: 600; font-size: 12px; min-width: 110px; }
td.v a { color: inherit; }
td.v .variants { font-weight: 400; font-size: 11px; text-align: left; margin-top: 3px; }
.fail { background: #fecaca; color: #7f1d1d; } .timing { background: #fbcfe8; color: #831843; }
.error { background: #e9d5ff; color: #4c1d95; }
.dev-must { background: #fdba74; color: #7c2d12; box-shadow: inset 4px 0 0 #c2410c; }
.dev-should { background: #fde68a; color: #713f12; } .dev-may { background: #fef9c3; color: #713f12; }
.pass { background: #bbf7d0; color: #14532d; } .skip { background: #e2e8f0; color: #334155; }
.none { background: #f8fafc; color: #94a3b8; font-weight: 400; }
.missing { color: #b91c1c; font-weight: 700; }
tr.area td { background: #e2e8f0; font-weight: 700; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 12px; }
.small { font-size: 12px; color: #475569; }
.badge { display: inline-block; padding: 1px 8px; margin: 1px 6px 1px 0; border-radius: 3px; font-size: 12px;
         font-weight: 600; }
dl.legend { display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 3px 12px; font-size: 13px;
            margin: 8px 0; max-width: 1400px; }
dl.legend dt { margin: 0; } dl.legend dd { margin: 0; color: #334155; }
.verdict { font-size: 16px; font-weight: 700; padding: 8px 12px; border-radius: 4px; margin: 8px 0; }
.claim { border: 1px solid #cbd5e1; border-radius: 6px; padding: 10px 14px; margin: 12px 0; }
.claim h3 { margin: 0 0 6px; font-size: 15px; }
.holds { color: #15803d; font-weight: 700; } .differs { color: #b45309; font-weight: 700; }
.variant { color: #64748b; }
table.grid td.v { min-width: 64px; font-size: 11px; font-weight: 600; line-height: 1.3; }
table.grid th { font-size: 12px; white-space: nowrap; }
"""


def frame(here: str, title: str, subtitle: str, body: str, ctx: Context) -> str:
    """A page of the report: navigation to the Allure report and every
    registered page, the title, a subtitle, the body."""
    links = [(ctx.report, "Allure report", False)] if ctx.report else []
    links += [(f"{name}.html", t, name == here) for name, (t, _) in PAGES.items()]
    here_ = ' class="here"'
    nav = "".join(f'<a href="{html.escape(h)}"{here_ if cur else ""}>{html.escape(t)}</a>' for h, t, cur in links)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><nav>{nav}</nav><h1>{html.escape(title)}</h1>"
            f"<div class=\"sub\">{subtitle}</div>{body}</body></html>\n")


def badge(v: str, text: str | None = None) -> str:
    return f'<span class="badge {css(v)}">{html.escape(text if text is not None else word(v))}</span>'


def legend(levels: bool = True) -> str:
    """What the verdicts (and the levels) mean."""
    out = "".join(f"<dt>{badge(v)}</dt><dd>{html.escape(meaning)}</dd>" for v, (_, _, _, meaning) in VERDICTS.items())
    out += '<dt><span class="badge none">not run</span></dt><dd>no result for this stack and family</dd>'
    if levels:
        out += "".join(f"<dt><b>{lv}</b></dt><dd>{html.escape(m)}</dd>" for lv, m in LEVELS.items())
    return f'<dl class="legend">{out}</dl>'


# RFCs whose numbered items are rules inside a section, not sections: RFC 6298's (2.4) is in section 2.
RULE_NUMBERED = {"6298"}


@lru_cache(maxsize=1)
def requirement_sections() -> dict:
    """{requirement id: section} from the requirement tables
    (cases/requirements/*.toml, [[requirement]] id and section), where this
    checkout has them."""
    out = {}
    for path in sorted(REQUIREMENT_TABLES.glob("*.toml")) if REQUIREMENT_TABLES.is_dir() else []:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            continue
        for r in data.get("requirement", []):
            if isinstance(r, dict) and "id" in r and "section" in r:
                out[r["id"]] = str(r["section"])
    return out


def rfc_url(ref: str) -> str | None:
    """The RFC text a reference points at: a section (`RFC 9293 §3.10.7.4`,
    `RFC9293/3.10.7.4`), a numbered requirement (`RFC9293/MUST-13`: its
    section where the requirement tables give it, else RFC 9293's requirement
    summary, Appendix B), or a rule (`RFC6298/2.4`: its section)."""
    m = re.match(r"^RFC ?(\d+)(?:(?: §|/)(.+))?$", ref.strip())
    if not m:
        return None
    num, sec = m.groups()
    url = f"https://www.rfc-editor.org/rfc/rfc{num}"
    if not sec:
        return url
    if re.match(r"^(?:MUST|SHLD|MAY|REC)-\d+$", sec):
        section = requirement_sections().get(f"RFC{num}/{sec}")
        return f"{url}#section-{section}" if section else (f"{url}#appendix-B" if num == "9293" else url)
    if num in RULE_NUMBERED:
        sec = sec.split(".")[0]
    return f"{url}#section-{sec}"


def rfc_link(ref: str) -> str:
    url = rfc_url(ref)
    text = html.escape(ref)
    return f'<a href="{html.escape(url)}">{text}</a>' if url else text


requirement_link = rfc_link


def _variant_of(r: Result) -> str:
    """A result's test in words: its function and parameters, family apart."""
    name = r.test.removeprefix("test_").replace("_", " ")
    return name


def verdict_cell(results: list[Result], ctx: Context, tag: str = "td", variants: bool = True) -> str:
    """A cell of results (one case, one stack, one family): coloured by the
    worst verdict, the counts linked to that result's page in the Allure
    report, and where the results differ the ones that did not pass, each
    named and linked."""
    if not results:
        return f'<{tag} class="v none">not run</{tag}>'
    ranked = sorted(results, key=lambda r: (ORDER.index(r.verdict) if r.verdict in ORDER else 0, r.test))
    tip = "\n".join(f"{word(r.verdict)}  {r.test}" + (f": {first_line(r.message)}" if r.verdict != PASSED else "")
                    for r in ranked)
    text = html.escape(cell_text(results))
    href = ctx.allure_href(ranked[0])
    if href:
        text = f'<a href="{html.escape(href)}">{text}</a>'
    if variants and len({r.verdict for r in results}) > 1:
        lines = []
        for r in ranked:
            if r.verdict == PASSED:
                continue
            name = html.escape(f"{word(r.verdict)}: {_variant_of(r)}")
            h = ctx.allure_href(r)
            lines.append(f'<a href="{html.escape(h)}">{name}</a>' if h else name)
        text += f'<div class="variants">{"<br>".join(lines)}</div>'
    return f'<{tag} class="v {css(worst(results))}" title="{html.escape(tip)}">{text}</{tag}>'


# --- the matrix ------------------------------------------------------------------------------

@dataclass
class Row:
    case: str
    title: str
    level: str
    requirements: tuple
    seeds: tuple
    cells: dict            # (stack, family) -> [Result]


def rows(results: list[Result], catalog: dict) -> list[Row]:
    """One row per case: the catalog's, in catalog order, then any case only
    the results know (run from another checkout). The state x event matrix's
    generated cells have a page of their own (states.html)."""
    out: dict = {}
    for cid, c in catalog.items():
        if not is_cell(cid):
            out[cid] = Row(cid, c.title, c.level, tuple(c.requirements), tuple(c.seed), {})
    for r in results:
        if is_cell(r.case):
            continue
        row = out.setdefault(r.case, Row(r.case, r.title, r.level, r.requirements, r.seeds, {}))
        row.cells.setdefault((r.stack, r.family), []).append(r)
    return list(out.values())


def columns(results: list[Result]) -> list[tuple[str, str]]:
    fams = sorted({r.family for r in results}, key=lambda f: (f not in FAMILIES, f)) or list(FAMILIES)
    return [(s, f) for s in stacks_of(results) for f in fams]


def _summary(results: list[Result]) -> list[tuple[str, list]]:
    return [(s, counts([r for r in results if r.stack == s])) for s in stacks_of(results)]


def stack_verdicts(ctx: Context) -> str:
    """Each stack's verdict line and its counts: the top of a page."""
    out = []
    for s, c in _summary(ctx.results):
        rs = [r for r in ctx.results if r.stack == s]
        line = verdict_line(rs)
        cls = "pass" if line.startswith("conformant") else css(worst(rs))
        out.append(f'<div class="verdict {cls}">{html.escape(s)}: {html.escape(line)}</div>')
    table = "".join(f"<tr><th>{html.escape(s)}</th><td>{len([r for r in ctx.results if r.stack == s])}</td><td>"
                    + "".join(badge(v, f"{word(v)} {n}") for v, n in c) + "</td></tr>" for s, c in _summary(ctx.results))
    return "".join(out) + (f"<table><thead><tr><th>stack</th><th>tests</th><th>verdicts</th></tr></thead>"
                           f"<tbody>{table}</tbody></table>")


def matrix_html(ctx: Context) -> str:
    results, catalog = ctx.results, ctx.catalog
    cols = columns(results)
    out = [stack_verdicts(ctx), "<h2>What the cells say</h2>", legend(),
           '<p class="small"><b>seed claims</b>: the claims S1..S21 of the study note the project grew from '
           '(cases/seed-claims.md) that the case checks; each links to the <a href="claims.html">claims page</a>. '
           "Requirement ids link to the RFC's text. A cell gives the verdicts of the case's tests on that stack and "
           "family, links to the worst one in the Allure report and, where they differ, names each test that did not "
           "pass.</p>"]
    head = ("<tr><th>case</th><th>level</th><th>requirements</th><th>seed claims</th>"
            + "".join(f"<th>{html.escape(s)}<br>{html.escape(f)}</th>" for s, f in cols) + "</tr>")
    body, area = [], None
    for row in rows(results, catalog):
        a = row.case.split(".")[0]
        if a != area:
            area = a
            body.append(f'<tr class="area"><td colspan="{4 + len(cols)}">{html.escape(a)}</td></tr>')
        seeds = ", ".join(f'<a href="claims.html#{html.escape(s)}">{html.escape(s)}</a>' for s in row.seeds)
        body.append(f'<tr id="{html.escape(row.case)}"><td><code>{html.escape(row.case)}</code><br>'
                    f'<span class="small">{html.escape(row.title)}</span></td>'
                    f'<td title="{html.escape(LEVELS.get(row.level, ""))}">{html.escape(row.level)}</td>'
                    f'<td class="mono">{"<br>".join(requirement_link(q) for q in row.requirements)}</td>'
                    f"<td>{seeds}</td>" + "".join(verdict_cell(row.cells.get(c, []), ctx) for c in cols) + "</tr>")
    out.append(f"<h2>Cases</h2><table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>")
    cells = [r for r in results if is_cell(r.case)]
    if cells:
        out.append(f'<p>The state x event matrix ({len({r.case for r in cells})} generated cases, {len(cells)} results) '
                   f'is on the <a href="states.html">state x event page</a>: {html.escape(cell_text(cells))}.</p>')
    sub = (f"{len(results)} results from {html.escape(', '.join(ctx.sources))}; built "
           f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}.")
    return frame("matrix", "TCP conformance matrix", sub, "".join(out), ctx)


def matrix_markdown(results: list[Result], catalog: dict) -> str:
    cols = columns(results)
    lines = ["## TCP conformance matrix", ""]
    for s, c in _summary(results):
        lines.append(f"- **{s}**: {verdict_line([r for r in results if r.stack == s])} ("
                     + ", ".join(f"{VERDICTS.get(v, ('', '', ''))[2]} {word(v)} {n}" for v, n in c) + ")")
    lines += ["", "| case | level | " + " | ".join(f"{s} {f}" for s, f in cols) + " |",
              "|---|---|" + "---|" * len(cols)]
    for row in rows(results, catalog):
        cells = []
        for c in cols:
            rs = row.cells.get(c, [])
            cells.append(f"{VERDICTS.get(worst(rs), ('', '', ''))[2]} {cell_text(rs)}" if rs else "not run")
        lines.append(f"| `{row.case}` | {row.level} | " + " | ".join(cells) + " |")
    failed = [r for r in results if r.verdict not in (PASSED, *DEVIATIONS, "Skipped (capability missing)")]
    if failed:
        lines += ["", "### Not passed", ""]
        for r in sorted(failed, key=lambda r: (r.stack, r.case, r.test, r.family)):
            lines.append(f"- {VERDICTS.get(r.verdict, ('', '', ''))[2]} `{r.case}` {r.stack} {r.family} "
                         f"`{r.test}`: {first_line(r.message)}")
    deviations = [r for r in results if r.verdict in DEVIATIONS]
    if deviations:
        lines += ["", "### Documented deviations", ""]
        for r in sorted(deviations, key=lambda r: (ORDER.index(r.verdict), r.stack, r.case, r.test, r.family)):
            lines.append(f"- {VERDICTS[r.verdict][2]} {word(r.verdict)} `{r.case}` {r.stack} {r.family} "
                         f"`{r.test}`: {first_line(r.message)}")
    return "\n".join(lines) + "\n"


@page("matrix", "conformance matrix")
def matrix_page(ctx: Context) -> dict:
    return {"matrix.html": matrix_html(ctx), "matrix.md": matrix_markdown(ctx.results, ctx.catalog)}


# --- the state x event matrix ----------------------------------------------------------------

def is_cell(case: str) -> bool:
    """A generated case of the state x event matrix: matrix.<state>.<event>.<position>."""
    return case.startswith("matrix.") and case.count(".") == 3


def _grid(results: list[Result]) -> dict:
    """(state, event) -> [Result], for the matrix's cells."""
    from .matrix import EVENTS
    from .rules import STATES
    by_slug = {st.lower(): st for st in STATES}
    out: dict = {(st, ev): [] for st in STATES for ev in EVENTS}
    for r in results:
        _, state, event, _ = r.case.split(".")
        if (by_slug.get(state), event) in out:
            out[(by_slug[state], event)].append(r)
    return out


def _anchor(state: str, event: str) -> str:
    return f"cell-{state.lower()}-{event}"


def _grid_html(results: list[Result], ctx: Context, title: str) -> str:
    """States down, events across: each cell coloured by its worst verdict,
    with its counts, linking to the list of its cases below."""
    from .matrix import EVENTS
    grid = _grid(results)
    head = "<tr><th>state \\ event</th>" + "".join(
        f'<th title="{html.escape(EVENTS[e][2])}">{html.escape(e)}</th>' for e in EVENTS) + "</tr>"
    body = []
    for state in dict.fromkeys(st for st, _ in grid):
        cells = []
        for event in EVENTS:
            rs = grid[(state, event)]
            if not rs:
                cells.append('<td class="v none">not run</td>')
                continue
            lines = "<br>".join(html.escape(f"{word(v)} {n}") for v, n in counts(rs))
            cells.append(f'<td class="v {css(worst(rs))}"><a href="#{_anchor(state, event)}">{lines}</a></td>')
        body.append(f"<tr><th>{html.escape(state)}</th>{''.join(cells)}</tr>")
    return (f"<h2>{html.escape(title)}</h2><p>{html.escape(verdict_line(results)) if results else ''}</p>"
            f'<table class="grid"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>')


def _departures(results: list[Result]) -> str:
    """Each stack's documented deviations, grouped by the rule they depart
    from (a profile's [[rule]] entries speak per rule, not per cell)."""
    out = []
    for stack in stacks_of(results):
        by_rule: dict = {}
        for r in results:
            if r.stack == stack and r.verdict in DEVIATIONS:
                m = re.search(r"Documented deviation from (\S+) \(a (\w+) rule\)", r.message)
                rule = m.group(1) if m else "?"
                rows_ = re.findall(r"\(([a-z0-9]+\.[a-z0-9-]+): ", r.message)
                key = (rule, rows_[0] if rows_ else "")
                by_rule.setdefault(key, []).append(r)
        if not by_rule:
            continue
        items = "".join(
            f"<tr><td>{rfc_link(rule)}</td><td><code>{html.escape(row)}</code></td><td>{len(rs)}</td>"
            f"<td>{badge(worst(rs))}</td><td class=\"small\">{html.escape(first_line(rs[0].message))}</td></tr>"
            for (rule, row), rs in sorted(by_rule.items(), key=lambda kv: -len(kv[1])))
        out.append(f"<h3>{html.escape(stack)}</h3><table><thead><tr><th>rule</th><th>row</th><th>tests</th>"
                   f"<th>level</th><th>the stack instead (one example)</th></tr></thead><tbody>{items}</tbody></table>")
    return ("<h2>Documented deviations, by rule</h2><p class=\"small\">A profile's <code>[[rule]]</code> entry "
            "documents a departure from one row of harness/rules.py once; every cell that row decides follows.</p>"
            + "".join(out)) if out else ""


def _cell_lists(results: list[Result], ctx: Context) -> str:
    """Below the grids: every cell's cases, one row per case (position),
    the verdicts by stack and family, each linked to its Allure page."""
    from .matrix import EVENTS
    cols = columns(results)
    grid = _grid(results)
    out = ["<h2>The cells and their cases</h2>"]
    for (state, event), rs in grid.items():
        if not rs:
            continue
        by_case: dict = {}
        for r in rs:
            by_case.setdefault(r.case, {}).setdefault((r.stack, r.family), []).append(r)
        head = "<tr><th>case</th><th>requirements</th>" + "".join(
            f"<th>{html.escape(st)}<br>{html.escape(f)}</th>" for st, f in cols) + "</tr>"
        body = []
        for cid in sorted(by_case):
            c = ctx.catalog.get(cid)
            title = c.title if c else rs[0].title
            reqs = c.requirements if c else ()
            body.append(f'<tr id="{html.escape(cid)}"><td><code>{html.escape(cid.split(".", 2)[2])}</code><br>'
                        f'<span class="small">{html.escape(title)}</span></td>'
                        f'<td class="mono">{"<br>".join(requirement_link(q) for q in reqs)}</td>'
                        + "".join(verdict_cell(by_case[cid].get(k, []), ctx) for k in cols) + "</tr>")
        out.append(f'<h3 id="{_anchor(state, event)}">{html.escape(state)} x {html.escape(EVENTS[event][2])} '
                   f'<span class="small">({html.escape(cell_text(rs))})</span></h3>'
                   f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>")
    return "".join(out)


def states_html(ctx: Context) -> str:
    cells = [r for r in ctx.results if is_cell(r.case)]
    stacks = stacks_of(cells)
    body = ['<p>Every RFC 9293 state meets every kind of segment, at the sequence and acknowledgment numbers where '
            'implementations go wrong. The cases are generated from one table, <code>harness/rules.py</code> '
            '(RFC 9293 §3.10.7 with RFC 5961); each names the rule that decides it. A grid cell counts the verdicts '
            'of its cases (positions, openings, families) and opens their list.</p>', legend(levels=False)]
    if not cells:
        body.append("<p>No results of the state x event matrix: run <code>pytest conformance/ -m matrix</code>.</p>")
    if len(stacks) > 1:
        body.append(_grid_html(cells, ctx, f"All stacks ({', '.join(stacks)})"))
    for st in stacks:
        body.append(_grid_html([r for r in cells if r.stack == st], ctx, st))
    body += [_departures(cells), _cell_lists(cells, ctx)]
    sub = (f"{len(cells)} results of {len({r.case for r in cells})} cases from {html.escape(', '.join(ctx.sources))}; "
           f"built {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.")
    return frame("states", "State x event matrix", sub, "".join(body), ctx)


def states_markdown(results: list[Result]) -> str:
    from .matrix import EVENTS
    cells = [r for r in results if is_cell(r.case)]
    lines = ["## State x event matrix", ""]
    for st in stacks_of(cells):
        rs = [r for r in cells if r.stack == st]
        grid = _grid(rs)
        lines += [f"### {st}: {verdict_line(rs)}", "", "| state | " + " | ".join(EVENTS) + " |",
                  "|---|" + "---|" * len(EVENTS)]
        for state in dict.fromkeys(s_ for s_, _ in grid):
            row = []
            for event in EVENTS:
                c = grid[(state, event)]
                row.append(f"{VERDICTS.get(worst(c), ('', '', ''))[2]} {len(c)}" if c else "-")
            lines.append(f"| {state} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


@page("states", "state x event matrix")
def states_page(ctx: Context) -> dict:
    return {"states.html": states_html(ctx), "states.md": states_markdown(ctx.results)}


# --- the seed-claims page -------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """Where a result shows a claimed value: a value of the stack's profile
    (`profile`, in the profile's unit) or one the case measured (`measured`,
    seconds for times), and how it compares with the note's value: `value`,
    `count` (how many a list holds), `times` (times since the first
    transmission: compared as the intervals between them), `intervals`,
    `first` and `cap` (the note's first and last interval)."""

    kind: str
    key: str
    how: str = "value"


@dataclass(frozen=True)
class Claimed:
    label: str
    value: object           # a number, or a list of intervals
    unit: str               # "s", or "" for a count
    sources: tuple


# Claims of the seed note that state a value, and where the results show the stack's.
CLAIMED_VALUES = {
    "S2": Claimed("retransmission intervals", [1, 3, 6, 12, 24, 48, 64], "s",
                  (Source("profile", "initial_rto", "first"), Source("profile", "rto_max", "cap"),
                   Source("measured", "synack_retransmissions", "times"),
                   Source("measured", "retransmission_intervals", "intervals"))),
    "S4": Claimed("keep-alive idle time", 7200, "s",
                  (Source("profile", "keepalive_time"), Source("measured", "keepalive_time"))),
    "S5": Claimed("TIME-WAIT lasts 2 MSL (MSL = 2 min, RFC 9293 §3.4.2)", 240, "s",
                  (Source("profile", "time_wait"), Source("measured", "time_wait"))),
    "S13": Claimed("SYN-ACK retransmissions (tcp_synack_retries)", 5, "",
                   (Source("profile", "synack_retries"), Source("measured", "synack_retransmissions", "count"))),
    "S21": Claimed("tcp_fin_timeout: how long an orphaned FIN-WAIT-2 lasts", 60, "s",
                   (Source("profile", "fin_timeout"), Source("measured", "fin_wait_2_lasted"))),
}
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _seconds(v: float) -> str:
    return f"{v:g} s" if abs(v - round(v, 3)) < 1e-9 else f"{v:.3f} s"


def _close(seen: float, claimed: float, unit: str) -> bool:
    """Within the suite's default timing tolerance (harness.verdict.Tolerance) for times; equal for counts."""
    if unit != "s":
        return seen == claimed
    from .verdict import Tolerance
    return Tolerance().within(claimed, seen)


def _profile_value(stack: str, key: str, value):
    """A profile value in seconds, with its unit as written ("1000 ms")."""
    p = profile_of(stack)
    unit = (p.values.get(key, {}).get("unit") if p else None) or ""
    if isinstance(value, (int, float)) and unit in UNITS:
        return value * UNITS[unit], f"{value:g} {unit}"
    return value, str(value)


def _intervals(values) -> list | None:
    """Times since a first transmission -> the intervals between transmissions."""
    if not isinstance(values, list) or not values or not all(isinstance(v, (int, float)) for v in values):
        return None
    prev, out = 0.0, []
    for v in values:
        out.append(round(v - prev, 3))
        prev = v
    return out


def judge(c: Claimed, src: Source, value) -> tuple[str, bool | None]:
    """(the value in words, with units; whether it is the note's: None when
    it cannot be compared)."""
    claimed = c.value
    if src.how in ("times", "intervals"):
        seen = _intervals(value) if src.how == "times" else value
        if not isinstance(seen, list) or not isinstance(claimed, list):
            return str(value), None
        words = ", ".join(f"{x:g}" for x in seen) + f" {c.unit}".rstrip()
        for n, (x, y) in enumerate(zip(seen, claimed), 1):
            if not _close(x, y, c.unit):
                return f"intervals {words}: interval {n} is {x:g} s, the note's {y:g} s", False
        return f"intervals {words}", True
    if src.how == "count":
        if not isinstance(value, list):
            return str(value), None
        return f"{len(value)} ({', '.join(f'{x:g}' for x in value)} s after the first)", len(value) == claimed
    if not isinstance(value, (int, float)):
        return str(value), None
    target = claimed[0] if src.how == "first" else claimed[-1] if src.how == "cap" else claimed
    if isinstance(target, list):
        return str(value), None
    shown = _seconds(value) if c.unit == "s" else f"{value:g}"
    return shown, _close(value, target, c.unit)


def claim_values(claim: str, results: list[Result]) -> list[dict]:
    """What the SUT showed for a claim that states a value: one entry per
    (stack, test, source, value), with the families it was seen in, whether
    it is a variant (the test set a value the claim is about, or runs with
    parameters other than the default) and whether it is the note's value."""
    c = CLAIMED_VALUES[claim]
    about = {s.key for s in c.sources if s.kind == "profile"}
    seen: dict = {}
    for r in results:
        for src in c.sources:
            if src.key not in (r.observed.get(src.kind) or {}):
                continue
            raw = r.observed[src.kind][src.key]
            value, as_written = _profile_value(r.stack, src.key, raw) if src.kind == "profile" else (raw, None)
            k = (r.stack, r.case, r.test, src, json.dumps(raw))
            if k not in seen:
                changed = sorted(about & set(_changed_names(r)))
                variant = (r.variant not in ("", "default")) or bool(changed)
                shown, holds = judge(c, src, value)
                if as_written and as_written != shown and src.how == "value":
                    shown = f"{shown} ({as_written})"
                elif as_written and src.how in ("first", "cap"):
                    shown = f"{_seconds(value)}" + (f" ({as_written})" if as_written != _seconds(value) else "")
                seen[k] = {"stack": r.stack, "case": r.case, "test": r.test, "kind": src.kind, "key": src.key,
                           "how": src.how, "value": raw, "shown": shown, "families": [], "results": [],
                           "variant": variant, "changed": changed or ([r.variant] if variant else []),
                           "holds": None if variant else holds}
            seen[k]["families"].append(r.family)
            seen[k]["results"].append(r)
    return sorted(seen.values(), key=lambda e: (e["stack"] != "linux", e["stack"], e["variant"], e["kind"] != "profile",
                                                e["key"], e["test"]))


def _changed_names(r: Result) -> set:
    """The profile values a test set, by name: set directly, or through
    their sysctl (a marker, --sysctl)."""
    names = set(r.changed)
    p = profile_of(r.stack)
    if p:
        names |= {n for n, v in p.values.items() if v.get("sysctl") in r.changed}
    return names


def claim_verdict(entries: list[dict]) -> bool | None:
    """The stack's default against the note: False if any default value
    differs, True if all that can be compared hold, None without any."""
    judged = [e["holds"] for e in entries if e["holds"] is not None]
    return None if not judged else all(judged)


def _value(v) -> str:
    return ", ".join(str(x) for x in v) if isinstance(v, list) else str(v)


def claim_cases(claim: str, results: list[Result], catalog: dict) -> dict:
    """{case id: [results]} of the cases that list the claim."""
    out: dict = {cid: [] for cid, c in catalog.items() if claim in c.seed}
    for r in results:
        if claim in r.seeds:
            out.setdefault(r.case, []).append(r)
    return out


def _said(c: Claimed) -> str:
    if isinstance(c.value, list):
        return ", ".join(f"{x:g}" for x in c.value) + f" {c.unit}".rstrip()
    return f"{c.value:g} {c.unit}".rstrip()


def claims_html(claims: list, ctx: Context) -> str:
    results, catalog = ctx.results, ctx.catalog
    stacks = stacks_of(results)
    cols = columns(results)
    index, parts = [], []
    for cid, text, observe in claims:
        cases = claim_cases(cid, results, catalog)
        mark = ('<span class="missing">no case yet</span>' if not cases else
                "<br>".join((verdict_cell(rs, ctx, tag="span", variants=False) if rs else
                             '<span class="badge none">not run</span>') + f' <a href="matrix.html#{html.escape(case)}">'
                            f"<code>{html.escape(case)}</code></a>" for case, rs in cases.items()))
        mark = mark.replace('<span class="v ', '<span class="badge v ')
        value = ""
        if cid in CLAIMED_VALUES:
            c = CLAIMED_VALUES[cid]
            entries = claim_values(cid, [r for rs in cases.values() for r in rs])
            verdicts = []
            for s in stacks:
                v = claim_verdict([e for e in entries if e["stack"] == s])
                verdicts.append(f"{html.escape(s)}: " + ('<span class="holds">as the note says</span>' if v else
                                                          '<span class="differs">differs from the note</span>'
                                                          if v is False else
                                                          '<span class="variant">not observed with the defaults'
                                                          '</span>'))
            value = f"the note: <b>{html.escape(_said(c))}</b><br>" + "<br>".join(verdicts)
        index.append(f'<tr><td><a href="#{cid}">{cid}</a></td><td>{html.escape(text)}</td><td>{mark}</td>'
                     f"<td>{value}</td></tr>")
        block = [f'<div class="claim" id="{cid}"><h3>{cid}: {html.escape(text)}</h3>',
                 f'<div class="small">A case must observe: {html.escape(observe)}</div>']
        if not cases:
            block.append('<p class="missing">no case yet</p>')
        else:
            head = "<tr><th>case</th>" + "".join(f"<th>{html.escape(s)}<br>{f}</th>" for s, f in cols) + "</tr>"
            trs = []
            for case, rs in cases.items():
                title = catalog[case].title if case in catalog else (rs[0].title if rs else "")
                cells = "".join(verdict_cell([r for r in rs if r.stack == s and r.family == f], ctx) for s, f in cols)
                trs.append(f'<tr><td><a href="matrix.html#{html.escape(case)}"><code>{html.escape(case)}</code></a>'
                           f'<br><span class="small">{html.escape(title)}</span></td>{cells}</tr>')
            block.append(f"<table><thead>{head}</thead><tbody>{''.join(trs)}</tbody></table>")
        if cid in CLAIMED_VALUES:
            c = CLAIMED_VALUES[cid]
            entries = claim_values(cid, [r for rs in cases.values() for r in rs])
            trs = []
            for e in entries:
                verdict_ = ('<span class="holds">as the note says</span>' if e["holds"] else
                            '<span class="differs">differs from the note</span>' if e["holds"] is False else
                            f'<span class="variant">variant ({html.escape(", ".join(e["changed"]))}): '
                            "not the stack's default, not compared</span>" if e["variant"] else "")
                links = " ".join(f'<a href="{html.escape(h)}">{html.escape(r.family)}</a>'
                                 for r in e["results"] if (h := ctx.allure_href(r)))
                what = "documented" if e["kind"] == "profile" else "measured"
                trs.append(f"<tr><td>{html.escape(e['stack'])}</td><td class=\"mono\">{html.escape(e['test'])}<br>"
                           f'<span class="small">{links or ", ".join(e["families"])}</span></td>'
                           f"<td>{what}: <code>{html.escape(e['key'])}</code></td>"
                           f"<td>{html.escape(e['shown'])}</td><td>{verdict_}</td></tr>")
            observed = (f"<table><thead><tr><th>stack</th><th>test (its pages)</th><th>value</th><th>the stack's"
                        f"</th><th>against the note</th></tr></thead><tbody>{''.join(trs)}</tbody></table>" if trs else
                        '<p class="missing">not observed yet: no result records it</p>')
            block.append(f"<p><b>The note says</b> ({html.escape(c.label)}): <b>{html.escape(_said(c))}</b>. "
                         f'<span class="small">Only the stack\'s defaults are compared; times within the suite\'s '
                         f"default tolerance (the larger of 25 ms and 12.5 %) count as the note's.</span></p>"
                         f"{observed}")
        block.append("</div>")
        parts.append("".join(block))
    summary = (f"<table><thead><tr><th>claim</th><th>the note says</th><th>its cases</th>"
               f"<th>the value: the note's, and the stack's default against it</th></tr></thead>"
               f"<tbody>{''.join(index)}</tbody></table>")
    covered = sum(1 for cid, _, _ in claims if claim_cases(cid, results, catalog))
    sub = (f"{covered} of {len(claims)} claims of the seed note have a case; {len(results)} results from "
           f"{html.escape(', '.join(ctx.sources))}. Stacks: {html.escape(', '.join(stacks) or 'none')}.")
    return frame("claims", "The seed note's claims, checked on the wire", sub, legend(levels=False) + summary
                 + "".join(parts), ctx)


def claims_markdown(claims: list, results: list[Result], catalog: dict) -> str:
    lines = ["## The seed note's claims", "", "| claim | cases | verdicts | the note says | the stack's default |",
             "|---|---|---|---|---|"]
    for cid, text, _ in claims:
        cases = claim_cases(cid, results, catalog)
        verdicts = "; ".join(f"{case}: {cell_text(rs)}" for case, rs in cases.items()) if cases else "**no case yet**"
        said = observed = ""
        if cid in CLAIMED_VALUES:
            c = CLAIMED_VALUES[cid]
            said = f"{c.label}: {_said(c)}"
            values = [e for e in claim_values(cid, [r for rs in cases.values() for r in rs]) if not e["variant"]]
            observed = "; ".join(f"{e['stack']} {e['key']} {e['shown']}"
                                 + (" (as the note says)" if e["holds"] else " (differs)" if e["holds"] is False
                                    else "") for e in values) or "not observed yet"
        lines.append(f"| {cid} {text} | {', '.join(f'`{c}`' for c in cases) or '—'} | {verdicts} | {said} | "
                     f"{observed} |")
    return "\n".join(lines) + "\n"


@page("claims", "seed claims")
def claims_page(ctx: Context) -> dict:
    if not CLAIMS.exists():
        raise ReportError(f"{CLAIMS}: the seed claims are missing")
    claims = parse_claims(CLAIMS.read_text())
    return {"claims.html": claims_html(claims, ctx), "claims.md": claims_markdown(claims, ctx.results, ctx.catalog)}


# --- the requirement coverage page (harness/coverage.py) ----------------------------------------

@page("coverage", "requirement coverage")
def coverage_page(ctx: Context) -> dict:
    from . import coverage
    return coverage.page_files(ctx)


# --- the Allure HTML report -----------------------------------------------------------------

GTAG = re.compile(r"\s*<script async src=\"https://www\.googletagmanager\.com/gtag/js\?id=[^\"]*\"></script>"
                  r"\s*<script>\s*window\.dataLayer[\s\S]*?</script>")


def strip_analytics(text: str) -> str:
    """index.html without the Google Analytics tag Allure 3 hard-codes."""
    out = GTAG.sub("\n", text)
    if "googletagmanager" in out or "gtag(" in out:
        raise ReportError("the report's index.html still loads Google Analytics after stripping: "
                          "the Allure version changed its tag; update GTAG in harness/report.py")
    return out


def merge_environment(texts: list[tuple[str, str]]) -> str:
    """One environment.properties from several runs [(stack, text)]: a key
    with the same value everywhere once, others once per stack as
    `<stack>.<key>`."""
    values: dict = {}
    for stack, text in texts:
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values.setdefault(key, {}).setdefault(value, []).append(stack)
    out = []
    for key, by_value in values.items():
        if len(by_value) == 1 and len(next(iter(by_value.values()))) == len(texts):
            out.append(f"{key}={next(iter(by_value))}")
        else:
            for value, stacks in by_value.items():
                for stack in dict.fromkeys(stacks):   # a properties key ends at a space, ':' or '='
                    out.append(f"{stack}.{key}={value}")
    return "\n".join(out) + "\n"


def _merged(dirs: list[Path], into: Path) -> Path:
    """One results directory from several (hard links where possible), with
    one environment file: Allure keeps only the last directory's otherwise."""
    envs = []
    for d in dirs:
        env = d / "environment.properties"
        if env.exists():
            text = env.read_text()
            stack = next((line[6:] for line in text.splitlines() if line.startswith("stack=")), d.name)
            envs.append((stack, text))
        for p in d.iterdir():
            if not p.is_file() or p.name in ("environment.properties", "categories.json") or (into / p.name).exists():
                continue
            try:
                os.link(p, into / p.name)
            except OSError:
                shutil.copy2(p, into / p.name)
    if envs:
        (into / "environment.properties").write_text(merge_environment(envs))
    if CATEGORIES.exists():
        shutil.copy2(CATEGORIES, into / "categories.json")
    return into


def build_html(dirs: list[Path], results: list[Result], out: Path, pages: list[Path] = ()) -> Path:
    """The Allure report of the results in OUT (html/), with `pages` (the
    pages built beside it) as its global attachments."""
    if not ALLURE.exists():
        raise ReportError("Allure 3 is not installed: run python3 -m harness.setup --report (needs Node.js 20+ and npm)")
    if out.exists():
        shutil.rmtree(out)
    env = {**os.environ, "TCPCONF_STACKS": ",".join(stacks_of(results)), "TCPCONF_REPORT_OUTPUT": str(out),
           "TCPCONF_REPORT_HISTORY": str(out.parent / "history" / "history.jsonl"),
           "TCPCONF_REPORT_NAME": f"tcpconf · {report_name(results)}",
           "TCPCONF_REPORT_PAGES": "\n".join(str(p) for p in pages)}
    with tempfile.TemporaryDirectory(prefix="tcpconf-results-", dir=REPORTS) as tmp:
        source = [str(dirs[0])] if len(dirs) == 1 else [str(_merged(dirs, Path(tmp)))]
        p = subprocess.run([str(ALLURE), "generate", *source, "-c", str(REPORTS / "allurerc.mjs")],
                           env=env, cwd=REPORTS, capture_output=True, text=True)
    if p.returncode != 0 or not (out / "index.html").exists():
        raise ReportError(f"allure generate failed (exit {p.returncode}): {(p.stderr or p.stdout).strip()[-500:]}")
    index = out / "index.html"
    index.write_text(strip_analytics(index.read_text()))
    return index


def build_per_stack(dirs: list[Path], results: list[Result], out: Path, pages: list[Path]) -> Path:
    """One Allure report per stack (OUT/<stack>/index.html), from the
    results directories that hold that stack's results, and OUT/index.html
    listing them with each stack's verdict."""
    by_stack: dict = {}
    for r in results:
        by_stack.setdefault(r.stack, set()).add(r.directory)
    mixed = [d for d in dirs if sum(d in ds for ds in by_stack.values()) > 1]
    if mixed:
        raise ReportError(f"too large for one file, and {mixed[0]} holds several stacks' results: "
                          f"report them one directory per stack")
    if out.exists():
        shutil.rmtree(out)
    rows = []
    for stack in stacks_of(results):
        mine = [r for r in results if r.stack == stack]
        build_html([d for d in dirs if d in by_stack[stack]], mine, out / stack_slug(stack), pages)
        rows.append(f'<li><a href="{stack_slug(stack)}/index.html">{html.escape(stack)}</a>: '
                    f'{html.escape(verdict_line(mine))}</li>')
    index = out / "index.html"
    index.write_text(f'<!doctype html><html><head><meta charset="utf-8"><title>tcpconf: {len(rows)} stacks'
                     f'</title></head><body><h1>tcpconf: one Allure report per stack</h1><ul>{"".join(rows)}</ul>'
                     f'<p>' + " · ".join(f'<a href="../{p.name}">{p.stem}</a>' for p in pages) + '</p></body></html>')
    return index


def copy_pcaps(results: list[Result], into: Path) -> int:
    """Each test's capture under the name its page links to (../pcaps/NAME)."""
    if into.exists():
        shutil.rmtree(into)
    n = 0
    for r in results:
        if r.pcap and r.pcap[0].is_file():
            into.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(r.pcap[0], into / r.pcap[1])
            n += 1
    return n


# --- command line ---------------------------------------------------------------------------

def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ("html", *PAGES)
    command = argv.pop(0) if argv and argv[0] in commands else "all"
    p = argparse.ArgumentParser(
        prog="python -m harness.report" + ("" if command == "all" else f" {command}"),
        description="Build the reports of one or several runs: the Allure HTML report (OUT/html/, with each "
                    "test's capture in OUT/pcaps/) and the pages beside it ("
                    + ", ".join(f"{title}: OUT/{name}.html" for name, (title, _) in PAGES.items())
                    + "). Subcommands build one of them: " + ", ".join(commands) + ".")
    p.add_argument("results", nargs="*", type=Path, default=[RESULTS],
                   help="Allure results directories (default reports/allure-results); several merge into one view")
    p.add_argument("--out", type=Path, default=REPORTS, help="where the pages go (default reports/)")
    a = p.parse_args(argv)
    dirs = [d.resolve() for d in a.results]
    out = a.out.resolve()
    sources = [str(d.relative_to(ROOT)) if d.is_relative_to(ROOT) else str(d) for d in dirs]
    failed = False
    try:
        results = load_results(dirs)
        if not results:
            raise ReportError(f"no conformance results in {', '.join(sources)}: run the suite with "
                              f"--alluredir={sources[0]} first")
        out.mkdir(parents=True, exist_ok=True)
        html_report = command in ("all", "html") or (out / "html" / "index.html").exists()
        catalog = load_catalog()

        def build_pages(report: str | None, quiet: bool = False) -> list[Path]:
            ctx, built = Context(results, catalog, sources, report), []
            for name, (title, builder) in PAGES.items():       # first: the report carries them
                if command not in ("all", name):
                    continue
                files = builder(ctx)
                for fname, text in files.items():
                    (out / fname).write_text(text)
                built += [out / f for f in files if f.endswith(".html")]
                if not quiet:
                    print(f"report: {title}: {', '.join(str(out / f) for f in files)} ({len(results)} results, "
                          f"stacks {', '.join(stacks_of(results))})")
            return built

        built = build_pages("html/index.html" if html_report else None)
        if command in ("all", "html"):
            started = time.monotonic()
            try:
                try:
                    index = build_html(dirs, results, out / "html", built)
                    what = "one file"
                except ReportError as e:
                    if "too large" not in str(e) or len(stacks_of(results)) < 2:
                        raise
                    # Allure's single file holds a string the size of the whole report
                    # (a JavaScript string: under 512 MB): several stacks' full runs
                    # exceed it. One report per stack, and an index of them.
                    built = build_pages("html/{stack}/index.html", quiet=True)
                    index = build_per_stack(dirs, results, out / "html", built)
                    what = f"too large for one file: one per stack in {out / 'html'}/<stack>/, listed here,"
                n = copy_pcaps(results, out / "pcaps")
                print(f"report: {index} ({time.monotonic() - started:.1f} s; {what} opens from disk, with "
                      f"{', '.join(p.name for p in built) or 'no page'} inside; {n} captures in {out / 'pcaps'})")
            except ReportError as e:
                if command == "html":
                    raise
                print(f"report: {e}", file=sys.stderr)
                failed = True
    except ReportError as e:
        print(f"report: {e}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
