"""Reading the small files a config names: the config itself, `password_file`, `ca_file`,
template sources. One rule for all of them: a regular file (or /dev/null, an empty
secret), opened without blocking and read up to a size limit. A FIFO would block the
start for ever with every signal blocked, and /dev/zero or a log file would be read
without end. ValueError (a reason for users) or OSError (its strerror) otherwise.
"""

from __future__ import annotations

import os
import stat

# A CA bundle is some hundred KiB (Debian's: 220 KiB), a password or token less than one.
MAX_FILE = 4 << 20
MAX_SECRET = 64 << 10


def size_text(limit: int) -> str:
    """4 MiB, 64 KiB: a limit as the README states it."""
    return f"{limit >> 20} MiB" if limit >= 1 << 20 and not limit & 0xFFFFF else f"{limit >> 10} KiB"


def open_small(path: str, limit: int, devnull: bool = True, dir_fd: int | None = None) -> int:
    """An fd of `path` if it is a regular file of at most `limit` bytes (or /dev/null, when
    `devnull`). Never blocks: O_NONBLOCK makes the open of a FIFO return, fstat refuses it.
    With `dir_fd`: `path` is a name in that folder, not followed if it is a symlink."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    fd = os.open(path, flags | os.O_NOFOLLOW, dir_fd=dir_fd) if dir_fd is not None else os.open(path, flags)
    try:
        st = os.fstat(fd)
        if devnull and stat.S_ISCHR(st.st_mode) and st.st_rdev == os.stat(os.devnull).st_rdev:
            return fd
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > limit:
            raise ValueError(f"larger than {size_text(limit)}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_small(path: str, limit: int, devnull: bool = True) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (it may grow after fstat: the
    read stops one byte past the limit)."""
    fd = open_small(path, limit, devnull)
    try:
        return read_fd(fd, limit)
    finally:
        os.close(fd)


def read_fd(fd: int, limit: int) -> bytes:
    """At most `limit` bytes of an open file (ValueError past them)."""
    chunks, size = [], 0
    while size <= limit:
        chunk = os.read(fd, min(1 << 20, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise ValueError(f"larger than {size_text(limit)}")
    return b"".join(chunks)


def check_readable(path: str, limit: int = MAX_FILE) -> None:
    """`password_file`, `ca_file`: there and readable when the config is read (exit 2)."""
    try:
        os.close(open_small(path, limit))
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise ValueError(f"cannot read {path}: {e}") from None


def read_secret(path: str) -> str:
    """A password or token file (Docker and Kubernetes secrets): at most MAX_SECRET bytes,
    without the line ending such files often have. ValueError otherwise."""
    try:
        data = read_small(path, MAX_SECRET)
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    return data.decode("utf-8").rstrip("\r\n")
