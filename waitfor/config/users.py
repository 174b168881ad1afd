"""`--user USER[:GROUP]` resolved to numbers with the password and group databases, when
the config is read, so that an unknown name is exit 2 before the wait and the lean
supervisor gets numbers (and imports neither pwd nor grp).

The rules are gosu's and su-exec's (ncopa/su-exec su-exec.c; gosu through runc's
libcontainer/user.GetExecUser, "if the userArg is numeric, always treat it as a UID"):
a spec of ASCII digits only is an id, anything else a name; a name must be in the
database; an id need not be (`docker run --user 1234`). Only ASCII digits are a number:
str.isdigit() is also true of `١٢٣` (Arabic-Indic) and `²`, which int() reads as 123
or rejects, and which no id parser of the peers (strtol, strconv.Atoi) accepts.
"""

from __future__ import annotations

import os

from waitfor.config.validators import is_number, string, validator

MAX_ID = 0xFFFFFFFE  # (uid_t)-1 is "no change" to setresuid(2)


def resolve(spec: str) -> tuple[str, int, int, tuple[int, ...], str]:
    """USER[:GROUP] -> (spec, uid, gid, supplementary gids, home). ValueError for users.

    As gosu and su-exec: the user's primary group and its groups from the group database
    (initgroups(3)) unless GROUP is given, then no supplementary group at all. An id that
    is not in the password database is taken as is, with gid 0 and HOME / unless GROUP is
    given, as `docker run --user 1234` does."""
    import grp
    import pwd

    name, sep, group = spec.partition(":")
    if not name or (sep and not group):
        raise ValueError(f"expected USER or USER:GROUP, got {spec!r}")
    for part in (name, group):
        if is_number(part) and int(part) > MAX_ID:
            raise ValueError(f"id out of range in {spec!r}")
    try:
        pw = pwd.getpwuid(int(name)) if is_number(name) else pwd.getpwnam(name)
    except KeyError:
        if not is_number(name):
            raise ValueError(f"unknown user {name!r} (not in the password database)") from None
        pw = None
    except ValueError:  # a NUL in the name
        raise ValueError(f"unknown user {name!r} (not in the password database)") from None
    uid = pw.pw_uid if pw else int(name)
    home = pw.pw_dir if pw else "/"
    if group:
        try:
            gid = grp.getgrgid(int(group)).gr_gid if is_number(group) else grp.getgrnam(group).gr_gid
        except (KeyError, ValueError):
            if not is_number(group):
                raise ValueError(f"unknown group {group!r} (not in the group database)") from None
            gid = int(group)
        groups: tuple[int, ...] = ()
    elif pw:
        gid = pw.pw_gid
        groups = tuple(dict.fromkeys(os.getgrouplist(pw.pw_name, gid)))
    else:
        gid, groups = 0, (0,)
    return spec, uid, gid, groups, home


def check_switch(user: object) -> None:
    """Only root may switch user (`user` as resolve() returns it, or None); switching to
    the ids waitfor already has is a no-op, as `gosu $(id -u)` is. ValueError, located by
    the caller at the setting's source."""
    if not isinstance(user, tuple) or os.geteuid() == 0:
        return
    _, uid, gid, groups, _ = user
    if (uid, gid) == (os.getuid(), os.getgid()) == (os.geteuid(), os.getegid()) and (
            not groups or set(groups) <= set(os.getgroups()) | {gid}):
        return
    raise ValueError(f"not root, cannot switch user (waitfor runs as uid {os.geteuid()})")


@validator({"type": ["string", "integer"],
               "description": "USER[:GROUP], a name or a number for each (as gosu and su-exec take it)"})
def user(value: object) -> tuple[str, int, int, tuple[int, ...], str]:
    """The `user` setting: USER[:GROUP] -> (spec, uid, gid, supplementary gids, home)."""
    spec = str(value) if isinstance(value, int) and not isinstance(value, bool) else string(value)
    return resolve(spec)


def show_user(value: object) -> object:
    return value[0] if isinstance(value, tuple) else value
