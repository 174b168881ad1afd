"""Small validators for config values. Each turns a raw YAML/flag value into a typed
value or raises ValueError with a message for users, and carries the JSON Schema
fragment that `waitfor schema` prints for it."""

from __future__ import annotations

import os
from types import MappingProxyType

from waitfor.config.durations import parse_duration

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Callable, Mapping
    from typing import Any, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])


def _with_schema(schema: dict[str, Any]) -> Callable[[F], F]:
    def wrap(fn: F) -> F:
        fn.schema = schema  # type: ignore[attr-defined]
        return fn

    return wrap


@_with_schema({"type": ["string", "number"], "description": "a duration: 250ms, 10s, 1m30s, 2h, or seconds"})
def duration(value: object) -> float:
    return parse_duration(value)


@_with_schema({"type": ["string", "number"], "description": "a duration such as 10s; 0 for none"})
def deadline(value: object) -> float | None:
    """A duration where 0 means "none" (no overall timeout, no watch)."""
    return parse_duration(value) or None


@_with_schema({"type": ["string", "number"], "description": "a duration of more than 0"})
def positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be more than 0")
    return seconds


@_with_schema({"enum": ["text", "json"]})
def log_format(value: object) -> str:
    text = string(value)
    if text not in ("text", "json"):
        raise ValueError(f"expected text or json, got {text!r}")
    return text


@_with_schema({"type": ["string", "integer"], "description": "a signal: TERM, SIGTERM or 15"})
def signal(value: object) -> int:
    from waitfor.signals import parse_signal

    return parse_signal(value)


@_with_schema({"type": "array", "items": {"type": "string"}})
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
    if not text.isdigit() or not 0 <= int(text) <= 255:
        raise ValueError(f"expected an exit code 0-255, got {text!r}")
    return int(text)


@_with_schema({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}})
def exit_codes(values: object) -> frozenset[int]:
    items = values if isinstance(values, (list, tuple)) else [values]
    return frozenset(exit_code(item) for item in items)


@_with_schema({"type": "string", "description": "HOST:PORT, [IPv6]:PORT or :PORT (all interfaces)"})
def listen_addr(value: object) -> tuple[str, int]:
    """HOST:PORT, [::1]:PORT or :PORT (all interfaces) -> (host, port)."""
    text = string(value)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
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


@_with_schema({"type": "boolean"})
def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.lower() in ("true", "yes", "on", "1")
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


@_with_schema({"type": "string"})
def string(value: object) -> str:
    # YAML reads true/yes/on as a boolean: str() would make it "True", so ask for quotes.
    if isinstance(value, (dict, list, bool)) or value is None:
        hint = " (quote it)" if isinstance(value, bool) else ""
        raise ValueError(f"expected a string, got {type_name(value)}{hint}")
    return str(value)


@_with_schema({"type": "integer", "minimum": 1})
def positive_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    try:
        n = int(str(value))
    except ValueError:
        raise ValueError(f"expected a whole number, got {value!r}") from None
    if n < 1:
        raise ValueError(f"must be at least 1, got {n}")
    return n


