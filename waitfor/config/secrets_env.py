"""`secrets_env`: NAME_FILE=/run/secrets/x in the environment -> NAME=<the file's content>,
and NAME_FILE removed, as the `file_env` function of the official postgres, mysql and
mariadb images' entrypoints does (docker-library/postgres docker-entrypoint.sh), so that
an app that reads only NAME works with Docker and Kubernetes secret files.

Read before the wait (a bad secret is exit 2 before anything waits or starts), and every
value read is masked in every log line from then on (waitfor.output.mask) and in
`validate`. Errors name the variable and the file, never the content.
"""

from __future__ import annotations

import os

from waitfor.config import files
from waitfor.config.validators import SECRETS_DIRS
from waitfor.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, MutableMapping

# A secret is a password, a token, a key: 1 MiB is far above any, and keeps a NAME_FILE
# that points at a log or a device from filling the environment (execve's E2BIG).
MAX_SIZE = 1 << 20
SUFFIX = "_FILE"
DEFAULT_DIRS = SECRETS_DIRS  # where `secrets_env: true` looks (config.validators says why)


def directly_inside(path: str, folders: set[str]) -> bool:
    """Whether `path` names an entry directly inside one of `folders` (real paths): its
    folder, with links resolved (/var/run/secrets is /run/secrets), is one of them, and
    no `..` leads out of it. The entry itself may be a link (Kubernetes' secret volumes)."""
    full = os.path.abspath(path)
    parent, base = os.path.split(full)
    return bool(base) and os.path.realpath(parent) in folders


def read(env: Mapping[str, str], which: bool | tuple[str, ...],
         dirs: tuple[str, ...] = DEFAULT_DIRS) -> tuple[dict[str, str], list[str]]:
    """({NAME: content}, [NAME_FILE, ...]) for the NAME_FILE variables of `env`: when
    `which` is True, those whose file is directly inside one of `dirs` (and not waitfor's
    own WAITFOR_*_FILE); else those of the names, wherever their file is."""
    if which is False or not which:  # (`is False`: mypy's narrowing of the bool)
        return {}, []
    if which is True:
        folders = {os.path.realpath(d) for d in dirs}
        names = [k[:-len(SUFFIX)] for k, path in env.items()
                 if k.endswith(SUFFIX) and len(k) > len(SUFFIX) and not k.startswith("WAITFOR_")
                 and path and directly_inside(path, folders)]
    else:
        names = [n for n in which if n + SUFFIX in env]
    values: dict[str, str] = {}
    for name in sorted(names):
        var = name + SUFFIX
        if name in env:
            # file_env does the same: which one would win is anyone's guess.
            raise UsageError(f"secrets_env: both {name} and {var} are set (set only one)")
        values[name] = _read_one(var, env[var])
    return values, [n + SUFFIX for n in sorted(names)]


def _read_one(var: str, path: str) -> str:
    if not path:
        raise UsageError(f"secrets_env: {var} is empty (expected a file name)")
    try:  # regular files only, size-capped, never blocking (a FIFO): config/files.py
        data = files.read_small(path, MAX_SIZE, devnull=False)
    except OSError as e:
        raise UsageError(f"secrets_env: {var}: cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise UsageError(f"secrets_env: {var}: {path} is {e}") from None
    if b"\0" in data:
        raise UsageError(f"secrets_env: {var}: {path} holds a NUL byte, which no environment variable can")
    if data.endswith(b"\n"):
        data = data[:-1]  # one: as a secret written with `echo` ends; the rest is content
    return os.fsdecode(data)


def apply(values: dict[str, str], removed: list[str], environ: MutableMapping[str, str] = os.environ) -> None:
    for var in removed:
        environ.pop(var, None)
    environ.update(values)
