"""`templates:` / `--template SRC:DEST`: config files rendered from the environment, as
`dockerize -template` does, but with the config file's own rules (one engine:
waitfor.config.interpolate: `${VAR}`, `${VAR:-default}`, `${VAR:?message}`, `$$`), not
Go templates, and nothing is ever evaluated.

    render(cfg)  before the wait: read and render each source (a missing required
                 variable, an unreadable source or a destination folder that cannot be
                 written is exit 2 before anything waits: fail fast)
    write(...)   after the wait, before the app: each file written atomically (a
                 temporary file in the destination's own folder, then rename(2), so a
                 read-only root with a writable emptyDir/tmpfs destination works, and a
                 reader never sees half a file), with its mode, owned by `user:` if set.

The environment is the app's: with secrets_env, NAME is already read from NAME_FILE.
"""

from __future__ import annotations

import os

from waitfor.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from waitfor.config.model import Config
    from waitfor.output import Log

MAX_SIZE = 4 << 20  # a config file, not a data set
# Owner-only by default: a rendered config often carries a secret (secrets_env feeds it),
# and its owner is the app's own user (`user:`, or waitfor's). `mode: 0644` opens it up.
DEFAULT_MODE = 0o600


def render(cfg: Config, env: Mapping[str, str], log: Log) -> list[tuple[str, str, int, str]]:
    """[(src, dest, mode, text)], or a UsageError naming the template (and line)."""
    from waitfor.config.interpolate import interpolate

    out = []
    for src, dest, mode in cfg.templates:
        where = f"template {src}"
        try:
            with open(src, encoding="utf-8") as f:
                source = f.read(MAX_SIZE + 1)
        except (OSError, UnicodeDecodeError) as e:
            why = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
            raise UsageError(f"{where}: cannot read it: {why}") from None
        if len(source) > MAX_SIZE:
            raise UsageError(f"{where}: larger than {MAX_SIZE >> 20} MiB")
        unset: set[str] = set()
        try:
            text = interpolate(source, env, unset)
        except ValueError as e:
            raise UsageError(f"{where}:{_line_of_error(source, env)}: {e}") from None
        for name in sorted(unset):
            log.warning(f"{where}: the {name} variable is not set; using an empty string", variable=name)
        folder = os.path.dirname(os.path.abspath(dest))
        if not os.path.isdir(folder):
            raise UsageError(f"{where}: cannot write {dest}: its folder {folder} does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UsageError(f"{where}: cannot write {dest}: its folder {folder} is not writable")
        if os.path.isdir(dest):
            raise UsageError(f"{where}: cannot write {dest}: it is a folder")
        out.append((src, dest, DEFAULT_MODE if mode is None else mode, text))
    return out


def _line_of_error(source: str, env: Mapping[str, str]) -> int | str:
    """The first line that fails on its own (a reference rarely spans lines)."""
    from waitfor.config.interpolate import interpolate

    for n, line in enumerate(source.splitlines(), 1):
        try:
            interpolate(line, env)
        except ValueError:
            return n
    return "?"


def write(rendered: list[tuple[str, str, int, str]], owner: tuple[int, int] | None, log: Log) -> None:
    """Write each file atomically; on any error remove the temporary file and raise exit 2."""
    import tempfile

    for src, dest, mode, text in rendered:
        folder = os.path.dirname(os.path.abspath(dest))
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(dest)}.", suffix=".tmp")
            try:
                data = text.encode("utf-8")
                while data:
                    data = data[os.write(fd, data):]
                if owner is not None:
                    os.fchown(fd, owner[0], owner[1])
                os.fchmod(fd, mode)  # after fchown, which clears set-id bits
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, dest)
            tmp = None
        except OSError as e:
            raise UsageError(f"template {src}: cannot write {dest}: {e.strerror}") from None
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        log.debug(f"template {src}: wrote {dest}", template=src, dest=dest)
