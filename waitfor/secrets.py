"""Keep secrets out of every line waitfor prints.

As wait4x does before it logs a DSN, passwords in URLs are masked. On top of that each
dependency carries the set of secret strings it knows (URL passwords, header values,
password files, options marked secret), and every message about it passes through
`redact`, so a driver's error text that echoes a secret is masked too.
"""

from __future__ import annotations

import re

from waitfor.urls import unquote, unquote_plus, urlsplit, urlunsplit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

MASK = "***"
# A query key is secret when its decoded, lower-cased name contains one of these: that
# covers password, passwd, sslpassword, pass%77ord (libpq decodes it to password), pwd,
# client_secret, token, access-token, api-key, apikey, sslkey, credentials, auth, authToken.
# Over-masking a harmless key costs a `***` in a log line; under-masking leaks.
_SECRET_KEY_PARTS = ("pass", "pwd", "secret", "token", "key", "credential", "auth")
# Patterns are compiled on first use (re keeps them): compiling all at import would cost
# start-up time that a URL without a query never needs.
_QUERY_PAIR = r"([^&=;]+)=([^&;]*)"


def secret_query_key(key: str) -> bool:
    name = unquote_plus(key).strip().lower()
    return any(part in name for part in _SECRET_KEY_PARTS)


# Schemes whose lone userinfo is a token, not a user name: nats://TOKEN@host (as nats-py
# reads it) and https://TOKEN@host (GitHub/GitLab-style tokens; sent as Basic credentials).
TOKEN_USERINFO_SCHEMES = ("nats", "http", "https")


def mask_url(url: str) -> str:
    """Replace the password in `scheme://user:pass@host` and secret-looking query values."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        # Unparseable (`[` in a password, a bad port): mask all the userinfo but a user
        # name, up to the last @ of the authority, without trusting the parser.
        scheme, sep, rest = url.partition("://")
        if sep and "@" in rest:
            userinfo, _, after = rest.rpartition("@")
            user, colon, _password = userinfo.partition(":")
            rest = f"{user}:{MASK}@{after}" if colon else f"{MASK}@{after}"
        head, qmark, query = rest.partition("?")
        masked_query = re.sub(_QUERY_PAIR,
            lambda m: f"{m.group(1)}={MASK}" if secret_query_key(m.group(1)) else m.group(0), query)
        return f"{scheme}{sep}{head}{qmark}{masked_query}"
    netloc = parts.netloc
    if "@" not in netloc and "@" in url:
        try:
            _ = parts.port
        except ValueError:
            # `u:pa/ss@host`: a password with an unencoded / ? or # ends the netloc early,
            # and the rest of it looks like a port. Mask up to the last @.
            return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/:@?#]*:).*@", r"\1" + MASK + "@", url, flags=re.S)
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{MASK}@{hostport}"
        elif parts.scheme in TOKEN_USERINFO_SCHEMES:
            netloc = f"{MASK}@{hostport}"
    query = parts.query and re.sub(
        _QUERY_PAIR, lambda m: f"{m.group(1)}={MASK}" if secret_query_key(m.group(1)) else m.group(0),
        parts.query,
    )
    # Edit the URL as written: urlunsplit would turn unix:///x into unix:/x.
    out = url
    if netloc != parts.netloc:
        if "//" + parts.netloc not in out:
            return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
        out = out.replace("//" + parts.netloc, "//" + netloc, 1)
    if query != parts.query:
        if "?" + parts.query not in out:
            return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
        out = out.replace("?" + parts.query, "?" + query, 1)
    return out


_URL_IN_TEXT = r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+"


def urls_in(text: str) -> list:
    return re.findall(_URL_IN_TEXT, text)


def mask_urls_in(text: str) -> str:
    """mask_url for every URL inside free text, such as a command's argument `--dsn=pg://u:pw@h`."""
    return re.sub(_URL_IN_TEXT, lambda m: mask_url(m.group(0)), text) if "://" in text else text


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace each known secret string (longest first) in `text`."""
    for secret in sorted((s for s in secrets if s and len(s) >= 3), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def url_secrets(url: str) -> set[str]:
    """The password of a URL as written and decoded, the Basic credentials made of it, and
    the values of secret-looking query parameters (?token=...): all masked in messages."""
    import base64

    parts = urlsplit(url)
    found: set[str] = set()
    try:
        password, username = parts.password, parts.username
    except ValueError:
        password = username = None
    if password:
        found.update({password, unquote(password)})
        cred = f"{unquote(username or '')}:{unquote(password)}".encode()
        found.add(base64.b64encode(cred).decode())
    elif username and parts.scheme in TOKEN_USERINFO_SCHEMES:
        found.update({username, unquote(username)})  # nats://TOKEN@host
        found.add(base64.b64encode(f"{unquote(username)}:".encode()).decode())  # http Basic
    for m in re.finditer(_QUERY_PAIR, parts.query) if parts.query else ():
        key, val = m.group(1), m.group(2)
        if val and secret_query_key(key):
            found.update({val, unquote(val), unquote_plus(val)})
    return found


def header_secrets(value: str) -> set[str]:
    """A header value, and its credentials alone: `Bearer abc` -> also `abc`."""
    found = {value}
    _scheme, sep, cred = value.strip().partition(" ")
    if sep and cred.strip():
        found.add(cred.strip())
    return found
