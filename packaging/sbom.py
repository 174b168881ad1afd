"""The bill of materials of one bundle (issue 18), as CycloneDX 1.6 JSON on stdout:

    python packaging/sbom.py BUNDLE_DIR NAME SOURCES_JSON > NAME.cdx.json

(SOURCES_JSON: each bundled binary's original path, written by packaging/waitfor.spec.)

Run by packaging/bundle.sh with the build venv's interpreter (the one it froze, so its
version, its OpenSSL and its shared libraries are the bundle's). The document is made with
cyclonedx-python-lib (the library of cyclonedx-bom, from PyPI; not written by hand), from
what is in the bundle folder, not from what was asked for:

- CPython: this interpreter's version (a Debian package when dpkg owns its libpython);
- OpenSSL: the version this interpreter's ssl module links (the libssl in the bundle);
- every Python distribution whose .dist-info the bundle carries (packaging/waitfor.spec
  copies the metadata of each distribution a bundled file comes from), with its license;
- every shared library (*.so, *.so.N) in the bundle, with its sha256 and where it comes
  from: the Python distribution whose RECORD lists it, the Debian package that owns the
  original file (dpkg -S of its exact path, with that package's version), or the
  interpreter's own installation (e.g. pyenv's, which no package owns).

Reproducible: no random serial number (a UUID5 of the content) and the time stamp is
SOURCE_DATE_EPOCH. `waitfor --version --verbose` prints the same components at run time.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import ssl
import subprocess
import sys
import sysconfig
import uuid
from datetime import datetime, timezone
from importlib.metadata import PathDistribution
from pathlib import Path

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import LicenseExpression
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

SO = re.compile(r"\.so(\.[0-9.]+)?$")
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Dpkg:
    """Which Debian package owns which file, asked once for every file (dpkg-query reads its
    whole database at each call: one call per library took minutes on a loaded machine)."""

    def __init__(self, paths: list[str]) -> None:
        self.owner: dict[str, tuple[str, str]] = {}
        # On a merged-/usr system dpkg knows /lib/... for what is found at /usr/lib/... and
        # the other way round: both spellings are asked.
        asked = sorted({v for p in paths for v in (p, p[4:] if p.startswith("/usr/") else "/usr" + p)})
        try:
            out = subprocess.run(["dpkg-query", "-S", *asked], capture_output=True, text=True).stdout if asked else ""
        except OSError:  # no dpkg
            return
        found: dict[str, str] = {}
        for line in out.splitlines():
            pkgs, _, path = line.partition(": ")
            if ", " not in pkgs and path in asked:
                found[path] = pkgs
        pkgs = sorted(set(found.values()))
        versions = {}
        if pkgs:
            w = subprocess.run(["dpkg-query", "-W", "-f", "${Package}:${Architecture} ${Version}\n", *pkgs],
                               capture_output=True, text=True).stdout
            versions = dict(line.split(" ", 1) for line in w.splitlines() if " " in line)
        for path, pkg in found.items():
            full = pkg if ":" in pkg else f"{pkg}:{DEB_ARCH}"
            ver = versions.get(full) or next((v for k, v in versions.items() if k.split(":")[0] == pkg), "")
            if ver:
                self.owner[path] = (pkg.split(":")[0], ver)

    def __call__(self, path: str) -> tuple[str, str] | None:
        """(package, version) of the Debian package that owns this file, or None."""
        alt = path[4:] if path.startswith("/usr/") else "/usr" + path
        return self.owner.get(path) or self.owner.get(alt)


def deb_purl(pkg: str, ver: str) -> PackageURL:
    return PackageURL("deb", "debian", pkg, ver, qualifiers={"arch": DEB_ARCH})


def license_of(meta) -> list[LicenseExpression]:
    text = meta.get("License-Expression") or ""
    if not text:
        lic = (meta.get("License") or "").strip()
        if lic and "\n" not in lic and len(lic) < 60:
            text = lic
    return [LicenseExpression(text)] if text else []


def main(bundle: Path, name: str, sources: dict[str, str]) -> None:
    internal = bundle / "_internal"
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    bom = Bom()
    bom.metadata.timestamp = datetime.fromtimestamp(epoch, tz=timezone.utc)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from waitfor import __version__

    app = Component(name=name, version=__version__, type=ComponentType.APPLICATION, bom_ref=name,
                    description="waitfor, frozen with its interpreter by PyInstaller (packaging/bundle.sh)")
    bom.metadata.component = app
    parts: list[Component] = []

    dpkg_owner = Dpkg(sorted(set(sources.values())))
    # The interpreter: a Debian package when dpkg owns its shared libpython.
    pyver = platform.python_version()
    libpython = sysconfig.get_config_var("INSTSONAME") or ""
    deb = dpkg_owner(sources[libpython]) if libpython in sources else None
    cpython = Component(name="cpython", version=pyver, type=ComponentType.LIBRARY, bom_ref="cpython",
                        purl=deb_purl(deb[0], deb[1]) if deb else PackageURL("generic", None, "cpython", pyver),
                        properties=[Property(name="waitfor:origin", value=f"deb {deb[0]} {deb[1]}" if deb
                                             else f"interpreter {sys.base_prefix}")])
    parts.append(cpython)
    m = re.match(r"OpenSSL (\S+)", ssl.OPENSSL_VERSION)
    openssl_ver = m.group(1) if m else ssl.OPENSSL_VERSION
    libssl = next((src for dest, src in sources.items() if dest.startswith("libssl.so")), None)
    deb = dpkg_owner(libssl) if libssl else None
    parts.append(Component(name="openssl", version=openssl_ver, type=ComponentType.LIBRARY, bom_ref="openssl",
                           purl=deb_purl(deb[0], deb[1]) if deb else PackageURL("generic", None, "openssl", openssl_ver),
                           properties=[Property(name="waitfor:ssl.OPENSSL_VERSION", value=ssl.OPENSSL_VERSION)]))

    # Python distributions, by the metadata the bundle carries; and which files they own.
    owned: dict[str, Component] = {}
    for info in sorted(internal.glob("*.dist-info"), key=lambda p: p.name.lower()):
        meta = PathDistribution(info).metadata
        dname, dver = meta["Name"], meta["Version"]
        c = Component(name=dname, version=dver, type=ComponentType.LIBRARY, bom_ref=f"pypi:{dname}",
                      purl=PackageURL("pypi", None, dname.lower().replace("_", "-"), dver),
                      licenses=license_of(meta))
        parts.append(c)
        for f in PathDistribution(info).files or ():
            owned[str(f)] = c

    # Shared libraries: every *.so file in the folder, named by its path there (two folders
    # may hold libraries of the same name). Symbolic links (PyInstaller links the libraries
    # of a wheel's .libs folder into the top) are the same files and not listed again.
    for path in sorted(p for p in internal.rglob("*") if p.is_file() and not p.is_symlink() and SO.search(p.name)):
        rel = str(path.relative_to(internal))
        src = sources.get(rel, "")
        # A file of the build venv by its place in it (the venv's own path differs between
        # two checkouts of the same inputs), any other by its absolute path.
        shown = "venv/" + os.path.relpath(src, sys.prefix) if src.startswith(sys.prefix + os.sep) else src
        props = [Property(name="waitfor:path", value=rel), Property(name="waitfor:source", value=shown or "unknown")]
        dist = owned.get(rel)
        deb = dpkg_owner(src) if src and dist is None else None
        if dist is not None:
            ver, purl = dist.version, dist.purl
            props.append(Property(name="waitfor:origin", value=f"pypi {dist.name} {dist.version}"))
        elif deb is not None:
            ver, purl = deb[1], deb_purl(*deb)
            props.append(Property(name="waitfor:origin", value=f"deb {deb[0]} {deb[1]}"))
        elif src.startswith(os.path.realpath(sys.base_prefix) + os.sep):
            ver, purl = pyver, cpython.purl
            props.append(Property(name="waitfor:origin", value=f"interpreter {sys.base_prefix}"))
        else:
            ver, purl = None, None
            props.append(Property(name="waitfor:origin", value="unknown"))
        parts.append(Component(name=rel, version=ver, type=ComponentType.LIBRARY, bom_ref=f"file:{rel}",
                               purl=purl, hashes=[HashType(alg=HashAlgorithm.SHA_256, content=sha256(path))],
                               properties=props))

    for c in parts:
        bom.components.add(c)
    bom.register_dependency(app, parts)
    digest = hashlib.sha256("\n".join(f"{c.bom_ref.value} {c.version}" for c in parts).encode()).hexdigest()
    bom.serial_number = uuid.uuid5(uuid.NAMESPACE_URL, f"waitfor:{name}:{__version__}:{epoch}:{digest}")
    print(JsonV1Dot6(bom).output_as_string(indent=1))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: sbom.py BUNDLE_DIR NAME SOURCES_JSON")
    with open(sys.argv[3]) as f:
        main(Path(sys.argv[1]), sys.argv[2], json.load(f))
