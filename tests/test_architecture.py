"""Rules of the layout that a reader relies on (ARCHITECTURE.md), checked on the source."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

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
    """Config and Dependency are Records (cheap at start-up) whose field types mypy reads
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


def test_record_behaves_as_namedtuple():
    """tricks.Record stands in for collections.namedtuple (whose import costs ~1.9 ms of the
    exec-only start-up, waitfor/tricks.py): the same construction, defaults, errors,
    _replace and equality, side by side."""
    from waitfor.tricks import Record

    class Point(Record, fields=("x", "y", "z"), defaults=(0,)):
        __slots__ = ()

    Ref = namedtuple("Ref", ["x", "y", "z"], defaults=(0,))
    for args, kw in [((1, 2), {}), ((1,), {"y": 2}), ((), {"x": 1, "y": 2, "z": 3}), ((1, 2, 3), {})]:
        p, r = Point(*args, **kw), Ref(*args, **kw)
        assert tuple(p) == tuple(r) and p == r and hash(p) == hash(r)
        assert (p.x, p.y, p.z) == (r.x, r.y, r.z)
        assert p._replace(y=9) == r._replace(y=9) and type(p._replace(y=9)) is Point
    assert Point._fields == Ref._fields
    dep = model.Dependency("db", "tcp", "tcp://db:5432", timeout=3.0)
    assert dep.timeout == 3.0 and dep.after == () and dep.options == {}
    assert repr(Point(1, 2)) == "Point(x=1, y=2, z=0)"
    for args, kw in [((1,), {}), ((1, 2, 3, 4), {}), ((1, 2), {"x": 1}), ((1, 2), {"w": 1})]:
        with pytest.raises(TypeError):
            Ref(*args, **kw)
        with pytest.raises(TypeError):
            Point(*args, **kw)
    with pytest.raises(TypeError):
        Point(1, 2)._replace(w=1)
    with pytest.raises(AttributeError):
        Point(1, 2).x = 5  # type: ignore[misc]
    assert not hasattr(Point(1, 2), "__dict__")


def test_exec_only_path_imports_little():
    """`waitfor -- app` (no dependencies) is the start-up figure of BENCHMARKS.md: it loads
    no YAML, no target parsing, no engine, no re/urllib, and not collections (`types` is
    allowed: 0.15 ms, less than the trick that avoided it was worth)."""
    code = (f"import os, sys; before = set(sys.modules); sys.path.insert(0, {str(REPO)!r})\n"
            "os.execvp = lambda *a: (os.write(1, ','.join(sorted(set(sys.modules) - before)).encode()), os._exit(0))\n"
            "import waitfor.cli as c\n"
            "c.main(['run', '--', '/bin/true'])\n")
    env = {"PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, cwd=REPO,
                       timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stdout.strip().split(","))
    assert "waitfor.supervise.launch" in loaded, loaded  # the probe: it ran up to the exec
    heavy = {"yaml", "re", "urllib.parse", "collections", "typing", "waitfor.config.targets",
             "waitfor.wait.engine", "ipaddress", "socket", "threading"}
    assert loaded & heavy == set()


def test_the_lean_supervisor_imports_only_its_budget():
    """The idle init's RSS is budgeted (BENCHMARKS.md): `python -I -S` importing
    waitfor.supervise.init loads os, time, the C _signal module and five small waitfor
    modules, nothing else (no typing, enum, ctypes, the stdlib `signal` wrapper, yaml)."""
    code = (f"import __future__, os, sys, time; before = set(sys.modules); sys.path.insert(0, {str(REPO)!r})\n"
            "import waitfor.supervise.init\n"
            "print(','.join(sorted(set(sys.modules) - before)))")
    r = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stdout.strip().split(","))
    assert loaded == {
        "waitfor", "waitfor.supervise", "waitfor.supervise.init", "waitfor.exitcodes", "waitfor.output",
        "waitfor.signals", "waitfor.errors", "waitfor.process"}, loaded


def _fresh(code: str) -> str:
    """Run `code` in a fresh interpreter without site (the development install's .pth files
    import urllib.parse and ipaddress before any test could), waitfor and the installed
    packages on sys.path; -> its stdout."""
    import site

    paths = [str(REPO), *site.getsitepackages()]
    r = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {paths!r}\n{code}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_urls_defer_ipaddress_until_a_bracketed_host():
    """waitfor.urls: urllib.parse without its ipaddress import (1.2 to 2.0 ms of the YAML
    start-up, waitfor/tricks.py), until a [v6] host needs it; then the real module, the
    same one any `import ipaddress` gets."""
    out = _fresh(
        "from waitfor.urls import parse, urlsplit\n"
        "print('ipaddress' in sys.modules, urlsplit('tcp://db:5432').port)\n"
        "print(urlsplit('tcp://[::1]:80').hostname, 'ipaddress' in sys.modules)\n"
        "import ipaddress; print(parse.ipaddress is ipaddress)\n"
        "try:\n    urlsplit('tcp://[::zz]:80')\nexcept ValueError as e:\n    print('ValueError', e)\n")
    assert out.splitlines() == ["False 5432", "::1 True", "True",
                                "ValueError '::zz' does not appear to be an IPv4 or IPv6 address"], out


