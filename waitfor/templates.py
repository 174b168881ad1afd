"""`templates:` / `--template SRC:DEST`: config files rendered from the environment, as
`dockerize -template` does, but with the config file's own rules (one engine:
waitfor.config.interpolate: `${VAR}`, `${VAR:-default}`, `${VAR:?message}`, `$$`), not
Go templates, and nothing is ever evaluated.

    render(cfg)  before the wait: read and render each source (a missing required
                 variable, a source that is not a small regular file, a rendering over
                 MAX_RENDERED, or a destination folder that is missing, not writable or
                 reached through an unsafe path is exit 2 before anything waits)
    write(...)   after the wait, before the app: each file written atomically (a
                 temporary file in the destination's own folder, then rename(2), so a
                 read-only root with a writable emptyDir/tmpfs destination works, and a
                 reader never sees half a file), with its mode, owned by `user:` if set.

Bytes in, bytes out: sources and values are bytes as the filesystem and the environment
have them (os.fsdecode/os.fsencode: UTF-8 with surrogateescape), so a binary `*_FILE`
value or `café` in Latin-1 is written as it is, as dockerize and envsubst do.

The destination's folder is reached from / one component at a time with O_PATH
descriptors (open_folder below), and the file is created and renamed relative to the
folder's descriptor: a path component swapped for a symlink after the check (during the
wait, say) cannot redirect the write. A symlink is followed only where no user but root
(and waitfor's own user) could have put it, as systemd-tmpfiles refuses an "unsafe path
transition" (systemd src/basic/chase.c, CHASE_SAFE).

The environment is the app's: with secrets_env, NAME is already read from NAME_FILE.
"""

from __future__ import annotations

import os
import stat

from waitfor.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from waitfor.config.model import Config
    from waitfor.output import Log

# A config file is some KiB; a template that inlines a CA bundle some hundred. 4 MiB
# each way keeps `$A` x 1 MB with a 64 KiB A (32 GB) from exhausting memory before the
# wait, and is far above any config a program reads at start.
MAX_SIZE = 4 << 20      # a source
MAX_RENDERED = 4 << 20  # what is written
# Owner-only by default: a rendered config often carries a secret (secrets_env feeds it),
# and its owner is the app's own user (`user:`, or waitfor's). `mode: 0644` opens it up.
DEFAULT_MODE = 0o600
MAX_LINKS = 40  # symlinks followed in one path, as the kernel's path walk (ELOOP)

_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_ENTRY = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def render(cfg: Config, env: Mapping[str, str], log: Log) -> list[tuple[str, str, int, bytes]]:
    """[(src, dest, mode, data)], or a UsageError naming the template (and line)."""
    from waitfor.config.files import size_text
    from waitfor.config.interpolate import TooLong, interpolate

    out = []
    for src, dest, mode in cfg.templates:
        where = f"template {src}"
        source = os.fsdecode(read_source(src, MAX_SIZE))
        unset: set[str] = set()
        try:
            text = interpolate(source, env, unset, limit=MAX_RENDERED)
            data = os.fsencode(text)
        except TooLong:
            raise UsageError(f"{where}: rendered, it is larger than {size_text(MAX_RENDERED)}") from None
        except UnicodeEncodeError:  # not from the environment nor a file: they decode to bytes
            raise UsageError(f"{where}: a value holds text the file system encoding cannot write") from None
        except ValueError as e:
            raise UsageError(f"{where}:{_line_of_error(source, env)}: {e}") from None
        if len(data) > MAX_RENDERED:
            raise UsageError(f"{where}: rendered, it is larger than {size_text(MAX_RENDERED)}")
        for name in sorted(unset):
            log.warning(f"{where}: the {name} variable is not set; using an empty string", variable=name)
        check_dest(src, dest)
        out.append((src, dest, DEFAULT_MODE if mode is None else mode, data))
    return out


