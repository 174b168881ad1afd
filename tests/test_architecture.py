"""Rules of the layout that a reader relies on (ARCHITECTURE.md), checked on the source."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from helpers.core import REPO
from waitfor.config import model

PACKAGE = Path(REPO) / "waitfor"


def _stub_fields(class_name: str) -> list[str]:
    """The attribute names of `if TYPE_CHECKING:` in class_name of config/model.py."""
    tree = ast.parse((PACKAGE / "config" / "model.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for stmt in node.body:
                if isinstance(stmt, ast.If) and getattr(stmt.test, "id", None) == "TYPE_CHECKING":
                    return [s.target.id for s in stmt.body if isinstance(s, ast.AnnAssign)]
    raise AssertionError(f"no TYPE_CHECKING block in {class_name}")


def test_typed_stubs_match_the_records():
    """Config and Dependency are namedtuples (cheap at start-up) whose field types mypy reads
    from a TYPE_CHECKING block: the two must name the same fields in the same order."""
    assert _stub_fields("Dependency") == list(model.Dependency._fields)
    assert _stub_fields("Config") == list(model.Config._fields)


def test_every_setting_row_is_complete():
    keys = [s.key for s in model.SETTINGS]
    assert len(keys) == len(set(keys)), "a setting key appears twice"
    spellings = [sp for s in model.SETTINGS for f in s.flags for sp in f.spellings]
    assert len(spellings) == len(set(spellings)), "a flag spelling appears twice"
    envs = [s.env for s in model.SETTINGS if s.env]
    assert len(envs) == len(set(envs)), "an env var appears twice"
    for s in model.SETTINGS:
        assert all(f.help for f in s.flags), f"{s.key}: a flag without help text"
        assert s.flags or s.yaml or s.env, f"{s.key}: no way to set it"


def test_no_runtime_typing_import():
    """typing costs start-up time: modules import it only under TYPE_CHECKING."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:  # module level only
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n in ("typing", "dataclasses") for n in names):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_start_up_path_imports_no_driver_or_typing():
    """`waitfor check` of a TCP target loads no driver and no typing."""
    # Modules that site (a .pth file of the environment) already loaded do not count.
    code = ("import sys; before = set(sys.modules)\n"
            "import waitfor.cli as c\n"
            "c.main(['check', '-q', 'tcp://127.0.0.1:1'])\n"
            "bad = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in "
            "('typing','dataclasses','psycopg','pymysql','redis','pika','paho','nats','grpc'))\n"
            "print(','.join(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1:] in ([], [""]), r.stdout
