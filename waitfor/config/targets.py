"""Dependencies: a target URL or a YAML item becomes a Dependency (kind, name, options,
secrets, where it was defined); then the names are made unique and the `after:` graph is
checked. The kind's module is only asked what it accepts (OPTIONS, PORT, check_url) and
whether its driver is installed (found with importlib.util.find_spec): no driver is
imported here. Building the probes, which imports the drivers, is the next stage
(waitfor.probes.table.build_probe).
"""

from __future__ import annotations

from waitfor.config import validators as v
from waitfor.config.model import COMMON_KEYS, Dependency
from waitfor.errors import UsageError, at

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import TypeVar

    from waitfor.config.yamlfile import LDict

    T = TypeVar("T")


def _bad(where: str, url: str, why: str) -> UsageError:
    """A bad-URL error built from the masked URL only: the text of urllib's own errors can
    echo any part of the URL, a password included ('S3cr3t' does not appear to be an IPv4
    or IPv6 address)."""
    from waitfor.secrets import mask_url

    return at(where, f"bad URL {mask_url(url)!r}: {why}")


def _check_brackets(url: str, where: str) -> None:
    """`[::1]:6379` only: urlsplit accepts `[::1]]:6379` and `[::1]x:6379` (it reads the
    host up to the first `]` and ignores the rest), which would probe another address."""
    netloc = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    hostport = netloc.rpartition("@")[2]
    if "[" not in hostport and "]" not in hostport:
        return
    close = hostport.find("]")
    rest = hostport[close + 1:]
    if not hostport.startswith("[") or close < 0 or "[" in hostport[1:] or "]" in rest \
            or (rest and not rest.startswith(":")):
        raise _bad(where, url, "malformed brackets (write an IPv6 address as [::1]:5432)")


