"""Just enough SQL text handling for the linter: split statements, mask literals.

PostgreSQL lexical rules that matter for splitting: ``'...'`` strings (``''`` escapes),
``E'...'`` strings (backslash escapes), ``"..."`` identifiers, ``$tag$...$tag$`` bodies,
``--`` line comments and nested ``/* */`` comments. Comments are dropped.
"""

from __future__ import annotations

import re

_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def _scan(sql: str) -> list[tuple[str, str]]:
    """Tokens as (kind, text): kind is code, string, ident, dollar, or sep (``;``)."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(sql)
    buf: list[str] = []

    def flush() -> None:
        if buf:
            out.append(("code", "".join(buf)))
            buf.clear()

    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
            buf.append(" ")
        elif c == "/" and sql.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            i = j
            buf.append(" ")
        elif c == "'":
            escaped = bool(buf) and buf[-1][-1:] in ("E", "e") and _word_start(buf)
            j = i + 1
            while j < n:
                if escaped and sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == "'":
                    if j + 1 < n and sql[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            flush()
            out.append(("string", sql[i : j + 1]))
            i = j + 1
        elif c == '"':
            j = sql.find('"', i + 1)
            while j >= 0 and j + 1 < n and sql[j + 1] == '"':
                j = sql.find('"', j + 2)
            j = n - 1 if j < 0 else j
            flush()
            out.append(("ident", sql[i : j + 1]))
            i = j + 1
        elif c == "$" and (m := _DOLLAR.match(sql, i)) and not _in_word(buf):
            tag = m.group(0)
            j = sql.find(tag, m.end())
            j = n if j < 0 else j + len(tag)
            flush()
            out.append(("dollar", sql[i:j]))
            i = j
        elif c == ";":
            flush()
            out.append(("sep", ";"))
            i += 1
        else:
            buf.append(c)
            i += 1
    flush()
    return out


def _word_start(buf: list[str]) -> bool:
    text = "".join(buf[-2:])
    return len(text) < 2 or not (text[-2].isalnum() or text[-2] == "_")


def _in_word(buf: list[str]) -> bool:
    return bool(buf) and (buf[-1][-1:].isalnum() or buf[-1][-1:] == "_")


def split_statements(sql: str) -> list[str]:
    """Statements without comments or trailing ``;``, whitespace collapsed, empties dropped."""
    statements: list[str] = []
    current: list[str] = []
    for kind, text in _scan(sql):
        if kind == "sep":
            stmt = " ".join("".join(current).split())
            if stmt:
                statements.append(stmt)
            current = []
        else:
            current.append(text)
    stmt = " ".join("".join(current).split())
    if stmt:
        statements.append(stmt)
    return statements


def mask_literals(stmt: str) -> str:
    """The statement with string and dollar-quoted bodies replaced by ``''``, upper-cased
    outside quoted identifiers (for keyword matching)."""
    parts: list[str] = []
    for kind, text in _scan(stmt):
        if kind == "code":
            parts.append(text.upper())
        elif kind in ("string", "dollar"):
            parts.append("''")
        elif kind == "ident":
            parts.append(text)
        else:
            parts.append(text)
    return " ".join("".join(parts).split())


def unquote(name: str) -> str:
    """``"My Table"`` -> ``My Table``; ``Users`` -> ``users`` (PostgreSQL folding);
    a schema prefix is dropped."""
    name = name.strip()
    parts = re.findall(r'"(?:[^"]|"")*"|[^.]+', name)
    last = parts[-1] if parts else name
    if last.startswith('"') and last.endswith('"'):
        return last[1:-1].replace('""', '"')
    return last.lower()


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside parentheses (for multi-action ALTER TABLE)."""
    depth, start, out = 0, 0, []
    for i, c in enumerate(text):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == sep and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    out.append(text[start:].strip())
    return [p for p in out if p]
