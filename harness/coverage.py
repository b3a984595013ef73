"""The coverage page: every requirement the suite knows, with the cases that
check it and their verdicts on each stack. A page of harness/report.py
(registered as "coverage": `python -m harness.report coverage [DIR ...]`
builds it alone, the report's default command beside the others).

Rules of this file:
- The requirements come from cases/requirements/*.toml: rfc9293.toml holds
  every numbered requirement of RFC 9293 (level, a paraphrase, testable Y on
  the wire, A with the SUT's application, N not observable, and for N why);
  others.toml the items of the other RFCs. Coverage is counted from the
  catalog: a requirement is covered when a case of cases/*.toml names it,
  whoever wrote the case and whether or not it ran; results only add
  verdicts. Every requirement id the catalog names appears, listed or not.
- Verdicts are report.py's (the Allure categories); this file only groups
  results by requirement and renders with report.py's page helpers (frame,
  verdict_cell, legend, requirement_link).
- Pure functions from (requirements, catalog, results) to text; only
  `load_requirements` reads files.
"""
from __future__ import annotations

import html
import re
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import report
from .report import (DEVIATIONS, FAILURES, PASSED, VERDICTS, Context, Result, ReportError, cell_text, css,
                     requirement_link, stacks_of, worst)

REQUIREMENTS = report.REQUIREMENT_TABLES
MAIN = "RFC 9293"
TESTABLE = {"Y": "on the wire", "A": "needs the SUT's application", "N": "not observable"}
KEYS = {"id", "section", "level", "text", "testable", "why"}
ID_RE = re.compile(r"^RFC(\d+)/([A-Za-z0-9.\-]+)$")
SKIPPED = "Skipped (capability missing)"
# A requirement's outcome on one stack, from the verdicts of its cases' tests there.
OUTCOMES = ("passed", "deviation", "failed", "skipped")


@dataclass
class Requirement:
    id: str
    rfc: str                     # "RFC 9293"
    text: str
    level: str = ""
    section: str = ""
    testable: str = ""           # Y, A, N; "" for the other RFCs' items
    why: str = ""
    listed: bool = True          # in cases/requirements; False: only the catalog names it

    @property
    def number(self) -> str:
        return self.id.partition("/")[2]


@dataclass
class Coverage:
    requirement: Requirement
    cases: dict = field(default_factory=dict)       # case id -> [Result]

    @property
    def covered(self) -> bool:
        return bool(self.cases)


def rfc_of(rid: str) -> str | None:
    m = ID_RE.match(rid)
    return f"RFC {m.group(1)}" if m else None


def load_requirements(directory: Path = REQUIREMENTS) -> tuple[list[Requirement], dict]:
    """(RFC 9293's requirements, {rfc: title}), the other RFCs' items among the
    requirements too; ReportError naming the file and entry if malformed."""
    out: list[Requirement] = []
    titles: dict = {}
    files = sorted(Path(directory).glob("*.toml"))
    if not files:
        raise ReportError(f"{directory}: no requirement lists (*.toml)")
    for path in files:
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ReportError(f"{path.name}: not valid TOML: {e}") from None
        if "rfc" in data and isinstance(data["rfc"], str):
            titles[data["rfc"]] = data.get("title", "")
        for r in data.get("rfc", []) if isinstance(data.get("rfc"), list) else []:
            titles[r["rfc"]] = r.get("title", "")
        for entry in data.get("requirement", []) + data.get("item", []):
            rid = entry.get("id", "?")
            bad = set(entry) - KEYS
            if bad or not ID_RE.match(str(rid)) or not isinstance(entry.get("text"), str):
                raise ReportError(f"{path.name}: entry {rid!r}: needs id (RFC<n>/<ref>) and text"
                                  + (f"; unknown key {sorted(bad)[0]!r}" if bad else ""))
            if entry.get("testable", "") not in ("", *TESTABLE):
                raise ReportError(f"{path.name}: entry {rid!r}: testable is Y, A or N")
            if entry.get("testable") == "N" and not entry.get("why"):
                raise ReportError(f"{path.name}: entry {rid!r}: a requirement not observable says why (why = ...)")
            out.append(Requirement(rid, rfc_of(rid), entry["text"], entry.get("level", ""), entry.get("section", ""),
                                   entry.get("testable", ""), entry.get("why", "")))
    seen = set()
    for r in out:
        if r.id in seen:
            raise ReportError(f"requirement {r.id} is listed twice in {directory}")
        seen.add(r.id)
    return out, titles


