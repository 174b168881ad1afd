"""Unit tests of two private protocols: the argv parser (waitfor.args) and the supervisor's
options across the lean re-exec (Options.to_argv / from_argv)."""

from __future__ import annotations

import os
import pwd
import signal

import pytest

from waitfor import args
from waitfor.config import build
from waitfor.errors import UsageError
from waitfor.signals import Inherited
from waitfor.supervise.init import Options


def test_defaults_and_the_command():
    ns = args.parse(["127.0.0.1:5432", "--", "app", "--flag"])
    assert ns.mode == "run" and ns.targets == ["127.0.0.1:5432"] and ns.command == ["app", "--flag"]
    assert ns.timeout is None and ns.given == {}


@pytest.mark.parametrize("argv", [
    ["-t", "5s", "--", "app"], ["-t5s", "--", "app"], ["--timeout=5s", "--", "app"], ["--timeout", "5s", "--", "app"],
])
def test_every_spelling_of_a_value(argv):
    ns = args.parse(argv)
    assert ns.timeout == "5s" and ns.given["timeout"] in ("-t", "--timeout")


def test_subcommand_before_or_after_the_options():
    assert args.parse(["validate", "-c", "x.yaml"]).mode == "validate"
    assert args.parse(["-c", "x.yaml", "validate"]).mode == "validate"
    with pytest.raises(UsageError, match="subcommand goes before the targets"):
        args.parse(["check", "127.0.0.1:1", "wait"])


def test_append_flags_collect_every_value():
    ns = args.parse(["--rewrite", "TERM:INT", "--rewrite", "HUP:USR1", "--", "app"])
    assert ns.rewrite == ["TERM:INT", "HUP:USR1"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--nope", "--", "app"], "unrecognized argument: --nope"),
    (["-t"], "-t: expected a value"),
    (["--", ], "run needs a command"),
    (["check", "--", "app"], "check takes no COMMAND"),
    (["-q", "-v", "--", "app"], "exclude each other"),
    (["wait", "--stop-timeout", "3s"], "applies only to run"),
])
def test_usage_errors_name_the_flag(argv, message):
    with pytest.raises(UsageError, match=message) as e:
        args.parse(argv)
    assert "\n" not in str(e.value)


def test_options_round_trip_through_the_reexec_argv():
    """The in-process supervisor uses Options.from_config directly; the lean re-exec gets the
    same Options through to_argv/from_argv. Every field must survive the trip."""
    argv = ["--stop-timeout", "2.5s", "--stop-signal", "USR1", "--rewrite", "TERM:QUIT", "--rewrite", "HUP:-",
            "--group", "--success-exit", "143", "--success-exit", "0", "-v", "--log-format", "json",
            "--user", "nobody", "--pdeathsig", "TERM", "--leftovers", "term",
            "--", "app", "--", "-x", ""]
    cfg = build(args.parse(argv), env={})
    inherited = Inherited(frozenset({int(signal.SIGUSR2)}), frozenset({int(signal.SIGHUP)}), os.getppid())
    before = Options.from_config(cfg, inherited, pending=[int(signal.SIGWINCH), int(signal.SIGINT)])
    after = Options.from_argv(before.to_argv())
    for name in Options.__slots__:
        assert getattr(after, name) == getattr(before, name), name
    assert after.command == ["app", "--", "-x", ""]
    assert after.stop_signal == signal.SIGUSR1 and after.rewrite == {signal.SIGTERM: signal.SIGQUIT, signal.SIGHUP: 0}
    assert after.stop_timeout == 2.5 and after.group and after.log_format == "json"
    assert after.user is not None and after.user[0] == pwd.getpwnam("nobody").pw_uid
    assert after.pdeathsig == signal.SIGTERM and after.ppid == os.getppid() and after.leftovers == "term"
    empty = Options()
    assert vars_of(Options.from_argv(empty.to_argv())) == vars_of(empty), "the defaults survive too"


def vars_of(o):
    return {name: getattr(o, name) for name in Options.__slots__}


def test_options_typed_stub_names_every_field_of_the_table():
    """Options' fields are declared once, in init.FIELDS; the TYPE_CHECKING block that
    gives mypy their types must name the same fields in the same order."""
    import ast
    import inspect

    from waitfor.supervise import init

    tree = ast.parse(inspect.getsource(init.Options))
    stub = next(n for n in tree.body[0].body if isinstance(n, ast.If))
    assert [a.target.id for a in stub.body] == [f[0] for f in init.FIELDS]


def test_unknown_reexec_argument_is_rejected():
    with pytest.raises(ValueError, match="unknown argument"):
        Options.from_argv(["--bogus", "1", "--", "app"])
