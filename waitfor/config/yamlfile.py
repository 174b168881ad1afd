"""Read the YAML config into plain Python values that remember their line numbers,
so that every config error can name `file:line: key`.

Only what a config needs is loaded: mappings, lists, strings, numbers, booleans and
null. Any other tag (`!!python/object`, `!!binary`, `!!set`, a custom `!tag`) is an
error; an implicit timestamp (`timeout: 2001-13-45`) and an integer with a leading zero
(`mode: 0640`, which YAML 1.1 reads as octal 416) stay the strings they were written as;
a scalar that its explicit tag cannot read (`!!int abc`) is an error at its line.
Nesting and size are bounded, so no document makes the loader recurse or run away.
"""

from __future__ import annotations

import yaml

from waitfor.config.files import read_small
from waitfor.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LDict(dict):
    """A mapping from YAML; `.line` is its own line, `.lines[key]` each key's line (1-based)."""

    line = 0
    lines: dict[str, int]


class LList(list):
    line = 0
    lines: list[int]


_PLAIN_TAGS = {yaml.MappingNode: "tag:yaml.org,2002:map", yaml.SequenceNode: "tag:yaml.org,2002:seq"}


MAX_NODES = 100_000  # a config has hundreds; aliases of aliases ("billion laughs") have billions
MAX_DEPTH = 32  # a config nests four or five deep
MAX_INT = 2**63  # far beyond any count, port or number of seconds a config holds
_SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null")}
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_INT = "tag:yaml.org,2002:int"


class _Walk:
    """The nodes being converted (an alias back into one is a cycle) and a node budget."""

    def __init__(self) -> None:
        self.active: set[int] = set()
        self.nodes = 0


def _scalar(node: yaml.Node, constructor: yaml.constructor.SafeConstructor, path: str) -> Any:
    line = node.start_mark.line + 1
    if node.tag == _TIMESTAMP:
        return node.value  # a config has no dates: keep what was written
    if node.tag == _INT and len(node.value.lstrip("+-")) > 1 and node.value.lstrip("+-")[0] == "0":
        # YAML 1.1 reads 0644 as octal (420) and 0x1A4 as hex: the one octal number of a
        # config is a file mode, which chmod reads from its digits; keep what was written.
        return node.value
    if node.tag not in _SCALAR_TAGS:
        raise UsageError(f"{path}:{line}: unsupported YAML tag {node.tag!r}")
    try:
        value = constructor.construct_object(node)
    except (ValueError, KeyError, OverflowError, yaml.YAMLError):  # !!int abc, !!bool maybe, 5,000 digits
        kind = node.tag.rsplit(":", 1)[1]
        raise UsageError(f"{path}:{line}: not a valid {kind} (explicit tag !!{kind})") from None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise UsageError(f"{path}:{line}: number out of range")
    return value


def _convert(node: yaml.Node, constructor: yaml.constructor.SafeConstructor, path: str,
             walk: _Walk | None = None) -> Any:
    walk = walk or _Walk()
    line = node.start_mark.line + 1
    if id(node) in walk.active:
        raise UsageError(f"{path}:{line}: a YAML alias refers to the collection that contains it")
    walk.nodes += 1
    if walk.nodes > MAX_NODES:
        raise UsageError(f"{path}:{line}: too many YAML nodes (more than {MAX_NODES}; aliases of aliases?)")
    if not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        return _scalar(node, constructor, path)
    if len(walk.active) >= MAX_DEPTH:
        raise UsageError(f"{path}:{line}: nested more than {MAX_DEPTH} deep")
    walk.active.add(id(node))
    try:
        return _convert_collection(node, constructor, path, walk)
    finally:
        walk.active.discard(id(node))


def _convert_collection(node: yaml.Node, constructor: yaml.constructor.SafeConstructor, path: str,
                        walk: _Walk) -> Any:
    plain = _PLAIN_TAGS.get(type(node))  # type: ignore[arg-type]
    if plain is not None and node.tag != plain:  # such as !!python/object, !!set, !!omap
        raise UsageError(f"{path}:{node.start_mark.line + 1}: unsupported YAML tag {node.tag!r}")
    if isinstance(node, yaml.MappingNode):
        out = LDict()
        out.line, out.lines = node.start_mark.line + 1, {}
        # YAML merge keys (`<<: *defaults`), as Compose files use them: the merged pairs
        # come first, and a key of the mapping itself overrides a merged one.
        own = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
        constructor.flatten_mapping(node)
        merged = set()
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                raise UsageError(f"{path}:{knode.start_mark.line + 1}: mapping keys must be plain strings")
            key = _scalar(knode, constructor, path)
            if not isinstance(key, str):
                key = str(key)
            if id(knode) not in own:
                merged.add(key)
            elif key in merged:
                merged.discard(key)
                del out[key]
            if key in out and key not in merged:
                raise UsageError(f"{path}:{knode.start_mark.line + 1}: {key}: duplicate key")
            out[key] = _convert(vnode, constructor, path, walk)
            out.lines[key] = knode.start_mark.line + 1
        return out
    items = LList(_convert(v, constructor, path, walk) for v in node.value)
    items.line, items.lines = node.start_mark.line + 1, [v.start_mark.line + 1 for v in node.value]
    return items


MAX_FILE_BYTES = 1 << 20  # a config is a few KiB


def load(path: str) -> Any:
    """Return the document as LDict/LList/scalars, or raise UsageError naming file and line."""
    try:
        text = read_small(path, MAX_FILE_BYTES, devnull=False)
    except OSError as e:
        raise UsageError(f"{path}: cannot read config: {e.strerror}") from None
    except ValueError as e:
        raise UsageError(f"{path}: cannot read config: {e}") from None
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            constructor = yaml.constructor.SafeConstructor()
            return None if node is None else _convert(node, constructor, path)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f":{mark.line + 1}" if mark else ""
        raise UsageError(f"{path}{where}: invalid YAML: {e.problem or e.context}") from None
    except yaml.reader.ReaderError as e:  # not UTF-8, or a control character
        at_line = text[:e.position].count(b"\n") + 1
        ch = e.character if isinstance(e.character, int) else ord(e.character)
        raise UsageError(f"{path}:{at_line}: invalid YAML: {e.reason} (#x{ch:02x})") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from None