@_with_schema({"type": "array", "items": {"type": "string"}})
def string_list(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise ValueError(f"expected a list of strings, got {type_name(value)}")
    return tuple(string(v) for v in value)


@_with_schema({"type": "array", "items": {"type": "string"}, "minItems": 1})
def argv(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list: [program, arg, ...] (no shell is used)")
    return tuple(string(v) for v in value)


@_with_schema({"type": "object", "additionalProperties": {"type": "string"}})
def string_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of names to strings, got {type_name(value)}")
    return {str(k): string(v) for k, v in value.items()}


@_with_schema({"type": "string", "format": "regex"})
def regex(value: object) -> re.Pattern[str]:
    import re  # here, not at start-up: `waitfor -- app` never needs it

    try:
        return re.compile(string(value))
    except re.error as e:
        raise ValueError(f"bad regular expression: {e}") from None


@_with_schema(
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


# A CA bundle is some hundred KiB (Debian's: 220 KiB), a password or token less than one.
MAX_FILE = 4 << 20
MAX_SECRET = 64 << 10


def _open_small(path: str, limit: int) -> int:
    """An fd of `path` if it is a regular file of at most `limit` bytes, or /dev/null (an
    empty secret, as in deps.example.yaml). Never blocks: a FIFO would block the first
    attempt for ever, and /dev/zero or a device would be read without end. ValueError."""
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.stat(os.devnull).st_rdev:
            return fd
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"cannot read {path}: not a regular file")
        if st.st_size > limit:
            size = f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"
            raise ValueError(f"cannot read {path}: larger than {size}")
    except BaseException:
        os.close(fd)
        raise
    return fd


@_with_schema({"type": "string", "description": "the path of a readable regular file"})
def readable_file(value: object) -> str:
    """A readable regular file of at most MAX_FILE bytes (password_file, ca_file)."""
    import os

    path = string(value)
    os.close(_open_small(path, MAX_FILE))
    return path


readable_file.reads_file = True  # type: ignore[attr-defined]  # skipped by validate --offline


def read_secret_file(path: str) -> str:
    """Docker and Kubernetes secret files often end with a newline that is not part of it.
    A regular file of at most MAX_SECRET bytes (ValueError otherwise)."""
    import os

    fd = _open_small(path, MAX_SECRET)
    try:
        data = os.read(fd, MAX_SECRET + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET:  # it grew since fstat
        raise ValueError(f"cannot read {path}: larger than {MAX_SECRET >> 10} KiB")
    return data.decode("utf-8").rstrip("\r\n")


@_with_schema({"type": ["string", "integer"],
               "description": "USER[:GROUP], a name or a number for each (as gosu and su-exec take it)"})
def user(value: object) -> tuple[str, int, int, tuple[int, ...], str]:
    """USER[:GROUP] -> (spec, uid, gid, supplementary gids, home), resolved now with pwd/grp,
    so that the lean supervisor gets numbers (and imports neither).

    As gosu and su-exec: the user's primary group and its groups from the group database
    (initgroups(3)) unless GROUP is given, then no supplementary group at all. A number
    that is not in the password database is taken as is, with gid 0 and HOME / unless
    GROUP is given, as `docker run --user 1234` does."""
    import grp
    import pwd

    spec = str(value) if isinstance(value, int) and not isinstance(value, bool) else string(value)
    name, sep, group = spec.partition(":")
    if not name or (sep and not group):
        raise ValueError(f"expected USER or USER:GROUP, got {spec!r}")
    try:
        pw = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        if not name.isdigit():
            raise ValueError(f"unknown user {name!r} (not in the password database)") from None
        pw = None
    except OverflowError:
        raise ValueError(f"user id out of range: {name}") from None
    uid = pw.pw_uid if pw else int(name)
    home = pw.pw_dir if pw else "/"
    if group:
        try:
            gid = grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            if not group.isdigit():
                raise ValueError(f"unknown group {group!r} (not in the group database)") from None
            gid = int(group)
        except OverflowError:
            raise ValueError(f"group id out of range: {group}") from None
        groups: tuple[int, ...] = ()
    elif pw:
        gid = pw.pw_gid
        groups = tuple(dict.fromkeys(os.getgrouplist(pw.pw_name, gid)))
    else:
        gid, groups = 0, (0,)
    if uid > 0xFFFFFFFE or gid > 0xFFFFFFFE:
        raise ValueError(f"id out of range in {spec!r}")
    return spec, uid, gid, groups, home


def show_user(value: object) -> object:
    return value[0] if isinstance(value, tuple) else value


@_with_schema({"oneOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "string"}}],
               "description": "true: every NAME_FILE variable; or the NAMEs whose NAME_FILE is read"})
def secrets_env(value: object) -> bool | tuple[str, ...]:
    """true/false, or which NAMEs (a list, or comma-separated in WAITFOR_SECRETS_ENV)."""
    if isinstance(value, str) and value.strip().lower() not in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        names = string_list(value)
        for name in names:
            if not name.isidentifier() or not name.isascii() or name.endswith("_FILE"):
                raise ValueError(f"expected variable names without _FILE (DB_PASSWORD), got {name!r}")
        return names or False
    return boolean(value)


@_with_schema({"type": "array", "items": {"oneOf": [
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
    """0640 as YAML 1.1 reads it (an int: 416), or the string "0640" / "640" (octal)."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        text = string(value).strip()
        try:
            mode = int(text[2:] if text.lower().startswith("0o") else text, 8)
        except ValueError:
            raise ValueError(f"expected an octal file mode such as 0640, got {text!r}") from None
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"expected an octal file mode such as 0640, got {oct(mode)}")
    return mode


def show_templates(value: object) -> object:
    if not isinstance(value, tuple):
        return value
    return [{"src": s, "dest": d, **({"mode": f"0{m:o}"} if m is not None else {})} for s, d, m in value]


LEFTOVER_POLICIES = ("kill", "term", "keep")


@_with_schema({"enum": list(LEFTOVER_POLICIES)})
def leftovers(value: object) -> str:
    text = string(value).strip().lower()
    if text not in LEFTOVER_POLICIES:
        raise ValueError(f"expected one of {', '.join(LEFTOVER_POLICIES)}, got {text!r}")
    return text


@_with_schema({"type": ["string", "integer"], "description": "a signal: TERM, SIGKILL or 9; none or 0 for off"})
def optional_signal(value: object) -> int:
    if value in (0, "0", "none", "") or value is None:
        return 0
    return signal(value)
