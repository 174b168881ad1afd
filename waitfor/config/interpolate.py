"""Compose-style `${VAR}` interpolation of config strings, from the environment.

Supported, as in the Compose specification ("Interpolation"): `$VAR`, `${VAR}`,
`${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`,
`${VAR:+replacement}`, `${VAR+replacement}`, and `$$` for a literal `$`. Defaults and
replacements are interpolated in turn (`${A:-${B:-x}}`), and only when they are used.
Nothing is ever evaluated by a shell.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from waitfor.config.sources import Errors

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"  # compiled on first use (re keeps it): most configs have no $
_OPS = (":-", ":?", ":+", "-", "?", "+")


def _closing(text: str, i: int) -> int | None:
    """Index of the `}` that closes a `${` whose body starts at i (nested `${...}` allowed)."""
    depth = 0
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth, i = depth + 1, i + 2
            continue
        if text[i] == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return None


MAX_NESTING = 20  # ${A:-${B:-...}} deep: a config needs two or three


class TooLong(ValueError):
    """The expansion would be longer than the caller's limit."""


def interpolate(text: str, env: Mapping[str, str], unset_names: set[str] | None = None, depth: int = 0,
                limit: int | None = None) -> str:
    """Expand variables in `text`. Raise ValueError on `${VAR:?msg}` or a malformed `$`.
    A plain reference to an unset variable (`$X`, `${X}`) becomes "" as in Compose, and
    its name is added to `unset_names`, for the caller's warning. With `limit`, TooLong as
    soon as the output passes `limit` characters: checked after each piece, so at most
    one value (an environment string: at most 128 KiB, MAX_ARG_STRLEN) past it is held."""
    if depth > MAX_NESTING:
        raise ValueError(f"defaults nested more than {MAX_NESTING} deep")

    def bad(at: int) -> ValueError:
        # Only `$` and what follows it: the rest of the string may be a password.
        m = re.compile(_NAME).match(text, at + 2) if text.startswith("${", at) else None
        ref = text[at:m.end()] if m else text[at:at + 2]
        return ValueError(f"bad variable reference {ref!r} at character {at + 1} (write $$ for a literal $)")

    out: list[str] = []
    size = 0

    def put(piece: str) -> None:
        nonlocal size
        out.append(piece)
        size += len(piece)
        if limit is not None and size > limit:
            raise TooLong(f"longer than {limit} characters")

    i = 0
    while i < len(text):
        start = text.find("$", i)
        if start < 0:
            put(text[i:])
            break
        put(text[i:start])
        nxt = text[start + 1:start + 2]
        if nxt == "$":
            put("$")
            i = start + 2
            continue
        if nxt != "{":
            m = re.compile(_NAME).match(text, start + 1)
            if not m:
                raise bad(start)
            if m.group() not in env and unset_names is not None:
                unset_names.add(m.group())
            put(env.get(m.group()) or "")
            i = m.end()
            continue
        m = re.compile(_NAME).match(text, start + 2)
        end = _closing(text, m.end()) if m else None
        if end is None or m is None:
            raise bad(start)
        name, body = m.group(), text[m.end():end]
        op = next((o for o in _OPS if body.startswith(o)), None)
        if body and op is None:
            raise bad(start)
        arg = body[len(op):] if op else ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            put(interpolate(arg, env, unset_names, depth + 1, limit) if unset else str(value))
        elif op in (":?", "?"):
            if unset:
                raise ValueError(f"required variable {name} is not set" + (f": {arg}" if arg else ""))
            put(str(value))
        elif op in (":+", "+"):
            put("" if unset else interpolate(arg, env, unset_names, depth + 1, limit))
        else:
            if value is None and unset_names is not None:
                unset_names.add(name)
            put(value or "")
        i = end + 1
    return "".join(out)


def interpolate_doc(node: object, env: Mapping[str, str], path: str, line: int = 0, key: str = "",
                    unset_names: set[str] | None = None, errors: Errors | None = None) -> Any:
    """Interpolate every string value in the YAML document, keeping line numbers.
    An error names `file:line: key`, such as `deps.yaml:4: dependencies[0].url`.
    (Recursive: yamlfile caps the nesting of the document first.)"""
    from waitfor.config.yamlfile import LDict, LList
    from waitfor.errors import UsageError

    if isinstance(node, LDict):
        out = LDict()
        out.line, out.lines = node.line, node.lines
        for k, val in node.items():
            out[k] = interpolate_doc(val, env, path, node.lines.get(k, node.line), f"{key}.{k}" if key else k,
                                     unset_names, errors)
        return out
    if isinstance(node, LList):
        items = LList(interpolate_doc(val, env, path, ln, f"{key}[{i}]", unset_names, errors)
                      for i, (val, ln) in enumerate(zip(node, node.lines)))
        items.line, items.lines = node.line, node.lines
        return items
    if isinstance(node, str):
        try:
            return interpolate(node, env, unset_names)
        except ValueError as e:
            error = UsageError(f"{path}:{line}: {key}: {e}" if key else f"{path}:{line}: {e}")
            if errors is None:
                raise error from None
            errors.add(error)  # validate: every error of the file (waitfor.config.sources.Errors)
    return node
