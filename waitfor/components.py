"""What this install of waitfor is made of, for `waitfor --version --verbose` (issue 18):
the interpreter, the OpenSSL it links, the C library, every Python distribution and, in a
bundle, every shared library. A bundle's SBOM (packaging/sbom.py, dist/NAME.cdx.json and
sbom.cdx.json in the folder) lists the same components; this is the view from inside the
running program, for an image whose SBOM was lost on the way.

Imported only by that flag: ssl and importlib.metadata stay off the start-up path.
"""

from __future__ import annotations

import os
import platform
import re
import sys

SO = re.compile(r"\.so(\.[0-9.]+)?$")


def _distributions() -> list[tuple[str, str]]:
    """(name, version) of the bundle's distributions (their .dist-info in the folder), or of
    waitfor's installed requirements, transitively, for a pip install."""
    from importlib import metadata

    if getattr(sys, "frozen", False):
        dists = metadata.distributions(path=[sys._MEIPASS])  # type: ignore[attr-defined]
        return sorted({(d.metadata["Name"], d.version) for d in dists}, key=lambda nv: nv[0].lower())
    seen: dict[str, tuple[str, str]] = {}
    todo: list[tuple[str, set[str] | None]] = [("waitfor", None)]  # None: every extra but test
    while todo:
        name, extras = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a driver extra that is not installed
        seen[key] = (dist.metadata["Name"], dist.version)
        for req in dist.requires or ():
            # Only the extras asked for (psycopg[binary]); waitfor's extras are its drivers,
            # listed when installed, and its test tools, which are not.
            extra = re.search(r"""extra\s*==\s*["']([^"']+)""", req)
            if extra and (extra.group(1) == "test" if extras is None else extra.group(1) not in extras):
                continue
            m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^]]*)\])?", req)
            if m:
                todo.append((m.group(1), {e.strip() for e in (m.group(2) or "").split(",")}))
    return sorted(seen.values(), key=lambda nv: nv[0].lower())


def _libraries() -> list[str]:
    """Every shared library in a bundle's folder (relative paths; not the symbolic links
    PyInstaller makes to them); none for a pip install, which uses the system's."""
    if not getattr(sys, "frozen", False):
        return []
    top = sys._MEIPASS  # type: ignore[attr-defined]
    found = []
    for folder, dirs, files in os.walk(top):
        dirs.sort()
        found += [os.path.relpath(os.path.join(folder, f), top) for f in files
                  if SO.search(f) and not os.path.islink(os.path.join(folder, f))]
    return sorted(found)


def _libc() -> str:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or "unknown"
    except (ValueError, OSError):  # not glibc
        return " ".join(platform.libc_ver()) or "unknown"


def lines(version: str) -> list[str]:
    import ssl

    frozen = getattr(sys, "frozen", False)
    where = os.path.dirname(sys.executable) if frozen else sys.prefix
    out = [f"waitfor {version} ({'bundle' if frozen else 'pip install'} in {where}, {platform.machine()})",
           f"cpython {platform.python_version()}",
           f"openssl {ssl.OPENSSL_VERSION}",
           f"libc {_libc()} (the system's)"]
    out.append("python packages:")
    out += [f"  {name} {ver}" for name, ver in _distributions()]
    libs = _libraries()
    if libs:
        out.append("shared libraries:")
        out += [f"  {lib}" for lib in libs]
    return out