def _scheme_typo(text: str, where: str, schemes: Iterable[str]) -> None:
    """`http//host/x`, `http:/host/x`, `http:host/x` (issue 16 E21): a scheme whose `://` is
    mistyped would be read as a tcp host:port, and reported against `tcp://http//...`, a
    URL the user never wrote. Report what was written, masked, and the URL meant."""
    import re

    from waitfor.secrets import mask_url

    m = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)(//|:/|:)(?=[^/\d])", text)
    if not m or m.group(1).lower() not in schemes:
        return
    meant = f"{m.group(1)}://{text[m.end():]}"
    shown = mask_url(meant)
    written = m.group(0) + shown.split("://", 1)[1]
    raise at(where, f"bad target {written!r}: {m.group(1)}{m.group(2)} is no scheme (did you mean {shown!r}?)")


def parse_target_url(text: str, where: str) -> tuple[str, str]:
    """-> (kind, url). Bare `host:port` means tcp://host:port."""
    from waitfor.probes import table
    from waitfor.secrets import mask_url
    from waitfor.urls import urlsplit

    text = text.strip()
    if not text:
        raise at(where, "empty target")
    if "://" not in text:
        _scheme_typo(text, where, table.SCHEMES)
        text = "tcp://" + text
    scheme = text.split("://", 1)[0].lower()
    kind = table.SCHEMES.get(scheme)
    if kind is None:
        known = ", ".join(sorted(table.SCHEMES))
        if not (scheme[:1].isalpha() and all(c.isalnum() or c in "+-." for c in scheme) and scheme.isascii()):
            # not a scheme (RFC 3986 3.1): `user:pass@host://`, whose "scheme" is a password
            raise at(where, f"bad URL: no scheme before :// (known: {known})")
        import difflib

        close = difflib.get_close_matches(scheme, table.SCHEMES, n=1, cutoff=0.7)
        hint = f"did you mean {close[0]}://? " if close else ""
        raise at(where, f"unknown scheme {scheme!r} in {mask_url(text)!r} ({hint}known: {known})")
    _check_brackets(text, where)
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a bad port
    except ValueError as e:
        rest = text.split("://", 1)[1]
        if str(e).startswith("Port"):
            why = "the port is not a number" if "could not be cast" in str(e) else "the port is out of range"
            if "@" in rest:
                why += " (in a password, write / ? # @ as %2F %3F %23 %40)"
            elif rest.split("/", 1)[0].count(":") > 1 and "[" not in rest:
                why += " (an IPv6 address goes in brackets: [::1]:5432)"
        elif "@" in rest:
            why = "the host is not valid (in a password, write [ ] / ? # @ as %5B %5D %2F %3F %23 %40)"
        else:
            why = "the host is not a valid address (an IPv6 address goes in brackets: [::1]:5432)"
        raise _bad(where, text, why) from None
    mod = table.load(kind)
    # PORT: "required", a default port number, or None when the kind has no port.
    if mod.PORT is not None:
        if not parts.hostname:
            raise _bad(where, text, "no host")
        if port is None and mod.PORT == "required":
            raise _bad(where, text, "no port (write host:port)")
        if port == 0:
            raise _bad(where, text, "port 0")
    try:
        mod.check_url(parts)
    except ValueError as e:
        from waitfor.secrets import redact, url_secrets

        raise _bad(where, text, redact(str(e), url_secrets(text))) from None
    return kind, text


def _default_name(kind: str, url: str, argv: tuple[str, ...]) -> str:
    from waitfor.secrets import mask_url, mask_urls_in

    if kind == "command":
        return mask_urls_in(" ".join(argv))[:60]
    masked = mask_url(url)
    return masked[len("tcp://"):] if kind == "tcp" else masked


def from_target(text: str, where: str, offline: bool = False) -> Dependency:
    """A dependency from a target URL on the command line or in WAITFOR_TARGETS."""
    kind, url = parse_target_url(text, where)
    return _dependency(kind, url=url, argv=(), options={}, name=None, timeout=None, after=(),
                       invert=False, where=where, where_of=lambda key: where, offline=offline)


def from_yaml(item: object, path: str, index: int, section: str, line: int = 0,
              offline: bool = False) -> Dependency:
    """A dependency from one item of `dependencies:` or `health:` (a URL or a mapping).
    `offline` (validate --offline): secret files and drivers need not be present."""
    line_here = getattr(item, "line", 0) or line
    if isinstance(item, str):
        return from_target(item, f"{path}:{line_here or '?'}: {section}[{index}]", offline)
    if not isinstance(item, dict):
        raise UsageError(f"{path}:{line_here or '?'}: {section}[{index}]: expected a URL or a mapping")
    mapping: LDict = item  # type: ignore[assignment]

    def where_of(key: str) -> str:
        return f"{path}:{mapping.lines.get(key, mapping.line)}: {section}[{index}].{key}"

    here = f"{path}:{mapping.line}: {section}[{index}]"
    if ("url" in mapping) == ("command" in mapping):
        raise UsageError(f"{here}: give exactly one of url: or command:")

    def get(key: str, parse: Callable[[object], T], default: T) -> T:
        if key not in mapping:
            return default
        try:
            return parse(mapping[key])
        except ValueError as e:
            raise at(where_of(key), str(e)) from None

    argv: tuple[str, ...] = ()
    if "command" in mapping:
        kind, url, argv = "command", "", get("command", v.argv, ())
    else:
        kind, url = parse_target_url(get("url", v.string, ""), where_of("url"))
    from waitfor.probes import table

    allowed = table.load(kind).OPTIONS
    options = {}
    for key in mapping:
        if key in COMMON_KEYS:
            continue
        if key not in allowed:
            hint = f" (options of a {kind} dependency: {', '.join(sorted(allowed))})" if allowed else ""
            raise at(where_of(key), f"unknown key, or an option that does not belong to a {kind} dependency{hint}")
        parse = allowed[key]
        if offline and isinstance(parse, v.Validator) and parse.reads_file:
            parse = v.string  # validate --offline: the file need not exist on this machine
        options[key] = get(key, parse, None)
    return _dependency(
        kind, url=url, argv=argv, options=options,
        name=get("name", v.string, None), timeout=get("timeout", v.deadline, None),
        after=get("after", v.string_list, ()), invert=get("invert", v.boolean, False),
        where=here, where_of=where_of, offline=offline,
    )


def _dependency(kind: str, *, url: str, argv: tuple[str, ...], options: dict[str, object], name: object,
                timeout: float | None, after: tuple[str, ...], invert: bool, where: str,
                where_of: Callable[[str], str], offline: bool = False) -> Dependency:
    from waitfor.probes import table
    from waitfor.secrets import header_secrets, url_secrets, urls_in

    mod = table.load(kind)
    secrets = url_secrets(url) if url else set()
    for arg in argv:  # a command's arguments may hold a DSN with a password
        for found in urls_in(arg):
            try:
                secrets |= url_secrets(found)
            except ValueError:
                pass
    for key in mod.SECRET_OPTIONS:
        val = options.get(key)
        if isinstance(val, dict):
            for one in val.values():
                secrets |= header_secrets(one)
        elif isinstance(val, str):
            secrets.add(val)
    if "password_file" in options and not offline:
        try:
            secrets.add(v.read_secret_file(str(options["password_file"])))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise at(where_of("password_file"), f"cannot read: {why}") from None
    if mod.DRIVER is not None and not offline:
        import importlib.util

        try:
            found_driver = importlib.util.find_spec(mod.DRIVER) is not None
        except (ImportError, ValueError):  # a dotted name whose parent package is missing
            found_driver = False
        if not found_driver:
            raise at(where, f"the {kind} driver ({mod.DRIVER}) is not installed: {table.driver_hint(kind)}")
    return Dependency(
        name=str(name) if name else _default_name(kind, url, argv), named=bool(name), kind=kind, url=url,
        argv=tuple(argv), options=v.MappingProxyType(options), timeout=timeout, after=tuple(after),
        invert=invert, secrets=frozenset(s for s in secrets if s), where=where,
    )


def check_graph(deps: Iterable[Dependency], section: str) -> None:
    """Unique names; `after:` names exist; no cycles (a cycle would wait forever). The walk
    is iterative: an `after:` chain thousands long is no RecursionError."""
    names: dict[str, Dependency] = {}
    for d in deps:
        if d.name in names:
            raise UsageError(f"{d.where}: name {d.name!r} is used twice in {section} (set name: to tell them apart)")
        names[d.name] = d
    for d in names.values():
        for a in d.after:
            if a not in names:
                raise UsageError(f"{d.where}: after: no dependency is named {a!r}")
            if a == d.name:
                raise UsageError(f"{d.where}: after: {a!r} waits for itself")
    done: set[str] = set()
    for root in names:
        if root in done:
            continue
        trail: list[str] = [root]
        on_trail = {root}
        stack = [iter(names[root].after)]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                finished = trail.pop()
                on_trail.discard(finished)
                done.add(finished)
                continue
            if nxt in on_trail:
                cycle = [*trail[trail.index(nxt):], nxt]
                raise UsageError(f"{names[nxt].where}: after: cycle {' -> '.join(cycle)}")
            if nxt not in done:
                trail.append(nxt)
                on_trail.add(nxt)
                stack.append(iter(names[nxt].after))


def uniquify(deps: list[Dependency]) -> list[Dependency]:
    """Targets from different places may share a default name; suffix repeats with #2, #3.
    A name given with `name:` is kept as it is: given twice, it is an error (check_graph)."""
    used = {d.name for d in deps if d.named}
    seen: dict[str, int] = {}
    out = []
    for d in deps:
        if not d.named:
            n = seen.get(d.name, 0) + 1
            seen[d.name] = n
            base, name = d.name, d.name if n == 1 else f"{d.name}#{n}"
            while name in used:
                n += 1
                seen[base] = n
                name = f"{base}#{n}"
            used.add(name)
            if name != d.name:
                d = d._replace(name=name)
        out.append(d)
    return out


def split_targets(text: str) -> list[str]:
    """WAITFOR_TARGETS: targets separated by spaces or commas."""
    return [t for t in text.replace(",", " ").split() if t]
