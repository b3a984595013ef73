"""The packetdrill lexer: script text in, tokens with line numbers out.

Rules of this file:
- Pure: a string in, a list of Tokens out; no IO.
- The scanner follows packetdrill's flex rules (lexer.l): at each position
  the longest match wins, and of equally long matches the rule listed first
  (keywords before words, a float before an integer before hex before a
  word). Whitespace is space, tab and newline only: a carriage return is a
  character of its own and the parser refuses it, as packetdrill does.
- `-D`/`--define` substitution happens here, on whole words that are not
  keywords: a value in "..." becomes a string, in `...` a command, one that
  C's strtol reads whole an integer, anything else the word it spells.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

KEYWORDS = frozenset("""
sa_family sin_port sin_addr msg_name msg_iov msg_flags msg_control cmsg_data cmsg_level cmsg_type
ee_errno ee_origin ee_type ee_code ee_info ee_data scm_sec scm_nsec fd u32 u64 ptr events revents
onoff linger htons ipv4 ipv6 icmp udp GREv0 gre raw sum off key seq none checksum present encap psp
spi mpls label tc ttl inet_addr inet6_addr ack eol ecr mss mtu nop sack sackOK md5 TS FO FOEXP ECN
e0b e1b ceb tos flowlabel flags Flags val win urg wscale ect01 ect0 ect1 noecn ce id
""".split()) | {"sequence#"}

# Kinds of token. Keywords have kind KEYWORD and their spelling as value;
# single characters have kind CHAR and the character as value.
INTEGER, HEX, FLOAT, WORD, STRING, COMMAND, CODE, IPV4, IPV6, OPTION, ELLIPSIS, KEYWORD, CHAR, END = (
    "INTEGER", "HEX", "FLOAT", "WORD", "STRING", "COMMAND", "CODE", "IPV4_ADDR", "IPV6_ADDR", "OPTION",
    "ELLIPSIS", "KEYWORD", "CHAR", "END")

_SEG = r"[0-9a-fA-F]{1,4}"
_V4 = r"[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+"
_V6 = [
    r"::",
    rf"(?:{_SEG}:){{7}}{_SEG}",
    rf"(?:{_SEG}:){{1,7}}:",
    rf"(?:{_SEG}:){{1,6}}:{_SEG}",
    rf"(?:{_SEG}:){{1,5}}(?::{_SEG}){{1,2}}",
    rf"(?:{_SEG}:){{1,4}}(?::{_SEG}){{1,3}}",
    rf"(?:{_SEG}:){{1,3}}(?::{_SEG}){{1,4}}",
    rf"(?:{_SEG}:){{1,2}}(?::{_SEG}){{1,5}}",
    rf"{_SEG}:(?:(?::{_SEG}){{1,6}})",
    rf":(?::{_SEG}){{1,7}}",
    rf"::ffff:{_V4}",
    rf"::ffff:(?:0){{1,4}}:{_V4}",
    rf"(?:{_SEG}:){{1,4}}:{_V4}",
]

# (kind, regex), in the order of lexer.l: on equal length the first wins.
# Keywords are found through WORD (they are words spelled exactly so).
_RULES = [
    (ELLIPSIS, re.compile(r"\.\.\.")),
    (OPTION, re.compile(r"--[a-zA-Z0-9_]+")),
    (FLOAT, re.compile(r"-?[0-9]*\.[0-9]+")),
    (INTEGER, re.compile(r"-?[0-9]+")),
    (HEX, re.compile(r"0x[0-9a-fA-F]+")),
    (WORD, re.compile(r"sequence#|[a-zA-Z0-9_]+")),
    (STRING, re.compile(r'"(?:\\.|[^"\\])*"', re.S)),
    (COMMAND, re.compile(r"`(?:\\.|[^`\\])*`", re.S)),
    (CHAR, re.compile(r"[^ \t\n]")),
    ("SPACE", re.compile(r"[ \t\n]+")),
    ("COMMENT", re.compile(r"//[^\n]*(?:\n|$)")),      # packetdrill needs the newline; we accept EOF too
    ("COMMENT", re.compile(r"/\*(?:[^*]|\*(?!/))*\*/", re.S)),
    (CODE, re.compile(r"%\{(?:[^}]|\}(?!%))*\}%", re.S)),
    (IPV4, re.compile(_V4)),
    *((IPV6, re.compile(v)) for v in _V6),       # each form on its own: the longest wins, as in flex
]


class LexError(ValueError):
    def __init__(self, line: int, message: str):
        self.line = line
        super().__init__(f"line {line}: {message}")


@dataclass(frozen=True)
class Token:
    kind: str
    value: object
    line: int
    text: str = ""

    def __repr__(self) -> str:
        return f"{self.kind}({self.value!r})@{self.line}"

    def is_(self, kind: str, value=None) -> bool:
        return self.kind == kind and (value is None or self.value == value)


def _strtol(text: str) -> int | None:
    """C's strtol(text, &end, 0), or None when it does not read it whole."""
    t = text.strip()
    m = re.fullmatch(r"([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", t)
    if not m:
        return None
    sign, digits = m.groups()
    if digits[:2].lower() == "0x":
        n = int(digits, 16)
    elif digits.startswith("0"):
        n = int(digits, 8)
    else:
        n = int(digits)
    return -n if sign == "-" else n


