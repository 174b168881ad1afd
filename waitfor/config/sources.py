"""Where a setting's value comes from, and where to point when it is wrong.

Precedence, for each setting: command line > environment > config file > default. The
YAML document keeps its line numbers (waitfor.config.yamlfile), so every error names
`file:line: key`, the flag as typed, or the environment variable.
"""

from __future__ import annotations

from waitfor.errors import UsageError, at

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from waitfor.config.model import Setting
    from waitfor.config.yamlfile import LDict


class Sources:
    """The three inputs of a Config: parsed argv values, the environment, the YAML file."""

    def __init__(self, cli: Mapping[str, object], env: Mapping[str, str], path: str | None,
                 doc: LDict | None, typed: Mapping[str, str] | None = None) -> None:
        self.cli, self.env, self.path, self.doc = cli, env, path, doc
        self.typed = typed or {}  # setting key -> the flag as the user typed it

    def where_in_file(self, dotted: str) -> str:
        """`deps.yaml:4: watch.interval` for a key of the file (dotted for nested keys)."""
        node, line = self.doc, 0
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            line = node.lines.get(part, node.line)
            node = node[part]
        return f"{self.path}:{line}: {dotted}" if line else f"{self.path}: {dotted}"

    def in_file(self, dotted: str) -> tuple[bool, object]:
        node: object = self.doc
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return False, None
            node = node[part]
        return True, node

    def raw(self, s: Setting) -> tuple[str, object] | None:
        """(where, raw value) from the first source that sets `s`, or None."""
        given = self.cli.get(s.key)
        if given is not None:
            return self.typed.get(s.key, s.flag), given
        if s.env and self.env.get(s.env) not in (None, ""):
            return s.env, self.env[s.env]
        if s.yaml and self.doc is not None:
            found, value = self.in_file(s.yaml)
            if found:
                return self.where_in_file(s.yaml), value
        return None

    def value(self, s: Setting) -> object:
        """The setting's parsed value, or its default; a bad value is a located UsageError."""
        got = self.raw(s)
        if got is None:
            return s.default
        where, raw = got
        try:
            return s.parse(raw)
        except ValueError as e:
            raise at(where, str(e)) from None

    def where(self, s: Setting) -> str:
        got = self.raw(s)
        return got[0] if got else s.flag


def check_mapping(node: object, where: str, known: tuple[str, ...], path: str, prefix: str = "",
                  errors: Errors | None = None) -> None:
    """A mapping of the file with only `known` keys, else a located error (each one, to
    `errors` when given)."""
    if not isinstance(node, dict):
        raise UsageError(f"{where}: expected a mapping ({', '.join(k + ':' for k in known)})")
    lines, line = getattr(node, "lines", {}), getattr(node, "line", 0)
    for key in node:
        if key not in known:
            error = UsageError(f"{path}:{lines.get(key, line)}: {prefix}{key}: unknown key "
                               f"(known: {', '.join(known)})")
            if errors is None:
                raise error
            errors.add(error)


class Errors:
    """Config errors: raised at once (`run` stops at the first), or, for `validate`,
    gathered and raised together, sorted by line, as JSON Schema validators and kubectl
    report every error of a file in one run. Errors that name no line of the file (a
    flag, a variable) come first."""

    def __init__(self, gather: bool, path: str | None = None) -> None:
        self.gather, self.path = gather, path
        self.found: list[UsageError] = []

    def add(self, error: UsageError) -> None:
        if not self.gather:
            raise error
        self.found.append(error)

    def check(self) -> None:
        """Raise what was gathered, if anything."""
        from waitfor.errors import UsageErrors

        if not self.found:
            return
        # One error per line of the file, the first met: a `${X:?}` that failed leaves
        # the string as written, which the key's own check would report again.
        seen: set[int] = set()
        found = []
        for error in sorted(self.found, key=self._line):
            line = self._line(error)
            if line and line in seen:
                continue
            found.append(error)
            seen.add(line)
        raise found[0] if len(found) == 1 else UsageErrors(found)

    def _line(self, error: UsageError) -> int:
        text, prefix = str(error), f"{self.path}:"
        if self.path is None or not text.startswith(prefix):
            return 0
        digits = text[len(prefix):].split(":", 1)[0]
        return int(digits) if digits.isascii() and digits.isdigit() else 0
