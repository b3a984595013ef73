"""The CI workflow (.github/workflows/conformance.yml) is valid YAML and runs
the README's commands. No root, no network.

The YAML check is a strict reader of the small subset the workflow uses
(block mappings and sequences, plain and quoted scalars, flow lists of
plain scalars, `|` blocks, comments): anything outside it fails the test,
so whatever passes is YAML. Where Allure's npm tree is installed
(`python3 -m harness.setup --report` brings the `yaml` package), a real
YAML parser must read the same structure.
"""
import json
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "conformance.yml"
NODE_YAML = ROOT / "reports" / "node_modules" / "yaml"


class YamlError(ValueError):
    pass


def _uncomment(text: str) -> str:
    """The text before a ` #` comment that is outside quotes."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] == " "):
            return text[:i].rstrip()
    return text


def _scalar(text: str, where: int):
    text = _uncomment(text).strip()
    if text.startswith('"'):
        if not text.endswith('"') or len(text) < 2:
            raise YamlError(f"line {where}: unterminated double-quoted scalar")
        return json.loads(text)
    if text.startswith("'"):
        if not text.endswith("'") or len(text) < 2:
            raise YamlError(f"line {where}: unterminated single-quoted scalar")
        return text[1:-1].replace("''", "'")
    if text.startswith("["):
        if not text.endswith("]"):
            raise YamlError(f"line {where}: unterminated flow sequence")
        return [_scalar(x, where) for x in text[1:-1].split(",")] if text[1:-1].strip() else []
    if text[:1] in set("{&*!|>%@`,?:-]}") and text != "-":
        raise YamlError(f"line {where}: a plain scalar cannot start with {text[0]!r}: {text!r}")
    if ": " in text or text.endswith(":") or " #" in text or "\t" in text:
        raise YamlError(f"line {where}: {text!r} is not a plain scalar (quote it)")
    return text


class Reader:
    def __init__(self, text: str):
        self.lines = text.split("\n")
        self.i = 0

    def peek(self):
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.strip() and not line.lstrip().startswith("#"):
                lead = line[:len(line) - len(line.lstrip())]
                if "\t" in lead:
                    raise YamlError(f"line {self.i + 1}: tab in indentation")
                return len(lead), line.strip()
            self.i += 1
        return None

    def node(self, indent: int):
        at = self.peek()
        if at is None or at[0] < indent:
            return None
        return self.sequence(at[0]) if at[1] == "-" or at[1].startswith("- ") else self.mapping(at[0])

    def sequence(self, indent: int) -> list:
        out = []
        while (at := self.peek()) and at[0] == indent and (at[1] == "-" or at[1].startswith("- ")):
            rest = at[1][1:].strip()
            if not rest:
                self.i += 1
                out.append(self.node(indent + 1))
            elif re.match(r"^[\w.-]+:( |$)", rest):          # "- key: value" opens a mapping
                self.lines[self.i] = " " * (indent + 2) + rest
                out.append(self.mapping(indent + 2))
            else:
                self.i += 1
                out.append(_scalar(rest, self.i))
        self._no_deeper(indent)
        return out

    def mapping(self, indent: int) -> dict:
        out = {}
        while (at := self.peek()) and at[0] == indent and not (at[1] == "-" or at[1].startswith("- ")):
            m = re.match(r"^([\w.-]+):(?: (.*))?$", at[1])
            if not m:
                raise YamlError(f"line {self.i + 1}: expected `key: value`, got {at[1]!r}")
            key, value = m.group(1), _uncomment(m.group(2) or "").strip()
            if key in out:
                raise YamlError(f"line {self.i + 1}: duplicate key {key!r}")
            self.i += 1
            if value in ("|", "|-"):
                out[key] = self.literal(indent, value)
            elif value:
                out[key] = _scalar(value, self.i)
            else:
                nxt = self.peek()
                nested = nxt and (nxt[0] > indent or (nxt[0] == indent and nxt[1].startswith("- ")))
                out[key] = self.node(nxt[0]) if nested else None
        self._no_deeper(indent)
        return out

    def literal(self, indent: int, style: str) -> str:
        body, block = [], None
        while self.i < len(self.lines):
            line = self.lines[self.i]
            lead = len(line) - len(line.lstrip(" "))
            if line.strip() and lead <= indent:
                break
            if line.strip():
                block = lead if block is None else block
                if lead < block:
                    raise YamlError(f"line {self.i + 1}: literal block less indented than its first line")
            body.append(line[block:] if line.strip() else "")
            self.i += 1
        while body and not body[-1]:
            body.pop()
        return "\n".join(body) + ("\n" if style == "|" and body else "")

    def _no_deeper(self, indent: int) -> None:
        at = self.peek()
        if at is not None and at[0] > indent:
            raise YamlError(f"line {self.i + 1}: unexpected indentation")


def load(text: str):
    reader = Reader(text)
    doc = reader.node(0)
    if reader.peek() is not None:
        raise YamlError(f"line {reader.i + 1}: text after the document")
    return doc


def _strings(x):
    """A parsed document with every scalar as a string (the subset reader
    keeps no types)."""
    if isinstance(x, dict):
        return {str(k): _strings(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_strings(v) for v in x]
    if isinstance(x, bool):
        return "true" if x else "false"
    return None if x is None else str(x)


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [line.strip() for block in re.findall(r"```sh\n(.*?)```", text, re.S) for line in block.splitlines()
            if line.strip()]


def run_steps(doc) -> list[str]:
    return [step["run"] for job in doc["jobs"].values() for step in job["steps"] if "run" in step]


# --- the reader itself ------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "a: {b: 1}\n",                  # flow mapping: outside the subset
    "a:\n\tb: 1\n",                 # tab
    "a: b: c\n",                    # a mapping inside a plain scalar
    "a: 1\na: 2\n",                 # duplicate key
    "a:\n  b: 1\n    c: 2\n",       # bad indentation
    "a: \"open\n",                  # unterminated quote
    "run: ${{ x }} # ok\n  oops\n",  # stray indented text
])
def test_reader_rejects_what_it_does_not_know(text):
    with pytest.raises(YamlError):
        load(text)


def test_reader_reads_the_subset():
    doc = load("a:\n  - x\n  - k: v\n    l: [p, q]\n  -\n    m: 'it''s'\nb: |\n  one\n\n  two\nc: \"${{ y }}\"\n")
    assert doc == {"a": ["x", {"k": "v", "l": ["p", "q"]}, {"m": "it's"}], "b": "one\n\ntwo\n", "c": "${{ y }}"}


# --- the workflow ---------------------------------------------------------------------------

def test_workflow_is_valid_yaml_with_a_job_per_stack_and_a_merging_report():
    doc = load(WORKFLOW.read_text())
    assert doc["name"] == "conformance"
    linux, userspace, report = doc["jobs"]["linux"], doc["jobs"]["userspace"], doc["jobs"]["report"]
    assert userspace["strategy"]["matrix"]["stack"] == ["lwip", "gvisor", "slirp", "passt"]
    assert userspace["container"] == {"image": "debian:12", "options": "--privileged"}
    assert report["needs"] == ["linux", "userspace"] and report["if"] == "always()"
    for job in doc["jobs"].values():
        for step in job["steps"]:
            assert ("run" in step) != ("uses" in step), step
    for suite in (linux, userspace):
        uploads = [s for s in suite["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
        assert uploads and "reports/allure-results" in uploads[0]["with"]["path"]
    assert any(s.get("uses", "").startswith("actions/download-artifact") for s in report["steps"])
    assert any("GITHUB_STEP_SUMMARY" in s for s in run_steps({"jobs": {"r": report}}))


@pytest.mark.skipif(not NODE_YAML.exists() or shutil.which("node") is None,
                    reason="the npm `yaml` parser comes with python3 -m harness.setup --report")
def test_a_real_yaml_parser_reads_the_same_workflow():
    script = ("const y=require(process.argv[1]);const fs=require('fs');"
              "process.stdout.write(JSON.stringify(y.parse(fs.readFileSync(process.argv[2],'utf8'))))")
    out = subprocess.run(["node", "-e", script, str(NODE_YAML), str(WORKFLOW)], capture_output=True, text=True,
                         check=True).stdout
    assert _strings(json.loads(out)) == _strings(load(WORKFLOW.read_text()))


def test_workflow_runs_the_readme_commands():
    commands = readme_commands()
    # the first README command: set-up && suite; report
    first = next(c for c in commands if "pytest conformance/" in c)
    setup, rest = first.split(" && ", 1)
    pytest_part, report = (p.strip() for p in rest.split(";", 1))
    runs = run_steps(load(WORKFLOW.read_text()))
    # the suite exactly as the README gives it, with the job's stack: as root
    # through sudo on a runner, as root already in the Debian container
    assert f"sudo {pytest_part} --stack linux" in runs, (pytest_part, runs)
    assert f"{pytest_part} --stack ${{{{ matrix.stack }}}}" in runs, (pytest_part, runs)
    # set-up and report as the README gives them
    for part in (setup, report):
        assert any(r == part or r.startswith(part + " ") for r in runs), (part, runs)
    # nothing else runs the project's code: each such step is a README command,
    # perhaps as root and with options added at the end
    parts = [p.strip() for c in commands for q in c.split(" && ") for p in q.split(";")]
    for r in runs:
        if "harness" in r or "pytest" in r:
            assert any(r.removeprefix("sudo ").startswith(p) for p in parts), r
