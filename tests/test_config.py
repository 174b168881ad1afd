"""Config: durations, interpolation, precedence (CLI > env > file > default), targets,
YAML shapes, and one-line errors that name file:line: key, a flag or a variable (exit 2,
nothing started, no traceback)."""

import json
import os
from types import SimpleNamespace

import pytest

from helpers.core import REPO, clean_env, waitfor
from waitfor import config
from waitfor.config.durations import parse_duration
from waitfor.config.interpolate import interpolate
from waitfor.errors import UsageError


def args(**kw):
    base = dict(mode="wait", command=None, targets=[], config=None)
    base.update(kw)
    return SimpleNamespace(**base)


def build(tmp_path=None, yaml_text=None, env=None, **cli):
    if yaml_text is not None:
        p = tmp_path / "deps.yaml"
        p.write_text(yaml_text)
        cli.setdefault("config", str(p))
    return config.build(args(**cli), env or {})


def error(tmp_path=None, yaml_text=None, env=None, **cli) -> str:
    with pytest.raises(UsageError) as e:
        build(tmp_path, yaml_text, env, **cli)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize("text,seconds", [
    ("250ms", 0.25), ("10s", 10), ("1m30s", 90), ("2h", 7200), ("5", 5), (5, 5), (1.5, 1.5),
    ("0", 0), ("1h2m3s4ms", 3723.004), (" 10s ", 10),
])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "10x", "1m30", "10 s", "s", "-1", "-5s", "nan", "inf", None, True, [1], "1.s"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


# --------------------------------------------------------------------------- interpolation


def test_interpolation_forms():
    env = {"A": "a", "EMPTY": ""}
    assert interpolate("${A}-$A", env) == "a-a"
    assert interpolate("${NOPE:-dflt}", env) == "dflt"
    assert interpolate("${EMPTY:-dflt}", env) == "dflt"
    assert interpolate("${EMPTY-dflt}", env) == ""
    assert interpolate("${NOPE-dflt}", env) == "dflt"
    assert interpolate("${A:?needed}", env) == "a"
    assert interpolate("$${A} costs $$5", env) == "${A} costs $5"
    assert interpolate("${NOPE}", env) == ""
    with pytest.raises(ValueError, match=r"NOPE.*tell me"):
        interpolate("${NOPE:?tell me}", env)
    with pytest.raises(ValueError, match="EMPTY"):
        interpolate("${EMPTY:?}", env)
    with pytest.raises(ValueError):
        interpolate("trailing $", env)


def test_bad_reference_error_does_not_echo_the_rest_of_the_string():
    with pytest.raises(ValueError) as e:
        interpolate("postgres://app:ab$1Secret99@db/app", {})
    assert "'$1'" in str(e.value) and "Secret99" not in str(e.value)


def test_interpolation_defaults_are_interpolated_lazily():
    env = {"B": "b", "EMPTY": ""}
    assert interpolate("${A:-${B}}", env) == "b"
    assert interpolate("${A:-$B/x}", env) == "b/x"
    assert interpolate("${A:-$$}", env) == "$"
    assert interpolate("${B:-${NOPE:?not needed}}", env) == "b"  # unused default: no error
    with pytest.raises(ValueError, match="NOPE"):
        interpolate("${A:-${NOPE:?needed}}", env)
    assert interpolate("${B:+x${B}}|${EMPTY:+y}|${EMPTY+z}", env) == "xb||z"
    assert interpolate("{${B}}", env) == "{b}"
    with pytest.raises(ValueError):
        interpolate("${B:x}", env)


def test_interpolation_in_file_and_its_errors(tmp_path):
    text = 'timeout: "${T:-7s}"\ndependencies:\n  - url: "tcp://${HOST:?set HOST}:${PORT:-5432}"\n    name: "$${literal}"\n'
    cfg = build(tmp_path, text, env={"HOST": "db"})
    assert cfg.timeout == 7
    assert cfg.dependencies[0].url == "tcp://db:5432"
    assert cfg.dependencies[0].name == "${literal}"
    msg = error(tmp_path, text, env={})
    assert msg.endswith("deps.yaml:3: dependencies[0].url: required variable HOST is not set: set HOST"), msg


# --------------------------------------------------------------------------- precedence


