"""Small validators for config values: each turns a raw YAML/flag value into a typed
value or raises ValueError with a message for users. A `Validator` also carries the JSON
Schema fragment that `waitfor schema` prints for it, and whether it reads a file (which
`validate --offline` skips). Reading files is waitfor.config.files's job, looking users up
waitfor.config.users's: the validators here only call them."""

from __future__ import annotations

import os
from types import MappingProxyType

from waitfor.config.durations import parse_duration

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Callable, Mapping
    from typing import Any, Generic, TypeVar

    T = TypeVar("T")

    class _Generic(Generic[T]):
        pass
else:
    T = object

    class _Generic:  # Validator[T] for mypy, without importing typing at start-up
        __slots__ = ()

        def __class_getitem__(cls, item: object) -> type:
            return cls


class Validator(_Generic[T]):
    """A raw value -> a typed value (or ValueError), with its JSON Schema fragment."""

    __slots__ = ("__name__", "check", "reads_file", "schema")

    def __init__(self, check: Callable[[object], T], schema: Mapping[str, Any], reads_file: bool = False) -> None:
        self.check, self.schema, self.reads_file = check, schema, reads_file
        self.__name__ = check.__name__

    def __call__(self, value: object) -> T:
        return self.check(value)

    def __repr__(self) -> str:
        return f"<validator {self.__name__}>"


def validator(schema: Mapping[str, Any], reads_file: bool = False) -> Callable[[Callable[[object], T]], Validator[T]]:
    """`@validator({"type": "string"})` over a function of one raw value."""

    def wrap(fn: Callable[[object], T]) -> Validator[T]:
        return Validator(fn, schema, reads_file)

    return wrap


def is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() is also true of `١٢٣` (which int() reads as 123)
    and `²` (which int() rejects with a message of Python's)."""
    return text.isascii() and text.isdigit()


# YAML 1.1's booleans and the environment's: the one spelling of true and false.
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


@validator({"type": ["string", "number"], "description": "a duration: 250ms, 10s, 1m30s, 2h, or seconds"})
def duration(value: object) -> float:
    return parse_duration(value)


@validator({"type": ["string", "number"], "description": "a duration such as 10s; 0 for none"})
def deadline(value: object) -> float | None:
    """A duration where 0 means "none" (no overall timeout, no watch)."""
    return parse_duration(value) or None


@validator({"type": ["string", "number"], "description": "a duration of more than 0"})
def positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be more than 0")
    return seconds


@validator({"enum": ["text", "json"]})
def log_format(value: object) -> str:
    text = string(value)
    if text not in ("text", "json"):
        raise ValueError(f"expected text or json, got {text!r}")
    return text


@validator({"type": ["string", "integer"], "description": "a signal: TERM, SIGTERM or 15"})
def signal(value: object) -> int:
    from waitfor.signals import parse_signal

    return parse_signal(value)


@validator({"type": "array", "items": {"type": "string"}})
def rewrites(values: object) -> Mapping[int, int]:
    """Repeated SIG:SIG -> {from: to}; 0 drops the signal."""
    from waitfor.signals import parse_rewrite

    items = values if isinstance(values, (list, tuple)) else [values]
    return MappingProxyType(dict(parse_rewrite(string(item)) for item in items))


def whole_number(value: object) -> int:
    """An int as given by a flag's constant (-q, -v)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {value!r}")
    return value


def sorted_list(values: object) -> list[object]:
    """A set, shown as a sorted list (validate's output)."""
    return sorted(values) if isinstance(values, (set, frozenset)) else [values]


def exit_code(value: object) -> int:
    text = string(value).strip()
    if not is_number(text) or not 0 <= int(text) <= 255:
        raise ValueError(f"expected an exit code 0-255, got {text!r}")
    return int(text)


@validator({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}})
def exit_codes(values: object) -> frozenset[int]:
    items = values if isinstance(values, (list, tuple)) else [values]
    return frozenset(exit_code(item) for item in items)


@validator({"type": "string", "description": "HOST:PORT, [IPv6]:PORT or :PORT (all interfaces)"})
def listen_addr(value: object) -> tuple[str, int]:
    """HOST:PORT, [::1]:PORT or :PORT (all interfaces) -> (host, port)."""
    text = string(value)
    host, sep, port = text.rpartition(":")
    if not sep or not is_number(port) or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") or host.endswith("]"):
        if not (host.startswith("[") and host.endswith("]")) or ":" not in host[1:-1] or "[" in host[1:-1] \
                or "]" in host[1:-1]:
            raise ValueError(f"expected HOST:PORT with an IPv6 address in brackets, got {text!r}")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"an IPv6 address goes in brackets: [::1]:PORT, got {text!r}")
    if "\0" in host or any(ch.isspace() for ch in host):
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host or "0.0.0.0", int(port)


