"""The case catalog (cases/*.toml) and the stack profiles (cases/profiles/*.toml).

Rules of this file:
- The catalog says what each case is: its id, title, RFC sections,
  requirement ids, seed claims and level. Tests point at it with
  `@pytest.mark.case(id)`; the report joins results to it by that id.
- A profile says what one stack documents: its numbers (read from the SUT
  where they can be read, e.g. a sysctl in the SUT's namespace), the RFC
  variant it follows where the RFC leaves a choice, and its known
  deviations, each with its reason and the rule it breaks (the case then
  reports xfail with that reason on that stack, and stays strict elsewhere);
  a deviation may be limited to some tests, families or parameter values.
- A value's `scale` converts the stack's tunable to the value's unit
  (value = tunable * scale), so cases see one unit on every stack.
- A profile may start from another (`base = "linux"`) and state only what
  differs, e.g. for another version of the same kernel.
- The state x event matrix's cases (harness/matrix.py) are generated from
  the rules table and join the catalog like any other; a profile's
  [[rule]] entries replace a rule's row where the stack documents another
  answer (harness/rules.py Override), each with its source.
- Malformed files are rejected with one line naming the file, the entry and
  what to fix. Unknown keys are errors: a typo must not silently drop a rule.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import steps

ROOT = Path(__file__).resolve().parent.parent
CASES_DIR = ROOT / "cases"
PROFILES_DIR = CASES_DIR / "profiles"

ID_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*(\.[a-z0-9]+(-[a-z0-9]+)*)+$")
RFC_RE = re.compile(r"^RFC (\d+)(?: §([0-9A-Z][0-9.]*))?$")
REQ_RE = re.compile(r"^[A-Za-z0-9]+/[A-Za-z0-9.\-]+$")
SEED_RE = re.compile(r"^S\d+$")
LEVELS = ("MUST", "SHOULD", "MAY", "documented")
CASE_KEYS = {"id": str, "title": str, "rfc": list, "requirements": list, "seed": list, "level": str,
             "description": str}
CASE_REQUIRED = ("id", "title", "rfc", "requirements", "level")


class CatalogError(ValueError):
    """A catalog or profile file is malformed; the message says where and what."""


@dataclass(frozen=True)
class Case:
    id: str
    title: str
    rfc: tuple
    requirements: tuple
    seed: tuple
    level: str
    description: str = ""
    source: str = ""

    @property
    def area(self) -> str:
        return self.id.split(".")[0]

    def rfc_links(self) -> list[tuple[str, str]]:
        """(link value for the `rfc` link pattern, display name) per section."""
        out = []
        for ref in self.rfc:
            num, sec = RFC_RE.match(ref).groups()
            out.append((f"{num}#section-{sec}" if sec else num, ref))
        return out


def _load_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise CatalogError(f"{_rel(path)}: not valid TOML: {e}") from None


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _case(entry, where: str) -> Case:
    if not isinstance(entry, dict):
        raise CatalogError(f"{where}: each [[case]] must be a table")
    cid = entry.get("id", "?")
    at = f"{where}: case {cid!r}"
    for key in entry:
        if key not in CASE_KEYS:
            raise CatalogError(f"{at}: unknown key {key!r} (allowed: {', '.join(CASE_KEYS)})")
    for key in CASE_REQUIRED:
        if key not in entry:
            raise CatalogError(f"{at}: missing {key!r}")
    for key, typ in CASE_KEYS.items():
        if key in entry and not isinstance(entry[key], typ):
            raise CatalogError(f"{at}: {key!r} must be a {typ.__name__}")
    if not ID_RE.match(cid):
        raise CatalogError(f"{at}: id must be a dotted slug <area>.<behaviour>[.<variant>], e.g. handshake.lost-third-ack")
    if entry["level"] not in LEVELS:
        raise CatalogError(f"{at}: level must be one of {', '.join(LEVELS)}, not {entry['level']!r}")
    for ref in entry["rfc"]:
        if not isinstance(ref, str) or not RFC_RE.match(ref):
            raise CatalogError(f"{at}: rfc entries look like 'RFC 9293 §3.5', not {ref!r}")
    for req in entry["requirements"]:
        if not isinstance(req, str) or not REQ_RE.match(req):
            raise CatalogError(f"{at}: requirement ids look like 'RFC9293/MUST-10', not {req!r}")
    for s in entry.get("seed", []):
        if not isinstance(s, str) or not SEED_RE.match(s):
            raise CatalogError(f"{at}: seed claims look like 'S13', not {s!r}")
    return Case(cid, entry["title"], tuple(entry["rfc"]), tuple(entry["requirements"]),
                tuple(entry.get("seed", [])), entry["level"], entry.get("description", ""), where)


@dataclass
class Catalog:
    cases: dict = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path | None = None) -> "Catalog":
        directory = CASES_DIR if directory is None else directory
        cat = cls()
        files = sorted(Path(directory).glob("*.toml"))
        if not files:
            raise CatalogError(f"{_rel(Path(directory))}: no catalog files (*.toml)")
        for path in files:
            data = _load_toml(path)
            extra = set(data) - {"case"}
            if extra:
                raise CatalogError(f"{_rel(path)}: unknown top-level key {sorted(extra)[0]!r}; entries go in [[case]] tables")
            entries = data.get("case", [])
            if not isinstance(entries, list):
                raise CatalogError(f"{_rel(path)}: 'case' must be an array of tables ([[case]])")
            for entry in entries:
                case = _case(entry, _rel(path))
                if case.id in cat.cases:
                    raise CatalogError(f"{_rel(path)}: case {case.id!r} is also defined in {cat.cases[case.id].source}")
                cat.cases[case.id] = case
        if directory == CASES_DIR:
            from .matrix import catalog_entries
            for entry in catalog_entries():
                cat.cases[entry["id"]] = _case(entry, "harness/matrix.py")
        return cat

    def __getitem__(self, cid: str) -> Case:
        return self.cases[cid]

    def __contains__(self, cid: str) -> bool:
        return cid in self.cases


# --- profiles ---------------------------------------------------------------------------

VALUE_KEYS = {"sysctl", "value", "default", "doc", "unit", "scale"}
DEVIATION_KEYS = {"case", "tests", "families", "params", "reason", "rule"}
BEHAVIOUR_KEYS = {"answer", "rule", "follows", "note"}
BEHAVIOUR_OPTIONAL = {"requires"}        # what the rule requires, in a sentence (a deviation's report page)
RULE_KEYS = {"row", "states", "when", "answer", "next", "then", "do", "source", "now"}


@dataclass
class Profile:
    stack: str
    title: str
    values: dict
    behaviour: dict
    deviations: list
    source: str
    rules: tuple = ()              # harness.rules.Override, from [[rule]]

    @classmethod
    def load(cls, stack: str, directory: Path | None = None) -> "Profile":
        path = Path(PROFILES_DIR if directory is None else directory) / f"{stack}.toml"
        if not path.exists():
            raise CatalogError(f"no profile for stack {stack!r}: create {_rel(path)} (see cases/profiles/linux.toml)")
        data = _load_toml(path)
        where = _rel(path)
        extra = set(data) - {"stack", "title", "base", "values", "behaviour", "deviation", "rule"}
        if extra:
            raise CatalogError(f"{where}: unknown top-level key {sorted(extra)[0]!r}")
        if data.get("stack") != stack:
            raise CatalogError(f"{where}: 'stack' must be {stack!r}")
        if "base" in data:                  # another version of a documented stack: what differs, over its profile
            if not isinstance(data["base"], str) or data["base"] == stack:
                raise CatalogError(f"{where}: 'base' names another profile, e.g. base = \"linux\"")
            base = cls.load(data["base"], directory)
            data = {**data, "values": {**base.values, **data.get("values", {})},
                    "behaviour": {**base.behaviour, **data.get("behaviour", {})},
                    "deviation": [*data.get("deviation", []), *base.deviations]}
            inherited = base.rules
        else:
            inherited = ()
        values = data.get("values", {})
        for name, v in values.items():
            if not isinstance(v, dict):
                raise CatalogError(f"{where}: values.{name} must be a table with 'value' or 'sysctl'")
            bad = set(v) - VALUE_KEYS
            if bad:
                raise CatalogError(f"{where}: values.{name}: unknown key {sorted(bad)[0]!r} (allowed: {', '.join(sorted(VALUE_KEYS))})")
            if "value" not in v and "sysctl" not in v:
                raise CatalogError(f"{where}: values.{name} needs 'value' or 'sysctl'")
            if "scale" in v and ("sysctl" not in v or not isinstance(v["scale"], (int, float)) or v["scale"] <= 0):
                raise CatalogError(f"{where}: values.{name}: scale is a positive number converting its sysctl")
        devs = data.get("deviation", [])
        for d in devs:
            bad = set(d) - DEVIATION_KEYS
            if bad:
                raise CatalogError(f"{where}: [[deviation]] of {d.get('case')!r}: unknown key {sorted(bad)[0]!r}")
            for key in ("case", "reason", "rule"):
                if not isinstance(d.get(key), str):
                    raise CatalogError(f"{where}: every [[deviation]] needs case, reason and rule (strings)")
            if not isinstance(d.get("params", {}), dict):
                raise CatalogError(f"{where}: [[deviation]] of {d['case']!r}: params is a table, "
                                   f"e.g. params = {{completion = \"synack\"}}")
        behaviour = data.get("behaviour", {})
        if not isinstance(behaviour, dict):
            raise CatalogError(f"{where}: 'behaviour' must be a table")
        for key, b in behaviour.items():
            if not isinstance(b, dict) or not BEHAVIOUR_KEYS <= set(b) <= BEHAVIOUR_KEYS | BEHAVIOUR_OPTIONAL:
                raise CatalogError(f"{where}: behaviour.{key!r} needs exactly {', '.join(sorted(BEHAVIOUR_KEYS))} "
                                   f"(and may say what the rule requires: {', '.join(sorted(BEHAVIOUR_OPTIONAL))})")
            if not isinstance(b["follows"], bool) or not REQ_RE.match(str(b["rule"])):
                raise CatalogError(f"{where}: behaviour.{key!r}: follows is true or false, rule like RFC9293/3.10.7.4")
        if not isinstance(data.get("rule", []), list):
            raise CatalogError(f"{where}: 'rule' must be an array of tables ([[rule]])")
        rules = tuple(_override(r, where) for r in data.get("rule", [])) + inherited
        return cls(stack, data.get("title", stack), values, behaviour, devs, where, rules)

    def check_cases(self, catalog: Catalog) -> None:
        for d in self.deviations:
            if d["case"] not in catalog:
                raise CatalogError(f"{self.source}: deviation for unknown case {d['case']!r}")

    def deviation(self, case_id: str, test: str, family: str, params: dict | None = None) -> dict | None:
        """The deviation documented for one test item: its case id, test
        function name, family and parameter values (item.callspec.params).
        `tests` lists test functions, `families` families, and `params`
        parameter values, e.g. params = {completion = "synack"}."""
        params = params or {}
        for d in self.deviations:
            if d["case"] != case_id:
                continue
            if "tests" in d and test not in d["tests"]:
                continue
            if "families" in d and family not in d["families"]:
                continue
            if any(k not in params or params[k] != v for k, v in d.get("params", {}).items()):
                continue
            return d
        return None

    def bind(self, stack) -> "BoundProfile":
        return BoundProfile(self, stack)


class BoundProfile:
    """A profile with the stack it describes: values are read from the SUT
    where the profile says they can be."""

    def __init__(self, profile: Profile, stack):
        self.profile = profile
        self.stack = stack
        self.observed: dict = {}
        self.changed: dict = {}          # values the case set (a variant, not the stack's default)
        self.deviation: dict | None = None   # the behaviour `conclude` found departing from its rule

    def value(self, name: str):
        try:
            spec = self.profile.values[name]
        except KeyError:
            raise CatalogError(f"{self.profile.source}: no value {name!r}; add [values.{name}]") from None
        from .stacks import SYSCTL
        if "sysctl" in spec and SYSCTL in self.stack.capabilities:
            raw = _number(self.stack.sysctl(spec["sysctl"]))
            if "scale" in spec:
                raw = _integral(raw * spec["scale"])
            value = type(spec.get("default", 0))(raw) if "default" in spec else raw
        elif "value" in spec:
            value = spec["value"]
        else:
            value = spec["default"]
        self.observed[name] = value
        return value

    def has(self, name: str) -> bool:
        """Whether the profile documents `name` (a value a stack may lack)."""
        return name in self.profile.values

    def set(self, name: str, value) -> None:
        """Set a value on the SUT (a sysctl in its namespace); skips the case
        when this stack cannot."""
        import pytest
        from .stacks import SYSCTL
        spec = self.profile.values.get(name, {})
        if SYSCTL not in self.stack.capabilities:
            pytest.skip(f"stack {self.stack.name} cannot set {name} (needs capability 'sysctl')")
        if "sysctl" not in spec:
            pytest.skip(f"stack {self.stack.name} cannot set {name}: {self.profile.source} names no tunable for it")
        self.stack.set_sysctl(spec["sysctl"], _integral(value / spec["scale"]) if "scale" in spec else value)
        self.changed[name] = value

    def set_if_tunable(self, name: str, value) -> bool:
        """Set a value where the stack has a tunable for it (as `set`); leave
        it, without skipping, where it has none. True if it was set."""
        from .stacks import SYSCTL
        if SYSCTL not in self.stack.capabilities or "sysctl" not in self.profile.values.get(name, {}):
            return False
        self.set(name, value)
        return True

    def behaviour(self, key: str) -> dict:
        """The stack's documented answer: {'answer', 'rule', 'follows', 'note'}."""
        try:
            return self.profile.behaviour[key]
        except KeyError:
            raise CatalogError(f"{self.profile.source}: no behaviour {key!r}; add [behaviour.\"{key}\"]") from None

    @steps.check(steps.documented_answer)
    def conclude(self, behaviour: dict) -> None:
        """Call after the case has checked the documented answer: where the
        answer departs from the rule, the verdict is a documented deviation."""
        import pytest
        if not behaviour["follows"]:
            self.deviation = behaviour
            pytest.xfail(f"documented deviation of {self.stack.name} from {behaviour['rule']}: {behaviour['note']}")

    def doc(self, name: str) -> str:
        return self.profile.values.get(name, {}).get("doc", "")


