"""pytest collects packetdrill scripts: every `.pkt` file becomes a test per family.

Rules of this file:
- Loaded by harness.plugin (its `pytest_plugins`): `pytest conformance/
  DIR/` collects every script under DIR, one item per family as
  packetdrill's run_all does (a name ending in v4.pkt is IPv4 only, v6.pkt
  IPv6 only; `--ip_version` in the script restricts it too; `--family`
  narrows further). Items run against `--stack NAME` like every case, and
  in parallel under xdist.
- A script runs through the same Stack, Link, Peer and Trace as a Python
  case, so the report shows it alike: Allure labels `case` =
  `pkt.<path relative to the directory given>`, `stack`, `family` (label
  and parameter); the trace attachments (harness.plugin attaches them from
  the item's Trace); the script itself, its failing line marked.
- Options: `--pkt-opt NAME[=VALUE]` is a packetdrill option for every
  script (as on its command line, after the script's own, so it wins);
  `--pkt-commands` says what becomes of a shell command that is not a
  sysctl setting: skip the script (default), ignore the command, or (linux)
  run it in the SUT's namespace as packetdrill would.
- A parse error fails the item with the script's line; a construct the
  stack or the interpreter cannot run skips it, naming the construct and
  the line.
"""
from __future__ import annotations

import os
import random
import zlib
from pathlib import Path

import pytest

from ..catalog import CatalogError, Profile
from ..plugin import STACK_INFO, TRACE
from ..stacks import APP, SYSCTL, StackConfig, StackError
from ..trace import Trace
from ..verdict import ConformanceFailure
from . import ast
from .parser import ParseError, parse, parse_options
from .runner import Config, OptionError, Runner, ScriptFailure, Unsupported

SLOW_SCRIPT = 20.0            # seconds of script time from which a script counts as `slow`
TIMED_SCRIPT = 0.5            # ... and from which it is spread over workers first, like cases with timers


def pytest_addoption(parser):
    g = parser.getgroup("tcpconf")
    g.addoption("--pkt-opt", action="append", default=[], metavar="NAME[=VALUE]",
                help="packetdrill option for every .pkt script, overriding the script's own "
                     "(e.g. --pkt-opt tolerance_usecs=10000, --pkt-opt define=CODE=host_unreachable)")
    g.addoption("--pkt-commands", choices=("sysctl", "ignore", "run"), default="sysctl",
                help="a script's shell command that is not a sysctl setting: skip the script (sysctl, the "
                     "default), leave the command out (ignore), or run it in the SUT's namespace (run; linux)")


def pytest_collect_file(file_path: Path, parent):
    if file_path.suffix == ".pkt":
        return PktFile.from_parent(parent, path=file_path)
    return None


def command_line_options(config, family: str | None = None) -> list[tuple[str, str | None, int]]:
    """--pkt-opt values as (name, value, 0): those for every family, and
    with `family` those for that family too (`ipv6:mtu=1520`: IPv6 runs only)."""
    out = []
    for item in config.getoption("pkt_opt"):
        fam, colon, rest = item.partition(":")
        if colon and fam in ("ipv4", "ipv6"):
            if fam != family:
                continue
            item = rest
        try:
            pairs = parse_options(item if item.startswith("--") else "--" + item)
        except ParseError as e:
            raise pytest.UsageError(f"--pkt-opt {item!r}: {e.reason}") from None
        out += [(n, v, 0) for n, v in pairs]
    return out


def case_id(config, path: Path) -> str:
    """`pkt.<path relative to the directory given on the command line>`
    (the deepest one holding the file; a file given itself: its name)."""
    best = None
    for arg in config.invocation_params.args:
        p = Path(config.invocation_params.dir, str(arg).split("::")[0]).resolve()
        if p.is_dir() and (p == path.parent or p in path.parents):
            if best is None or len(p.parts) > len(best.parts):
                best = p
    base = best or (path.parent if any(Path(config.invocation_params.dir, str(a).split("::")[0]).resolve() == path
                                       for a in config.invocation_params.args) else config.rootpath)
    try:
        rel = path.relative_to(base)
    except ValueError:
        rel = Path(path.name)
    return "pkt." + rel.as_posix()


def script_families(path: Path, cfg: Config, choice: str) -> list[str]:
    fams = list(cfg.families())
    if path.name.endswith("v4.pkt"):
        fams = [f for f in fams if f == "ipv4"]
    elif path.name.endswith("v6.pkt"):
        fams = [f for f in fams if f == "ipv6"]
    if choice != "both":
        fams = [f for f in fams if f == choice]
    return fams


def nominal_duration(script: ast.Script) -> float:
    """The script time of its last event, as written (relative times add up)."""
    t = 0.0
    for ev in script.events:
        end = ev.time.end if ev.time.end is not None else ev.time.start
        if ev.time.kind in (ast.ABSOLUTE, ast.ABSOLUTE_RANGE):
            t = max(t, end)
        elif ev.time.kind != ast.ANY:
            t += end
        if isinstance(ev.action, ast.Syscall) and ev.action.end is not None:
            t = max(t, (t - end if ev.time.relative else 0) + ev.action.end)
    return t