def test_defaults():
    cfg = build()
    assert (cfg.timeout, cfg.interval, cfg.max_interval, cfg.attempt_timeout) == (60, 0.05, 1, 2)
    assert cfg.log_format == "text" and cfg.dependencies == ()


def test_precedence_cli_env_file_default(tmp_path):
    text = "timeout: 7s\ninterval: 100ms\nlog_format: json\n"
    assert build(tmp_path, text).timeout == 7
    assert build(tmp_path, text, env={"WAITFOR_TIMEOUT": "8s"}).timeout == 8
    assert build(tmp_path, text, env={"WAITFOR_TIMEOUT": "8s"}, timeout="9").timeout == 9
    assert build(tmp_path, text, env={"WAITFOR_TIMEOUT": ""}).timeout == 7  # empty = unset
    assert build(tmp_path, text).interval == 0.1
    assert build(tmp_path, text, interval="20ms").interval == 0.02
    assert build(tmp_path, text).log_format == "json"
    assert build(tmp_path, text, env={"WAITFOR_LOG_FORMAT": "text"}).log_format == "text"
    assert build(tmp_path, text, env={"WAITFOR_LOG_FORMAT": "text"}, log_format="json").log_format == "json"


def test_config_from_env_and_cli(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("timeout: 3s\n")
    q = tmp_path / "b.yaml"
    q.write_text("timeout: 4s\n")
    assert build(env={"WAITFOR_CONFIG": str(p)}).timeout == 3
    assert build(env={"WAITFOR_CONFIG": str(p)}, config=str(q)).timeout == 4


def test_timeout_zero_means_no_limit():
    assert build(timeout="0").timeout is None
    assert build(env={"WAITFOR_TIMEOUT": "0"}).timeout is None


def test_max_interval_not_below_interval():
    cfg = build(interval="2s", max_interval="1s")
    assert cfg.max_interval == cfg.interval == 2


def test_targets_are_additive(tmp_path):
    cfg = build(tmp_path, "dependencies:\n  - file:///a\n", env={"WAITFOR_TARGETS": "x:1, y:2 ,z:3"},
                targets=["cli:4"])
    assert [d.url for d in cfg.dependencies] == ["file:///a", "tcp://x:1", "tcp://y:2", "tcp://z:3", "tcp://cli:4"]
    cfg = build(env={"WAITFOR_TARGETS": "a:1 b:2"})
    assert [d.name for d in cfg.dependencies] == ["a:1", "b:2"]


def test_same_target_twice_gets_unique_names():
    cfg = build(targets=["a:1", "a:1"])
    assert [d.name for d in cfg.dependencies] == ["a:1", "a:1#2"]


# --------------------------------------------------------------------------- targets


@pytest.mark.parametrize("target,kind,url", [
    ("db:5432", "tcp", "tcp://db:5432"),
    ("tcp://db:5432", "tcp", "tcp://db:5432"),
    ("[::1]:5432", "tcp", "tcp://[::1]:5432"),
    ("http://h/health", "http", "http://h/health"),
    ("https://h:8443/", "http", "https://h:8443/"),
    ("unix:///run/app.sock", "unix", "unix:///run/app.sock"),
    ("file:///tmp/flag", "file", "file:///tmp/flag"),
    ("dns://db", "dns", "dns://db"),
])
def test_target_kinds(target, kind, url):
    d = build(targets=[target]).dependencies[0]
    assert (d.kind, d.url) == (kind, url)
    assert url in d.display or d.display == url


@pytest.mark.parametrize("target,needle", [
    ("db", "no port"), ("db:0", "port 0"), ("db:99999", "out of range"), ("db:abc", "bad URL"),
    ("ftp://h:21", "unknown scheme"), ("http://", "no host"), ("unix://", "no socket path"),
    ("file://host/x", "no host"), ("[::1:5432", "bad URL"), ("::1:5432", "in brackets"),
])
def test_bad_targets(target, needle):
    msg = error(targets=[target])
    assert needle in msg and "argument 1" in msg


def test_bad_target_in_env_names_the_variable():
    assert error(env={"WAITFOR_TARGETS": "ok:1 bad"}).startswith("WAITFOR_TARGETS (item 2):")


# --------------------------------------------------------------------------- YAML


FULL = """\
timeout: 30s
interval: 100ms
max_interval: 2s
attempt_timeout: 1s
dependencies:
  - db:5432
  - name: api
    url: http://api:8080/health
    status: [200, "3xx"]
    body: "ok"
    headers: {X-Key: abc}
    timeout: 10s
    after: [db:5432]
  - name: migrated
    command: [test, -f, /tmp/done]
    after: api
  - url: file:///tmp/lock
    invert: true
"""


def test_full_file(tmp_path):
    cfg = build(tmp_path, FULL)
    assert (cfg.timeout, cfg.interval, cfg.max_interval, cfg.attempt_timeout) == (30, 0.1, 2, 1)
    db, api, mig, lock = cfg.dependencies
    assert db.kind == "tcp" and db.name == "db:5432"
    assert api.timeout == 10 and api.after == ("db:5432",)
    assert 200 in api.options["status"] and 301 in api.options["status"] and 201 not in api.options["status"]
    assert api.options["body"].pattern == "ok" and dict(api.options["headers"]) == {"X-Key": "abc"}
    assert mig.kind == "command" and mig.argv == ("test", "-f", "/tmp/done") and mig.after == ("api",)
    assert lock.invert is True


def test_empty_file_and_empty_dependencies(tmp_path):
    assert build(tmp_path, "").dependencies == ()
    assert build(tmp_path, "dependencies:\n").dependencies == ()


def test_yaml_merge_keys(tmp_path):
    text = "dependencies:\n  - &a {name: a, url: 'tcp://a:1', timeout: 2s}\n  - {<<: *a, name: b}\n"
    _, b = build(tmp_path, text).dependencies
    assert (b.name, b.url, b.timeout) == ("b", "tcp://a:1", 2)


@pytest.mark.parametrize("text,expected", [
    ("timeout: [1\n", "deps.yaml:2: invalid YAML"),
    ("timeout: 1s\nfoo: 1\n", "deps.yaml:2: foo: unknown key"),
    ("timeout: 1s\ntimeout: 2s\n", "deps.yaml:2: timeout: duplicate key"),
    ("timeout: [1]\n", "deps.yaml:1: timeout: "),
    ("\ninterval: 10x\n", "deps.yaml:2: interval: bad duration"),
    ("timeout:\n", "deps.yaml:1: timeout: "),
    ("interval: 0\n", "deps.yaml:1: interval: must be more than 0"),
    ("attempt_timeout: 0\n", "deps.yaml:1: attempt_timeout: must be more than 0"),
    ("log_format: xml\n", "deps.yaml:1: log_format: expected text or json"),
    ("- a\n", "must be a mapping"),
    ("watch:\n  failure_threshold: 2\n  interval: 5x\n", "deps.yaml:3: watch.interval: bad duration"),
    ("watch:\n  failure_threshold: 0\n", "deps.yaml:2: watch.failure_threshold: must be at least 1"),
    ("watch:\n  every: 1s\n", "deps.yaml:2: watch.every: unknown key"),
    ("watch: 5s\n", "deps.yaml:1: watch: expected a mapping"),
    ("stop_signal: SIGNOPE\n", "deps.yaml:1: stop_signal: unknown signal"),
    ("dependencies: tcp://x:1\n", "deps.yaml:1: dependencies: expected a list"),
    ("dependencies:\n  - tcp://x\n", "deps.yaml:2: dependencies[0]: bad URL"),
    ("dependencies:\n  - a:1\n  - 5\n", "deps.yaml:3: dependencies[1]: expected a URL or a mapping"),
    ("dependencies:\n  - {name: x}\n", "deps.yaml:2: dependencies[0]: give exactly one of url: or command:"),
    ("dependencies:\n  - url: tcp://x:1\n    command: [true]\n", "give exactly one of url: or command:"),
    ("dependencies:\n  - url: tcp://x:1\n    status: 200\n", "deps.yaml:3: dependencies[0].status: unknown key, or an option that does not belong to a tcp"),
    ("dependencies:\n  - url: http://x/\n    bogus: 1\n", "deps.yaml:3: dependencies[0].bogus: unknown key"),
    ("dependencies:\n  - url: http://x/\n    status: 99\n", "deps.yaml:3: dependencies[0].status: bad HTTP status"),
    ("dependencies:\n  - url: http://x/\n    status: []\n", "deps.yaml:3: dependencies[0].status: an empty list"),
    ("dependencies:\n  - url: http://x/\n    method: GET /x\n", "deps.yaml:3: dependencies[0].method: bad HTTP method"),
    ("dependencies:\n  - url: http://x/\n    headers: {X Y: a}\n", "deps.yaml:3: dependencies[0].headers: bad header name"),
    ("dependencies:\n  - url: http://x/\n    headers: {X-Token: \"secret\\r\\nX-Evil: 1\"}\n", "dependencies[0].headers: the value of header X-Token holds a line break"),
    ("dependencies:\n  - url: http://x/\n    body: '('\n", "deps.yaml:3: dependencies[0].body: bad regular expression"),
    ("dependencies:\n  - url: http://x/\n    headers: [a]\n", "deps.yaml:3: dependencies[0].headers: expected a mapping of names to strings, got a list"),
    ("dependencies:\n  - url: http://x/\n    insecure: maybe\n", "dependencies[0].insecure: expected true or false"),
    ("dependencies:\n  - url: https://x/\n    ca_file: /nonexistent/ca.pem\n", "deps.yaml:3: dependencies[0].ca_file: cannot read"),
    ("dependencies:\n  - url: tcp://x:1\n    timeout: 5x\n", "deps.yaml:3: dependencies[0].timeout: bad duration"),
    ("dependencies:\n  - url: [a]\n", "deps.yaml:2: dependencies[0].url: expected a string"),
    ("dependencies:\n  - command: echo hi\n", "deps.yaml:2: dependencies[0].command: expected a non-empty list"),
    ("dependencies:\n  - command: []\n", "dependencies[0].command: expected a non-empty list"),
    ("dependencies:\n  - command: [true]\n", "dependencies[0].command: expected a string, got a boolean"),
    ("dependencies:\n  - {url: 'tcp://a:1', name: a, after: [zz]}\n", "deps.yaml:2: dependencies[0]: after: no dependency is named 'zz'"),
    ("dependencies:\n  - {url: 'tcp://a:1', name: a, after: [a]}\n", "waits for itself"),
    ("dependencies:\n  - {url: 'tcp://a:1', name: a}\n  - {url: 'tcp://a:2', name: a}\n", "deps.yaml:3: dependencies[1]: name 'a' is used twice"),
    ("dependencies:\n  - {url: 'tcp://a:1', name: a, after: [c]}\n  - {url: 'tcp://a:2', name: b, after: [a]}\n"
     "  - {url: 'tcp://a:3', name: c, after: [b]}\n", "after: cycle"),
])
def test_config_errors(tmp_path, text, expected):
    msg = error(tmp_path, text)
    assert expected in msg, msg
    if expected.startswith("deps.yaml"):
        assert msg.startswith(str(tmp_path / expected.split(":", 1)[0])), msg


def test_ca_file_must_be_pem(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    msg = error(tmp_path, f"dependencies:\n  - url: https://x/\n    ca_file: {bad}\n")
    assert "deps.yaml:3: dependencies[0].ca_file:" in msg and "PEM" in msg


@pytest.mark.parametrize("data,expected", [
    (b"timeout: 1s\ndependencies: \xff\xfe\n", "deps.yaml:2: invalid YAML"),
    (b"timeout: 1s\nlog_format: \"\x01\"\n", "deps.yaml:2: invalid YAML"),
    (b"!!python/object:os.system {}\n", "deps.yaml:1: unsupported YAML tag"),
    (b"dependencies: !!set {a: null}\n", "deps.yaml:1: unsupported YAML tag"),
    (b"timeout: !!python/name:os.system 5\n", "deps.yaml:1: unsupported YAML tag"),
])
def test_yaml_bytes_and_tags(tmp_path, data, expected):
    (tmp_path / "deps.yaml").write_bytes(data)
    msg = error(config=str(tmp_path / "deps.yaml"))
    assert msg.startswith(str(tmp_path / expected.split(":")[0])) and expected in msg, msg


def test_missing_config_file(tmp_path):
    assert "cannot read config" in error(config=str(tmp_path / "nope.yaml"))
    assert "nope.yaml" in error(env={"WAITFOR_CONFIG": str(tmp_path / "nope.yaml")})


@pytest.mark.parametrize("cli,env,expected", [
    ({"timeout": "soon"}, {}, "--timeout: bad duration"),
    ({}, {"WAITFOR_TIMEOUT": "soon"}, "WAITFOR_TIMEOUT: bad duration"),
    ({"interval": "0"}, {}, "--interval: must be more than 0"),
    ({"attempt_timeout": "0"}, {}, "--attempt-timeout: must be more than 0"),
    ({"log_format": "yaml"}, {}, "--log-format: expected text or json"),
    ({}, {"WAITFOR_LOG_FORMAT": "yaml"}, "WAITFOR_LOG_FORMAT: expected text or json"),
])
def test_flag_and_env_errors(cli, env, expected):
    assert error(env=env, **cli).startswith(expected)


# --------------------------------------------------------------------------- through the CLI


@pytest.mark.parametrize("text", [
    "timeout: [1\n",
    "dependencies:\n  - ${NOPE:?please set NOPE}\n",
    "dependencies:\n  - {url: 'tcp://a:1', name: a, after: [b]}\n  - {url: 'tcp://a:2', name: b, after: [a]}\n",
    "dependencies:\n  - url: tcp://x:1\n    body: x\n",
    "timeout: 1s\nunknown: 2\n",
])
def test_cli_config_errors_exit_2_one_line_nothing_started(tmp_path, text):
    marker = tmp_path / "started"
    cfg = tmp_path / "deps.yaml"
    cfg.write_text(text)
    for argv in (["validate", "-c", cfg], ["-c", cfg, "--", "touch", marker], ["wait", "-c", cfg], ["check", "-c", cfg]):
        r = waitfor(*argv, timeout=10)
        assert r.returncode == 2, (argv, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("waitfor: error: ") and str(cfg) in lines[0], r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""
    assert not marker.exists()


def test_cli_validate_prints_effective_config(tmp_path):
    cfg = tmp_path / "deps.yaml"
    cfg.write_text(FULL)
    r = waitfor("validate", "-c", cfg, "-t", "45s", "extra:9", env=clean_env(WAITFOR_TARGETS="env:8"))
    assert r.returncode == 0, r.stderr
    import yaml

    out = yaml.safe_load(r.stdout)
    assert out["timeout"] == "45s" and out["interval"] == "100ms"
    assert [d["name"] for d in out["dependencies"]] == ["db:5432", "api", "migrated", "file:///tmp/lock", "env:8", "extra:9"]
    assert out["dependencies"][1]["status"] == [200, "3xx"]
    assert out["dependencies"][3]["url"] == "file:///tmp/lock"


def test_deps_example_validates_with_empty_environment():
    example = REPO / "deps.example.yaml"
    if not example.exists():
        pytest.skip("deps.example.yaml is not written yet")
    import os

    r = waitfor("validate", "-c", example, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


def test_schema_is_json_and_covers_every_kind():
    import importlib.util

    from waitfor.probes import table

    missing = [k for k, m in table.KINDS.items() if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"driver probe modules not written yet: {missing}")
    r = waitfor("schema")
    assert r.returncode == 0, r.stderr
    schema = json.loads(r.stdout)
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) >= {"timeout", "interval", "max_interval", "attempt_timeout", "dependencies"}
    titles = {v.get("title") for v in schema["properties"]["dependencies"]["items"]["oneOf"]}
    assert set(table.KINDS) <= titles


# --------------------------------------------------------------------------- review findings


def test_an_alias_to_its_own_collection_is_a_config_error(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("a: &x [*x]\n")
    r = waitfor("validate", "-c", p)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"waitfor: error: {p}:1: a YAML alias refers to the collection that contains it"


def test_aliases_of_aliases_are_capped(tmp_path):
    rows = ["a: &a [1,1,1,1,1,1,1,1,1,1]"]
    for prev, name in zip("abcde", "bcdef"):
        rows.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    p = tmp_path / "laughs.yaml"
    p.write_text("\n".join(rows) + "\n")
    r = waitfor("validate", "-c", p, timeout=10)
    assert r.returncode == 2 and "too many YAML nodes" in r.stderr


@pytest.mark.parametrize("flag", ["--stop-timeout", "--attempt-timeout", "-t"])
def test_durations_beyond_a_year_are_errors_not_overflows(flag):
    r = waitfor(flag, "1e300", "--", "true")
    assert r.returncode == 2, r.stderr
    assert "at most 366 days" in r.stderr and "Traceback" not in r.stderr


def test_a_url_the_driver_rejects_is_a_config_error_before_waiting():
    pytest.importorskip("pika")
    r = waitfor("wait", "-t", "30s", "amqp://guest:s3cret@127.0.0.1:1/?heartbeat=abc", timeout=10)
    assert r.returncode == 2, r.stderr
    assert "Invalid heartbeat" in r.stderr and "s3cret" not in r.stderr


@pytest.mark.parametrize("spec", ["KILL:TERM", "STOP:TERM", "CHLD:USR1"])
def test_rewriting_a_signal_that_is_never_forwarded_is_an_error(spec):
    r = waitfor("--rewrite", spec, "--", "true")
    assert r.returncode == 2 and "cannot be rewritten" in r.stderr


@pytest.mark.parametrize("flag", [["--stop-timeout", "5s"], ["--stop-signal", "INT"], ["--failure-threshold", "2"]])
def test_supervision_flags_apply_only_to_run(flag):
    r = waitfor("wait", *flag)
    assert r.returncode == 2 and "applies only to run" in r.stderr


# --------------------------------------------------------------------------- every error at once

MANY_ERRORS = """\
timeout: soon
dependencies:
  - url: tcp://db:5432
    colour: blue
  - url: http://api:8080/healthz
    status: 999
interval: -1s
bogus: 1
watch:
  failure_threshold: zero
"""


def test_validate_reports_every_error_of_the_file_sorted_by_line(tmp_path):
    """As JSON Schema validators and kubectl do: one line each, in file order (the loader
    meets `interval:` and `watch:` before the dependencies, and `bogus:` first of all)."""
    p = tmp_path / "bad.yaml"
    p.write_text(MANY_ERRORS)
    r = waitfor("validate", "-c", p)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    lines = r.stderr.splitlines()
    assert [line.split(":")[4].strip() for line in lines] == [
        "timeout", "dependencies[0].colour", "dependencies[1].status", "interval", "bogus", "watch.failure_threshold",
    ], lines
    assert all(line.startswith(f"waitfor: error: {p}:") for line in lines)
    assert [int(line.split(":")[3]) for line in lines] == [1, 4, 6, 7, 8, 10]


def test_run_stops_at_the_first_error(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(MANY_ERRORS)
    r = waitfor("-c", p, "--", "true")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr


def test_validate_puts_flag_errors_before_the_file_s(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("dependencies:\n  - url: tcp://db:99999\n")
    r = waitfor("validate", "-c", p, "-t", "never")
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and len(lines) == 2, r.stderr
    assert lines[0].startswith("waitfor: error: --timeout") or lines[0].startswith("waitfor: error: -t"), lines
    assert lines[1].startswith(f"waitfor: error: {p}:2:"), lines


# --------------------------------------------------------------------------- one declaration


def test_schema_output_is_unchanged():
    """`waitfor schema` as it was before validators became objects (tests/data: the output
    of d205844). A setting added since may add a property; none may change."""
    import json

    from waitfor.commands.schema import schema

    with open(os.path.join(REPO, "tests", "data", "waitfor.schema.json")) as f:
        before = json.load(f)
    now = json.loads(json.dumps(schema()))
    assert {k: v for k, v in now.items() if k != "properties"} == {k: v for k, v in before.items() if k != "properties"}
    for key, value in before["properties"].items():
        assert now["properties"].get(key) == value, key


def test_config_stub_types_are_the_validators_return_types():
    """config/model.py's typed Config stub states each setting's type once more for mypy:
    it must say what the setting's validator returns (`| None` when the default is None)."""
    import ast
    import inspect

    from waitfor.config import model
    from waitfor.config.validators import Validator

    tree = ast.parse(inspect.getsource(model))
    stub = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "Config":
            for stmt in node.body:
                if isinstance(stmt, ast.If):
                    stub = {a.target.id: ast.unparse(a.annotation) for a in stmt.body if isinstance(a, ast.AnnAssign)}
    assert stub, "no typed stub in Config"
    for s in model.SETTINGS:
        if s.key == "config":
            continue
        fn = s.parse.check if isinstance(s.parse, Validator) else s.parse
        returns = fn.__name__ if isinstance(fn, type) else inspect.signature(fn).return_annotation
        if s.default is None and "None" not in returns:
            returns += " | None"
        assert stub[s.key] == returns, (s.key, stub[s.key], returns)