def _override(entry, where: str):
    """A [[rule]] entry -> harness.rules.Override, checked against the table."""
    from .rules import NotationError, Override, check_override
    if not isinstance(entry, dict):
        raise CatalogError(f"{where}: each [[rule]] must be a table")
    at = f"{where}: [[rule]] for row {entry.get('row')!r}"
    bad = set(entry) - RULE_KEYS
    if bad:
        raise CatalogError(f"{at}: unknown key {sorted(bad)[0]!r} (allowed: {', '.join(sorted(RULE_KEYS))})")
    for key in ("row", "source"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise CatalogError(f"{at}: needs {key!r} (a string): the row of harness/rules.py it replaces and where "
                               f"the stack says so (its code or documentation, the function named)")
    if not isinstance(entry.get("states", []), list):
        raise CatalogError(f"{at}: states is a list of RFC 9293 state names")
    if not isinstance(entry.get("now", False), bool):
        raise CatalogError(f"{at}: now is true (its ACK leaves at once) or false")
    o = Override(entry["row"], entry.get("answer", "nothing"), entry.get("next", "same"), entry.get("then", "return"),
                 entry.get("do", ""), tuple(entry.get("states", ())), entry.get("when", ""), entry["source"],
                 entry.get("now", False))
    try:
        check_override(o)
    except NotationError as e:
        raise CatalogError(f"{at}: {e}") from None
    return o


def _integral(x):
    """A scaled number: an int when it is one (1.0 s as 1000 ms, not 1000.0)."""
    return round(x) if isinstance(x, float) and abs(x - round(x)) < 1e-9 * max(1.0, abs(x)) else x


def _number(raw: str):
    try:
        return int(raw)
    except ValueError:
        try:
            return float(raw)
        except ValueError:
            return raw