def load_script(text: str, name: str, cmdline: list) -> tuple:
    """(script, config, error) with these command-line options: the
    script's own options first, theirs after; defines from both (a define
    changes the words the lexer sees: the script is parsed again with it)."""
    def defines(opts) -> dict:
        return dict(v.partition("=")[::2] for n, v, _ in opts if n in ("define", "D") and v and "=" in v)
    try:
        script = parse(text, name, defines(cmdline))
        opts = [(o.name, o.value, o.line) for o in script.options] + cmdline
        cfg = Config.from_options(opts)
        if cfg.defines != defines(cmdline):
            script = parse(text, name, cfg.defines)
        return script, cfg, None
    except ParseError as e:
        return None, Config(), e
    except OptionError as e:
        return None, Config(), ParseError(e.line, str(e), name)
    except Unsupported as e:
        return None, Config(), e


class PktFile(pytest.File):
    def load(self, text: str, cmdline: list) -> tuple:
        return load_script(text, self.path.name, cmdline)

    def collect(self):
        text = self.path.read_text()
        script, cfg, error = self.load(text, command_line_options(self.config))
        cid = case_id(self.config, self.path)
        for fam in script_families(self.path, cfg, self.config.getoption("family")):
            own = command_line_options(self.config, fam)            # with ipv6:... options
            s, c, e = (script, cfg, error) if error or len(own) == len(command_line_options(self.config)) \
                else self.load(text, own)
            timed = s is not None and nominal_duration(s) >= TIMED_SCRIPT
            item = PktItem.from_parent(self, name=f"{self.path.name}[{fam}]", callobj=_run_timed if timed else _run)
            item.pkt = {"script": s, "config": c, "family": fam, "case": cid, "error": e, "path": self.path}
            if s is not None and nominal_duration(s) >= SLOW_SCRIPT:
                item.add_marker(pytest.mark.slow)
            yield item


class PktItem(pytest.Function):
    """One script for one family. A failed line is shown as packetdrill
    shows it (the line, what it expected, what came) with the script around
    it, not as a traceback into the interpreter."""

    def repr_failure(self, excinfo):
        e = excinfo.value
        if isinstance(e, ConformanceFailure):
            line = getattr(e, "line", None)
            text = self.pkt["path"].read_text()
            return f"{e.kind}: {e}\n\n" + (marked(text, line, around=4) if line else "")
        return super().repr_failure(excinfo)

    def reportinfo(self):
        """The script, at the line the run ended on (a skip is shown there)."""
        line = getattr(self, "pkt_line", None)
        return self.path, (line - 1 if line else 0), f"{self.pkt['case']} [{self.pkt['family']}]"


def _run(request):
    run_item(request)


def _run_timed(request, tolerance):
    """The same, for a script that waits on timers: the `tolerance` fixture
    only marks it for harness.plugin's ordering (timed items first under xdist)."""
    run_item(request)


def _labels(item, tc: dict) -> None:
    import allure
    p = item.pkt
    rel = p["case"][len("pkt."):]
    allure.dynamic.label("case", p["case"])
    allure.dynamic.label("stack", tc["label"])
    allure.dynamic.label("family", p["family"])
    allure.dynamic.parameter("family", p["family"])
    allure.dynamic.epic("packetdrill scripts")
    allure.dynamic.feature(str(Path(rel).parent) if "/" in rel else "packetdrill")
    allure.dynamic.story(Path(rel).name)
    allure.dynamic.title(f"{Path(rel).name} [{p['family']}]")
    allure.dynamic.description(leading_comment(p["path"].read_text()) or f"packetdrill script {rel}")


def leading_comment(text: str) -> str:
    lines = []
    for line in text.split("\n"):
        s = line.strip()
        if s.startswith("//"):
            lines.append(s[2:].strip())
        elif s and not lines:
            break
        elif not s and lines:
            break
        elif s:
            break
    return "\n".join(lines)


def marked(text: str, line: int | None, around: int | None = None) -> str:
    """The script with line numbers, the line `line` marked with `>>`."""
    rows = text.split("\n")
    lo, hi = 1, len(rows)
    if around is not None and line:
        lo, hi = max(1, line - around), min(len(rows), line + around)
    width = len(str(hi))
    return "\n".join(f"{'>>' if n == line else '  '} {n:>{width}} | {rows[n - 1]}" for n in range(lo, hi + 1))


def skip(reason: str):
    """Skip reported at the script (not at this file's line)."""
    e = pytest.skip.Exception(reason)
    e._use_item_location = True
    raise e


def run_item(request) -> None:
    item = request.node
    p = item.pkt
    tc = request.getfixturevalue("tcpconf")
    try:
        _labels(item, tc)
    except ImportError:
        pass
    line = None
    try:
        if p["error"] is not None:
            e = p["error"]
            line = e.line
            if isinstance(e, Unsupported):
                item.pkt_line = e.line
                skip(e.construct)
            where = f"{p['path'].name}:{e.line}" if e.line else f"{p['path'].name} (--pkt-opt)"
            pytest.fail(f"{where}: {e.reason}", pytrace=False)
        line = _execute(request, item, p, tc)
    except Unsupported as e:
        line = e.line
        item.pkt_line = line
        skip(e.construct)
    except ScriptFailure as e:
        line = e.line
        raise
    except Exception as e:
        line = getattr(e, "line", None)
        raise
    finally:
        item.pkt_line = line
        _attach_script(p["path"], line)


