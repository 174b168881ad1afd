"""Compose-style `${VAR}` interpolation of config strings, from the environment.

Supported, as in the Compose specification ("Interpolation"): `$VAR`, `${VAR}`,
`${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`, and `$$` for a
literal `$`. Nothing is ever evaluated by a shell.
"""

import re

_TOKEN = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<invalid>))"
)


def interpolate(text: str, env) -> str:
    """Expand variables in `text`. Raise ValueError on `${VAR:?msg}` or a malformed `$`."""

    def sub(m: "re.Match") -> str:
        if m.group("escaped") is not None:
            return "$"
        name = m.group("plain") or m.group("braced")
        if name is None:
            raise ValueError(
                f"bad variable reference at {text[m.start():m.start() + 12]!r} (write $$ for a literal $)"
            )
        value = env.get(name)
        op, arg = m.group("op"), m.group("arg") or ""
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if unset else value
        if op in (":?", "?"):
            if unset:
                raise ValueError(f"required variable {name} is not set" + (f": {arg}" if arg else ""))
            return value
        return "" if value is None else value

    return _TOKEN.sub(sub, text)