def coverage(requirements: list[Requirement], catalog: dict, results: list[Result]) -> list[Coverage]:
    """One Coverage per requirement: the listed ones in their order, then
    every other id the catalog (or a result) names, by RFC and id."""
    by_id = {r.id: Coverage(r) for r in requirements}
    extra: dict = {}

    def entry(rid: str, title: str) -> Coverage | None:
        if rid in by_id:
            return by_id[rid]
        if rfc_of(rid) is None:
            return None
        if rid not in extra:
            extra[rid] = Coverage(Requirement(rid, rfc_of(rid), title, listed=False))
        return extra[rid]

    for cid, case in catalog.items():
        for rid in case.requirements:
            cov = entry(rid, case.title)
            if cov is not None:
                cov.cases.setdefault(cid, [])
    for r in results:
        for rid in r.requirements:
            cov = entry(rid, r.title)
            if cov is not None:
                cov.cases.setdefault(r.case, []).append(r)
    ordered = sorted(extra.values(), key=lambda c: (int(c.requirement.rfc.split()[1]), _natural(c.requirement.id)))
    return list(by_id.values()) + ordered


def _natural(text: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


def outcome(verdicts: list) -> str:
    """One requirement on one stack: failed if any test failed (a failure,
    a timing failure, a harness error); else a documented deviation if any
    departs as documented; else passed if any passed; else skipped."""
    if any(v in FAILURES or v not in VERDICTS for v in verdicts):
        return "failed"
    if any(v in DEVIATIONS for v in verdicts):
        return "deviation"
    if PASSED in verdicts:
        return "passed"
    return "skipped"


def totals(covs: list[Coverage], stacks: list[str]) -> dict:
    """Counts for the head of the page: per testability class of RFC 9293
    (listed, covered, and per stack: how many have results there, and of
    those how many passed, depart as documented, failed, or were only
    skipped), per other RFC (items, covered)."""
    rules = f"{MAIN} (rules without a number)"
    out: dict = {"classes": {}, "rfcs": {rules: [0, 0]}}
    for t in TESTABLE:
        mine = [c for c in covs if c.requirement.rfc == MAIN and c.requirement.testable == t]
        per_stack = {}
        for s in stacks:
            found = [outcome(v) for v in ([r.verdict for rs in c.cases.values() for r in rs if r.stack == s]
                                          for c in mine) if v]
            per_stack[s] = {"run": len(found), **{o: found.count(o) for o in OUTCOMES}}
        out["classes"][t] = {"listed": len(mine), "covered": sum(c.covered for c in mine), "stacks": per_stack}
    for c in covs:
        rfc = c.requirement.rfc
        if rfc == MAIN and c.requirement.listed:
            continue
        key = rules if rfc == MAIN else rfc
        n = out["rfcs"].setdefault(key, [0, 0])
        n[0] += 1
        n[1] += c.covered
    return out


def _stack_counts(n: dict) -> str:
    return (f"{n['run']}: {n['passed']} passed, {n['deviation']} deviations, {n['failed']} failed, "
            f"{n['skipped']} skipped")


# --- rendering ----------------------------------------------------------------------------------

def _cases_html(cov: Coverage, catalog: dict) -> str:
    if not cov.cases:
        why = cov.requirement.why or ("no case yet" if cov.requirement.testable != "N" else "")
        return f"<span class=\"{'small' if cov.requirement.why else 'missing'}\">{html.escape(why)}</span>"
    return "<br>".join(f"<code title=\"{html.escape(catalog[c].title if c in catalog else '')}\">{html.escape(c)}</code>"
                       for c in cov.cases)


def _table(covs: list[Coverage], ctx: Context, stacks: list[str], main: bool) -> str:
    catalog = ctx.catalog
    head = ("<tr><th>requirement</th>" + ("<th>level</th><th>T</th>" if main else "")
            + "<th>what it asks</th><th>cases</th>" + "".join(f"<th>{html.escape(s)}</th>" for s in stacks) + "</tr>")
    body = []
    for c in covs:
        r = c.requirement
        ref = f"<br><span class=\"small\">§{html.escape(r.section)}</span>" if r.section else ""
        results = [x for rs in c.cases.values() for x in rs]
        cells = "".join(report.verdict_cell([x for x in results if x.stack == s], ctx) if c.covered or results
                        else '<td class="v none"></td>' for s in stacks)
        text = html.escape(r.text) + ("" if r.listed else " <span class=\"small\">(named by its cases)</span>")
        body.append(f"<tr id=\"{html.escape(r.id)}\"><td class=\"mono\">{requirement_link(r.id)}{ref}</td>"
                    + (f"<td>{html.escape(r.level)}</td><td title=\"{TESTABLE.get(r.testable, '')}\">"
                       f"{html.escape(r.testable)}</td>" if main else "")
                    + f"<td>{text}</td><td>{_cases_html(c, catalog)}</td>{cells}</tr>")
    return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def _groups(covs: list[Coverage]) -> list[tuple[str, list[Coverage]]]:
    main = [c for c in covs if c.requirement.rfc == MAIN and c.requirement.listed]
    rules = [c for c in covs if c.requirement.rfc == MAIN and not c.requirement.listed]
    out = [(f"{MAIN}: testable {t} ({TESTABLE[t]})", [c for c in main if c.requirement.testable == t])
           for t in TESTABLE]
    if rules:
        out.append((f"{MAIN}: rules of the event-processing text (no number)", rules))
    others: dict = {}
    for c in covs:
        if c.requirement.rfc != MAIN:
            others.setdefault(c.requirement.rfc, []).append(c)
    out += sorted(others.items(), key=lambda kv: int(kv[0].split()[1]))
    return out


def coverage_html(covs: list[Coverage], titles: dict, ctx: Context) -> str:
    stacks = stacks_of(ctx.results)
    t = totals(covs, stacks)
    head = "<tr><th>requirements</th><th>covered by a case</th>" + "".join(
        f"<th>{html.escape(s)}</th>" for s in stacks) + "</tr>"
    trs = []
    for cls, n in t["classes"].items():
        name = f"{MAIN} {cls} ({TESTABLE[cls]})"
        cov = f"{n['covered']} / {n['listed']}" if cls != "N" else f"— / {n['listed']} (listed with why)"
        trs.append(f"<tr><th>{html.escape(name)}</th><td>{cov}</td>"
                   + "".join(f"<td>{html.escape(_stack_counts(c))}</td>" for c in n["stacks"].values()) + "</tr>")
    for rfc, (listed, covered) in t["rfcs"].items():
        trs.append(f"<tr><th>{html.escape(rfc)}</th><td>{covered} / {listed}</td>"
                   + "<td></td>" * len(stacks) + "</tr>")
    parts = [f"<h2>Totals</h2><table><thead>{head}</thead><tbody>{''.join(trs)}</tbody></table>",
             "<p class=\"small\">Covered: a case of the catalog names the requirement (counted whether or not it "
             "ran). A stack's column, for the requirements with results there: how many passed, how many depart "
             "from it as the stack's profile documents, how many have a failure (an RFC violation, a timing "
             "failure or a harness error), and how many were only skipped (the stack lacks what the cases need; "
             "a variant skipped beside a pass, such as the other family's, does not count). Cells: the verdicts "
             "of every test of the requirement's cases on that stack, both families.</p>", report.legend()]
    for title, group in _groups(covs):
        rfc = group[0].requirement.rfc
        name = f"{title}: {titles[rfc]}" if rfc != MAIN and titles.get(rfc) else title
        covered = sum(c.covered for c in group)
        parts.append(f"<h2 id=\"{html.escape(rfc)}\">{html.escape(name)}</h2><p class=\"small\">{covered} of "
                     f"{len(group)} with a case</p>" + _table(group, ctx, stacks, rfc == MAIN))
    sub = (f"{len(ctx.results)} results from {html.escape(', '.join(ctx.sources))}; built "
           f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}. Stacks: {html.escape(', '.join(stacks) or 'none')}.")
    return report.frame("coverage", "Requirement coverage", sub, "".join(parts), ctx)


def coverage_markdown(covs: list[Coverage], titles: dict, catalog: dict, results: list[Result]) -> str:
    stacks = stacks_of(results)
    t = totals(covs, stacks)
    lines = ["## Requirement coverage", "", "| requirements | covered | " + " | ".join(stacks) + " |",
             "|---|---|" + "---|" * len(stacks)]
    for cls, n in t["classes"].items():
        cov = f"{n['covered']} / {n['listed']}" if cls != "N" else f"listed: {n['listed']}"
        lines.append(f"| {MAIN} {cls} ({TESTABLE[cls]}) | {cov} | "
                     + " | ".join(_stack_counts(c) for c in n["stacks"].values()) + " |")
    for rfc, (listed, covered) in t["rfcs"].items():
        lines.append(f"| {rfc} | {covered} / {listed} | " + " | ".join("" for _ in stacks) + " |")
    for title, group in _groups(covs):
        rfc = group[0].requirement.rfc
        main = rfc == MAIN
        lines += ["", f"### {title}" + (f": {titles[rfc]}" if not main and titles.get(rfc) else ""), "",
                  "| requirement | " + ("level | T | " if main else "") + "what it asks | cases | "
                  + " | ".join(stacks) + " |",
                  "|---|" + ("---|---|" if main else "") + "---|---|" + "---|" * len(stacks)]
        for c in group:
            r = c.requirement
            cases = ", ".join(f"`{x}`" for x in c.cases) or (r.why or "**no case yet**").replace("|", "/")
            cells = []
            for s in stacks:
                rs = [x for xs in c.cases.values() for x in xs if x.stack == s]
                cells.append(f"{VERDICTS.get(worst(rs), ('', '', ''))[2]} {cell_text(rs)}" if rs else
                             ("not run" if c.covered else ""))
            lines.append(f"| `{r.id}` | " + (f"{r.level} | {r.testable} | " if main else "")
                         + f"{r.text.replace('|', '/')} | {cases} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def page_files(ctx: Context) -> dict:
    """The page's files, for report.py's page "coverage"."""
    requirements, titles = load_requirements()
    covs = coverage(requirements, ctx.catalog, ctx.results)
    return {"coverage.html": coverage_html(covs, titles, ctx),
            "coverage.md": coverage_markdown(covs, titles, ctx.catalog, ctx.results)}