@validator({"type": "boolean"})
def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in TRUE_WORDS + FALSE_WORDS:
        return value.lower() in TRUE_WORDS
    raise ValueError(f"expected true or false, got {value!r}")


def type_name(value: object) -> str:
    """What YAML gave, in YAML's words (not LList/LDict/NoneType)."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    return type(value).__name__


@validator({"type": "string"})
def string(value: object) -> str:
    # YAML reads true/yes/on as a boolean: str() would make it "True", so ask for quotes.
    if isinstance(value, (dict, list, bool)) or value is None:
        hint = " (quote it)" if isinstance(value, bool) else ""
        raise ValueError(f"expected a string, got {type_name(value)}{hint}")
    return str(value)


@validator({"type": "integer", "minimum": 1})
def positive_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    text = str(value).strip()
    if not is_number(text.lstrip("+-")):
        raise ValueError(f"expected a whole number, got {value!r}")
    n = int(text)
    if n < 1:
        raise ValueError(f"must be at least 1, got {n}")
    return n


@validator({"type": "array", "items": {"type": "string"}})
def string_list(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise ValueError(f"expected a list of strings, got {type_name(value)}")
    return tuple(string(v) for v in value)


@validator({"type": "array", "items": {"type": "string"}, "minItems": 1})
def argv(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list: [program, arg, ...] (no shell is used)")
    return tuple(string(v) for v in value)


@validator({"type": "object", "additionalProperties": {"type": "string"}})
def string_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of names to strings, got {type_name(value)}")
    return {str(k): string(v) for k, v in value.items()}


@validator({"type": "string", "format": "regex"})
def regex(value: object) -> re.Pattern[str]:
    import re  # here, not at start-up: `waitfor -- app` never needs it

    try:
        return re.compile(string(value))
    except re.error as e:
        raise ValueError(f"bad regular expression: {e}") from None


@validator(
    {
        "oneOf": [
            {"type": "integer", "minimum": 100, "maximum": 599},
            {"type": "string", "pattern": "^[1-5]xx$"},
            {"type": "array", "items": {"type": ["integer", "string"]}},
        ],
        "description": "an HTTP status, a class such as 2xx, or a list of those",
    }
)
def http_status(value: object) -> frozenset[int]:
    """An int, "2xx", or a list of either -> the set of accepted status codes."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("an empty list accepts no status: give at least one, such as [200, 204]")
    codes: set[int] = set()
    for item in items:
        s = str(item).strip().lower()
        import re

        if re.fullmatch(r"[1-5]xx", s):
            base = int(s[0]) * 100
            codes.update(range(base, base + 100))
        elif re.fullmatch(r"[1-5]\d\d", s) and not isinstance(item, bool):
            codes.add(int(s))
        else:
            raise ValueError(f"bad HTTP status {item!r} (use 200, \"2xx\" or a list of them)")
    return frozenset(codes)


@validator({"type": "string", "description": "the path of a readable regular file"}, reads_file=True)
def readable_file(value: object) -> str:
    """A readable regular file of at most 4 MiB (password_file, ca_file), checked now."""
    from waitfor.config.files import check_readable

    path = string(value)
    check_readable(path)
    return path


def read_secret_file(path: str) -> str:
    """waitfor.config.files.read_secret (the probes' password_file reader, kept here for them)."""
    from waitfor.config.files import read_secret

    return read_secret(path)


# Where `secrets_env: true` looks (issue 16 B6): Docker's, compose's and swarm's secrets
# folder, as the official images' file_env is used with it. Only a file directly inside
# is a secret: Kubernetes' service-account token and EKS's web-identity token live in
# sub-folders of /var/run/secrets (/var/run is /run), and their programs re-read them.
SECRETS_DIRS = ("/run/secrets",)


@validator({"type": "array", "items": {"type": "string"},
            "description": "folders whose files secrets_env: true takes (default [/run/secrets])"})