def _candidates(ch: str) -> list:
    """The rules a token starting with `ch` can match, in rule order (the
    scan tries only these: a script lexes several times faster)."""
    return [(k, rx) for k, rx in _RULES if _may_start(k, ch)]


def _may_start(kind: str, ch: str) -> bool:
    if kind in (FLOAT, ELLIPSIS):
        return ch in ".-0123456789"
    if kind in (OPTION, INTEGER):
        return ch in "-0123456789"
    if kind in (HEX, IPV4):
        return ch.isdigit()
    if kind == IPV6:
        return ch == ":" or ch in "0123456789abcdefABCDEF"
    if kind == WORD:
        return ch.isalnum() or ch == "_"
    if kind == STRING:
        return ch == '"'
    if kind == COMMAND:
        return ch == "`"
    if kind == "COMMENT":
        return ch == "/"
    if kind == CODE:
        return ch == "%"
    if kind == "SPACE":
        return ch in " \t\n"
    return ch not in " \t\n"                           # CHAR


_BY_CHAR: dict = {}


def _longest(text: str, pos: int):
    best_kind, best_end = None, pos
    ch = text[pos]
    rules = _BY_CHAR.get(ch)
    if rules is None:
        rules = _BY_CHAR[ch] = _candidates(ch)
    for kind, rx in rules:
        m = rx.match(text, pos)
        if m and m.end() > best_end:
            best_kind, best_end = kind, m.end()
    return best_kind, best_end


def tokenize(text: str, defines: dict | None = None) -> list[Token]:
    """The tokens of a script, each with the line it starts on, and END."""
    defines = defines or {}
    out: list[Token] = []
    pos, line, n = 0, 1, len(text)
    while pos < n:
        kind, end = _longest(text, pos)
        lexeme = text[pos:end]
        start_line = line
        line += lexeme.count("\n")
        pos = end
        if kind in ("SPACE", "COMMENT"):
            continue
        if kind == WORD:
            if lexeme in KEYWORDS:
                out.append(Token(KEYWORD, lexeme, start_line, lexeme))
                continue
            if lexeme in defines:
                out.append(_defined(lexeme, str(defines[lexeme]), start_line))
                continue
            out.append(Token(WORD, lexeme, start_line, lexeme))
        elif kind == INTEGER:
            out.append(Token(INTEGER, int(lexeme), start_line, lexeme))
        elif kind == HEX:
            out.append(Token(HEX, int(lexeme[2:], 16), start_line, lexeme))
        elif kind == FLOAT:
            out.append(Token(FLOAT, float(lexeme), start_line, lexeme))
        elif kind == OPTION:
            out.append(Token(OPTION, lexeme[2:], start_line, lexeme))
        elif kind in (STRING, COMMAND):
            out.append(Token(kind, lexeme[1:-1], start_line, lexeme))
        elif kind == CODE:
            out.append(Token(CODE, lexeme[2:-2].strip(" \t"), start_line, lexeme))
        elif kind == CHAR:
            out.append(Token(CHAR, lexeme, start_line, lexeme))
        else:                                       # ELLIPSIS, addresses
            out.append(Token(kind, lexeme, start_line, lexeme))
    out.append(Token(END, None, line, "end of file"))
    return out


def _defined(word: str, value: str, line: int) -> Token:
    if value.startswith('"') and value.endswith('"') and len(value) >= 2:
        return Token(STRING, value[1:-1], line, word)
    if value.startswith("`") and value.endswith("`") and len(value) >= 2:
        return Token(COMMAND, value[1:-1], line, word)
    n = _strtol(value)
    if n is not None:
        return Token(INTEGER, n, line, word)
    return Token(WORD, value, line, word)