def test_a_yaml_tcp_wait_loads_no_ipaddress(tmp_path):
    """The start-up figure with a YAML file (BENCHMARKS.md) stays without ipaddress."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    deps = tmp_path / "deps.yaml"
    deps.write_text(f"dependencies:\n  - tcp://127.0.0.1:{srv.getsockname()[1]}\n")
    with srv:
        out = _fresh("import os\n"
                     "os.execvp = lambda *a: (os.write(1, str('ipaddress' in sys.modules).encode()), os._exit(0))\n"
                     "import waitfor.cli\n"
                     f"waitfor.cli.main(['run', '-q', '-c', {str(deps)!r}, '--', '/bin/true'])\n")
    assert out == "False", out


def test_start_up_tricks_live_in_one_module():
    """A start-up trick is kept only where it wins about 1 ms on a path
    users run often, and then in waitfor/tricks.py with its measured cost (Record, the
    urllib.parse import without ipaddress). The ones that did not pay (the `types` aliases,
    __import__ for importlib.import_module) stay gone."""
    patterns = ["type(type.__dict__)", "type(sys.implementation)", "type(sys)", "sys.modules[\"",
                "class Record("]
    offenders = [f"{p.relative_to(REPO)}: {pat}" for p in PACKAGE.rglob("*.py") if p.name != "tricks.py"
                 for pat in patterns if pat in p.read_text()]
    assert offenders == []


def test_urllib_parse_is_imported_through_waitfor_urls_only():
    """waitfor.urls, and the trick it calls (waitfor.tricks), are the only importers."""
    offenders = [str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py")
                 if p.name not in ("urls.py", "tricks.py")
                 and ("from urllib.parse import" in p.read_text() or "import urllib.parse" in p.read_text())]
    assert offenders == []


def test_probes_base_is_the_interface_only():
    """probes/base.py holds the exceptions, the Kind protocol and small helpers: it imports
    nothing at run time (the deadline's watchdog, the limits and the asyncio loop have
    their own modules), and its rule for bounding an attempt lists every kind."""
    from waitfor.probes import base, table

    tree = ast.parse((PACKAGE / "probes" / "base.py").read_text())
    runtime = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
               and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
    assert runtime == [], [ast.unparse(n) for n in runtime]
    rule = base.__doc__.split("How an attempt is bounded", 1)[1]
    listed = {line.split()[0] for line in rule.splitlines() if line.startswith("    ") and line.split()}
    assert set(table.KINDS) <= listed, set(table.KINDS) - listed


def test_every_driver_reads_its_password_through_password_of():
    """password_file is read in one place (probes.base.password_of): no kind reads the
    file itself."""
    offenders = [p.name for p in (PACKAGE / "probes").glob("*.py")
                 if p.name != "base.py" and "read_secret_file" in p.read_text()]
    assert offenders == []
    users = {p.stem for p in (PACKAGE / "probes").glob("*.py") if "password_of(" in p.read_text()}
    assert {"postgres", "mysql", "redis", "amqp", "mqtt", "nats"} <= users, users


# The import cycles left, each to be removed on another branch: delete its entry when that
# branch is merged, and the test then holds the package to no cycle at all.
KNOWN_CYCLES: list[set[str]] = []


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: at module level, in functions and classes, in
    try/if blocks; not those under `if TYPE_CHECKING:` (read by mypy only)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """waitfor's modules -> the waitfor modules they import (runtime imports anywhere)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                # `from pkg import mod` imports the submodule; `from mod import name` the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(component)
    return cycles


def test_the_import_graph_has_no_cycles():
    """No two waitfor modules import each other, directly or around a
    loop, counting imports inside functions (where cycles used to hide)."""
    cycles = import_cycles(import_graph())
    assert [c for c in cycles if c not in KNOWN_CYCLES] == []


def test_the_cycle_finder_finds_a_function_level_cycle():
    """The check above can fail: a cycle made only of imports inside functions is found."""
    code_a = "def f():\n    from waitfor.b import g\n"
    code_b = "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    import waitfor.c\ndef g():\n    import waitfor.a\n"
    graph = {}
    for name, code in (("waitfor.a", code_a), ("waitfor.b", code_b)):
        graph[name] = {n.module if isinstance(n, ast.ImportFrom) else n.names[0].name
                       for n in _runtime_imports(ast.parse(code))}
    graph["waitfor.c"] = set()
    assert graph["waitfor.b"] == {"waitfor.a"}  # the TYPE_CHECKING import is not counted
    assert import_cycles(graph) == [{"waitfor.a", "waitfor.b"}]


def test_the_wait_stage_names_no_kind():
    """Issue 19: wait/ asks a dependency's kind (`probes.base.Kind`: connect_target,
    READY_ON_CONNECT, STILL_THERE) instead of naming kinds or schemes: no string in
    waitfor/wait/*.py is a kind's or a scheme's name (docstrings and comments aside)."""
    from waitfor.probes.table import KINDS, SCHEMES

    names = set(KINDS) | set(SCHEMES)
    for path in sorted((PACKAGE / "wait").glob("*.py")):
        tree = ast.parse(path.read_text())
        found = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in names}
        assert not found, (path.name, found)