def secrets_dirs(value: object) -> tuple[str, ...]:
    """The `secrets_dirs` setting (waitfor.config.secrets_env uses it): absolute folders, a YAML list, repeated --secrets-dir,
    or comma-separated in WAITFOR_SECRETS_DIRS."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        raise ValueError("expected a list of absolute folders (/run/secrets)")
    out = []
    for item in value:
        if not isinstance(item, str) or not item.startswith("/") or "\0" in item:
            raise ValueError(f"expected absolute folders (/run/secrets), got {item!r}")
        out.append(os.path.normpath(item))
    return tuple(dict.fromkeys(out))


@validator({"oneOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "string"}}],
               "description": "true: every NAME_FILE whose file is directly inside secrets_dirs; or the NAMEs whose NAME_FILE is read, wherever"})
def secrets_env(value: object) -> bool | tuple[str, ...]:
    """true/false, or which NAMEs (a list, or comma-separated in WAITFOR_SECRETS_ENV)."""
    if isinstance(value, str) and value.strip().lower() not in TRUE_WORDS + FALSE_WORDS:
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        names = string_list(value)
        for name in names:
            if not name.isidentifier() or not name.isascii() or name.endswith("_FILE"):
                raise ValueError(f"expected variable names without _FILE (DB_PASSWORD), got {name!r}")
        return names or False
    return boolean(value)


@validator({"type": "array", "items": {"oneOf": [
    {"type": "string", "description": "SRC:DEST"},
    {"type": "object", "required": ["src", "dest"], "additionalProperties": False,
     "properties": {"src": {"type": "string"}, "dest": {"type": "string"},
                    "mode": {"type": ["string", "integer"], "description": "octal, such as 0640"}}}]}})
def templates(value: object) -> tuple[tuple[str, str, int | None], ...]:
    """A list of {src, dest, mode} (YAML) or of SRC:DEST (--template) -> ((src, dest, mode), ...)."""
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        where = f"item {i + 1}: " if len(items) > 1 else ""
        if isinstance(item, dict):
            unknown = sorted(set(item) - {"src", "dest", "mode"})
            if unknown or "src" not in item or "dest" not in item:
                raise ValueError(f"{where}expected a mapping with src:, dest: and optionally mode:"
                                 + (f" (unknown key {unknown[0]})" if unknown else ""))
            src, dest, mode = string(item["src"]), string(item["dest"]), item.get("mode")
        else:
            src, sep, dest = string(item).partition(":")
            mode = None
            if not sep:
                raise ValueError(f"{where}expected SRC:DEST, got {item!r}")
        if not src or not dest or dest.endswith("/"):
            raise ValueError(f"{where}expected a source file and a destination file, got {src!r} -> {dest!r}")
        out.append((src, dest, None if mode is None else file_mode(mode)))
    return tuple(out)


def file_mode(value: object) -> int:
    """A mode as chmod reads it: up to four octal digits, however YAML typed them (`644` is
    the int 644, `0644` the string "0644": waitfor.config.yamlfile keeps what was written),
    or "0o644". Set-user-id, set-group-id and sticky bits are refused: a rendered config
    file has no use for them, and a set-id file owned by the app's user is a way back."""
    if isinstance(value, bool):
        raise ValueError(f"expected an octal file mode such as 0640, got {value!r}")
    text = str(value) if isinstance(value, int) else string(value).strip()
    digits = text[2:] if text[:2].lower() == "0o" else text
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 4 and "8" not in digits and "9" not in digits):
        raise ValueError(f"expected an octal file mode such as 0640, got {text!r}")
    mode = int(digits, 8)
    if mode > 0o777:
        raise ValueError(f"set-user-id, set-group-id and sticky bits are not allowed, got {text!r} "
                         "(give three digits, such as 0640)")
    return mode


def show_templates(value: object) -> object:
    if not isinstance(value, tuple):
        return value
    return [{"src": s, "dest": d, **({"mode": f"0{m:o}"} if m is not None else {})} for s, d, m in value]


LEFTOVER_POLICIES = ("kill", "term", "keep")


@validator({"enum": list(LEFTOVER_POLICIES)})
def leftovers(value: object) -> str:
    text = string(value).strip().lower()
    if text not in LEFTOVER_POLICIES:
        raise ValueError(f"expected one of {', '.join(LEFTOVER_POLICIES)}, got {text!r}")
    return text


@validator({"type": ["string", "integer"], "description": "a signal: TERM, SIGKILL or 9; none or 0 for off"})
def optional_signal(value: object) -> int:
    if value in (0, "0", "none", "") or value is None:
        return 0
    return signal(value)
