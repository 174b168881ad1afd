"""The documentation tells one install story, from this checkout or the
wheel built from it: never `pip install waitfor[...]` from a package index, whose
`waitfor` is not this project (whoever holds that name would become PID 1). Size
figures are in one unit, MiB, as `du -h` and `podman images` print them."""

from __future__ import annotations

import re

from helpers.core import REPO

DOCS = ["README.md", "docker/README.md", "deps.example.yaml"]


def texts():
    for name in DOCS:
        yield name, (REPO / name).read_text()
    for path in sorted((REPO / "waitfor").rglob("*.py")):
        yield str(path.relative_to(REPO)), path.read_text()


def test_no_install_of_the_name_from_an_index():
    for name, text in texts():
        for line in text.splitlines():
            if re.search(r"waitfor\[", line):
                assert re.search(r"\bnever\b|\bNever\b|--no-index|\.whl", line), f"{name}: {line.strip()}"
            assert not re.search(r"pip install [\"']?waitfor\b(?!-)", line) or "never" in line.lower(), \
                f"{name}: {line.strip()}"


def test_the_http_probe_names_the_checkout_install_for_re2():
    text = (REPO / "waitfor/probes/http.py").read_text()
    assert "install waitfor[re2]" not in text and "pip install '.[re2]'" in text


def test_sizes_in_the_readme_are_in_mib():
    text = (REPO / "README.md").read_text()
    assert not re.findall(r"\d\s?[MGk]B\b", text), re.findall(r".{30}\d\s?[MGk]B\b.{10}", text)