def _attach_script(path: Path, line: int | None) -> None:
    try:
        import allure
        from allure_commons._allure import plugin_manager
    except ImportError:
        return
    if not plugin_manager.get_plugins():
        return
    name = f"{path.name}" + (f" (line {line} marked)" if line else "")
    allure.attach(marked(path.read_text(), line), name=name, attachment_type=allure.attachment_type.TEXT)


def _execute(request, item, p: dict, tc: dict) -> int | None:
    cls = tc["cls"]
    family = p["family"]
    trace = Trace()
    sysctls = dict(tc["sysctls"])
    st = cls(StackConfig(family, trace, sysctls, tc["options"]))
    if family not in st.families:
        skip(f"stack {st.name} has no {family}")
    if getattr(st, "needs_root", False) and os.geteuid() != 0:
        skip(f"stack {st.name} creates network namespaces and TUN devices: run as root")
    missing = sorted(({APP} | ({SYSCTL} if sysctls else set())) - set(st.capabilities))
    if missing:
        skip(f"stack {st.name} lacks capability {', '.join(missing)} (scripts make system calls)")
    item.stash[TRACE] = trace
    try:
        st.start()
    except StackError as e:
        pytest.fail(f"harness: cannot start stack {cls.name}: {e}", pytrace=False)
    item.stash[STACK_INFO] = st.describe()
    try:
        rng = random.Random(zlib.crc32(f"{tc['seed']}:{item.nodeid}".encode()))
        granularity = tc["profile"].values.get("timer_granularity", {}).get("value", 0.0)
        floor = (request.config.getoption("tolerance_ms") / 1000, request.config.getoption("tolerance_pct") / 100)
        runner = Runner(p["script"], st, p["config"], path=p["path"].name, rng=rng, granularity=float(granularity),
                        floor=floor,
                        commands=request.config.getoption("pkt_commands"), set_tunable=tunables(st, tc),
                        script_dir=str(p["path"].parent), set_mtu=link_mtu(st))
        item.pkt_runner = runner
        runner.run()
        for note in runner.notes:
            item.add_report_section("call", "packetdrill", note)
    finally:
        st.close()
    return None


def link_mtu(stack):
    """set_mtu(n) for the runner where the suite can change the SUT's link
    MTU (the Linux stack's tun0, in its namespace), else None."""
    if stack.name != "linux" or getattr(stack, "ns", None) is None:
        return None

    def set_mtu(mtu: int) -> None:
        from pyroute2 import IPRoute
        with stack.ns.entered(), IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="tun0")[0], mtu=int(mtu))
        stack.mtu = int(mtu)
    return set_mtu


_LINUX_NAMES: dict | None = None


def _linux_names() -> dict:
    """Linux sysctl -> the profile value it sets (cases/profiles/linux.toml)."""
    global _LINUX_NAMES
    if _LINUX_NAMES is None:
        try:
            linux = Profile.load("linux")
            _LINUX_NAMES = {v["sysctl"]: (name, v.get("scale")) for name, v in linux.values.items() if "sysctl" in v}
        except CatalogError:
            _LINUX_NAMES = {}
    return _LINUX_NAMES


def tunables(stack, tc: dict):
    """set_tunable(key, value, check) for the runner: a Linux sysctl set on
    the SUT where its stack has it (Linux and remote hosts: the key itself;
    a stack with tunables of its own: the profile value the Linux sysctl
    stands for, through the stack's profile), or None where it has none.
    With check=True it only answers why it cannot (None if it can)."""
    if SYSCTL not in stack.capabilities:
        return None
    own = stack.tunables()
    profile = tc["profile"].bind(stack)

    def set_tunable(key: str, value: str, check: bool = False):
        if own is None:
            if check:
                try:
                    stack.sysctl(key)
                except StackError as e:
                    return str(e)
                return None
            stack.set_sysctl(key, value)             # StackError: the runner fails the line
            return None
        name, scale = _linux_names().get(key, (None, None))
        spec = profile.profile.values.get(name, {}) if name else {}
        if name is None or "sysctl" not in spec or spec["sysctl"] not in own:
            return f"stack {stack.name} has no tunable for it" if check else None
        if check:
            return None
        try:
            number = float(value)
        except ValueError:
            raise Unsupported(f"sysctl {key}={value} (not a number, for {stack.name}'s {spec['sysctl']})") from None
        profile.set(name, number * scale if scale else (int(number) if number.is_integer() else number))
        return None
    return set_tunable


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    pkt = getattr(item, "pkt", None)
    if pkt is not None and report.when == "call" and report.skipped:
        line = getattr(item, "pkt_line", None)
        if line:
            report.sections.append(("packetdrill script", marked(pkt["path"].read_text(), line, around=4)))
    return report