def check_dest(src: str, dest: str) -> None:
    """The destination's folder exists, is reached safely and is writable, and DEST is
    not a folder (before the wait; write() walks the path again when it writes)."""
    folder, name = _split(dest)
    fd = open_folder(folder, f"template {src}: cannot write {dest}")
    try:
        if not os.access(f"/proc/self/fd/{fd}", os.W_OK | os.X_OK) and not os.access(folder, os.W_OK | os.X_OK):
            raise UsageError(f"template {src}: cannot write {dest}: its folder {folder} is not writable")
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        except OSError as e:
            raise UsageError(f"template {src}: cannot write {dest}: {e.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"template {src}: cannot write {dest}: it is a folder")
    finally:
        os.close(fd)


def _line_of_error(source: str, env: Mapping[str, str]) -> int | str:
    """The first line that fails on its own (a reference rarely spans lines)."""
    from waitfor.config.interpolate import interpolate

    for n, line in enumerate(source.splitlines(), 1):
        try:
            interpolate(line, env, limit=MAX_RENDERED)
        except ValueError:
            return n
    return "?"


def _split(dest: str) -> tuple[str, str]:
    path = os.path.join(os.getcwd(), dest)  # getcwd has no symlink in it; no normpath
    folder, name = os.path.split(path)
    return folder or "/", name


def _unsafe(folder: os.stat_result, entry: os.stat_result, trusted: tuple[int, ...]) -> str | None:
    """Why a user other than root (and waitfor's own user) could have put `entry` in
    `folder`, or None. Only the owner at the time of the walk counts: we fstat the very
    object we then use, so what was there before or comes after does not matter."""
    link = stat.S_ISLNK(entry.st_mode)
    if folder.st_uid not in trusted:
        # its owner can rename anything in it: only its own things are its own business
        if link:
            return f"a symbolic link in a folder owned by uid {folder.st_uid}"
        if entry.st_uid != folder.st_uid:
            return f"owned by uid {entry.st_uid}, in a folder owned by uid {folder.st_uid}"
        return None
    if folder.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        if not folder.st_mode & stat.S_ISVTX:
            return "in a folder that users other than root can write"
        # sticky (/tmp): only an entry's owner may rename it
        if link and entry.st_uid not in trusted:
            return f"a symbolic link owned by uid {entry.st_uid}"
        return None
    if link and entry.st_uid not in trusted:
        return f"a symbolic link owned by uid {entry.st_uid}"
    return None


def open_folder(folder: str, context: str) -> int:
    """An O_PATH descriptor of `folder` (absolute), reached safely (walk)."""
    return walk(folder, context)[0]


def walk(path: str, context: str, file: bool = False) -> tuple[int, str]:
    """(an O_PATH descriptor of `path`, "") reached from / one component at a time with
    O_NOFOLLOW, each checked by _unsafe before it is entered or followed; `..` goes back
    to the folder it came from. With `file`: (the descriptor of the folder that holds the
    last component, once its symlinks are followed, and that component's name), for the
    caller to open with O_NOFOLLOW. A UsageError starting with `context` otherwise."""
    trusted = (0, os.geteuid())
    stack = [os.open("/", _DIR)]  # the folders entered; their names:
    names: list[str] = []
    todo = [part for part in reversed(path.split("/")) if part]
    links = 0
    try:
        while todo:
            part = todo.pop()
            if part == ".":
                continue
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                    names.pop()
                continue
            shown = "/" + "/".join([*names, part])
            try:
                fd = os.open(part, _ENTRY, dir_fd=stack[-1])
            except FileNotFoundError:
                if file and not todo:
                    return stack.pop(), part  # the caller's open says it
                raise UsageError(f"{context}: its folder {shown} does not exist") from None
            except OSError as e:
                raise UsageError(f"{context}: {shown}: {e.strerror}") from None
            try:
                st = os.fstat(fd)
                why = _unsafe(os.fstat(stack[-1]), st, trusted)
                if why:
                    raise UsageError(f"{context}: unsafe path: {shown} is {why} "
                                     "(root does not follow a path another user could redirect)")
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > MAX_LINKS:
                        raise UsageError(f"{context}: {shown}: too many levels of symbolic links")
                    target = os.readlink("", dir_fd=fd)  # the link we checked, not its name
                    todo.extend(p for p in reversed(target.split("/")) if p)
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop())
                        names.clear()
                    os.close(fd)
                    continue
                if file and not todo:
                    os.close(fd)
                    return stack.pop(), part
                if not stat.S_ISDIR(st.st_mode):
                    raise UsageError(f"{context}: {shown} is not a folder")
            except BaseException:
                os.close(fd)
                raise
            stack.append(fd)  # an O_PATH descriptor serves as the dir_fd of the next step
            names.append(part)
        return stack.pop(), ""
    finally:
        for fd in stack:
            os.close(fd)


def read_source(src: str, limit: int) -> bytes:
    """A template source, read as root may read it: reached by a safe walk (walk), opened
    with O_NOFOLLOW in the folder found, and, in a folder that another user owns, only a
    file of that user's (a hard link to a root-only file, or a file swapped in after the
    walk, is refused by the same rule: fstat of the very file read). A FIFO, a device or
    more than `limit` bytes is refused (waitfor.config.files)."""
    from waitfor.config.files import open_small, read_fd

    where = f"template {src}"
    dir_fd, name = walk(os.path.join(os.getcwd(), src), f"{where}: cannot read it", file=True)
    try:
        try:
            fd = open_small(name, limit, dir_fd=dir_fd)
        except OSError as e:
            raise UsageError(f"{where}: cannot read it: {e.strerror}") from None
        except ValueError as e:
            raise UsageError(f"{where}: cannot read it: {e}") from None
        try:
            why = _unsafe(os.fstat(dir_fd), os.fstat(fd), (0, os.geteuid()))
            if why:
                raise UsageError(f"{where}: cannot read it: unsafe path: {src} is {why}")
            return read_fd(fd, limit)
        except ValueError as e:
            raise UsageError(f"{where}: cannot read it: {e}") from None
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)


def write(rendered: list[tuple[str, str, int, bytes]], owner: tuple[int, int] | None, log: Log) -> None:
    """Write each file atomically; on any error remove the temporary file and raise exit 2."""
    for src, dest, mode, data in rendered:
        folder, name = _split(dest)
        dir_fd = open_folder(folder, f"template {src}: cannot write {dest}")
        tmp = None
        try:
            fd, tmp = _create_temp(dir_fd, name)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if owner is not None:
                    os.fchown(fd, owner[0], owner[1])
                os.fchmod(fd, mode)  # after fchown, which clears set-id bits
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            tmp = None
        except OSError as e:
            raise UsageError(f"template {src}: cannot write {dest}: {e.strerror}") from None
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp, dir_fd=dir_fd)
                except OSError:
                    pass
            os.close(dir_fd)
        log.debug(f"template {src}: wrote {dest}", template=src, dest=dest)


def _create_temp(dir_fd: int, name: str) -> tuple[int, str]:
    """A new file `.NAME.<random>.tmp` in the folder, created (O_EXCL, O_NOFOLLOW) by us."""
    for _ in range(100):
        tmp = f".{name}.{os.urandom(6).hex()}.tmp"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(tmp, flags, 0o600, dir_fd=dir_fd), tmp
        except FileExistsError:
            continue
    raise FileExistsError(17, "no free temporary name")
