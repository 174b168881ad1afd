"""Read the YAML config into plain Python values that remember their line numbers,
so that every config error can name `file:line: key`."""

import yaml

from waitfor.errors import UsageError

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LDict(dict):
    """A mapping from YAML; `.line` is its own line, `.lines[key]` each key's line (1-based)."""

    line = 0
    lines: dict


class LList(list):
    line = 0
    lines: list


_PLAIN_TAGS = {yaml.MappingNode: "tag:yaml.org,2002:map", yaml.SequenceNode: "tag:yaml.org,2002:seq"}


MAX_NODES = 100_000  # a config has hundreds; aliases of aliases ("billion laughs") have billions


class _Walk:
    """The nodes being converted (an alias back into one is a cycle) and a node budget."""

    def __init__(self):
        self.active, self.nodes = set(), 0


def _convert(node, constructor, path: str, walk: "_Walk | None" = None):
    walk = walk or _Walk()
    line = node.start_mark.line + 1
    if id(node) in walk.active:
        raise UsageError(f"{path}:{line}: a YAML alias refers to the collection that contains it")
    walk.nodes += 1
    if walk.nodes > MAX_NODES:
        raise UsageError(f"{path}:{line}: too many YAML nodes (more than {MAX_NODES}; aliases of aliases?)")
    if not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        return constructor.construct_object(node)
    walk.active.add(id(node))
    try:
        return _convert_collection(node, constructor, path, walk)
    finally:
        walk.active.discard(id(node))


def _convert_collection(node, constructor, path: str, walk: _Walk):
    plain = _PLAIN_TAGS.get(type(node))
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
            key = constructor.construct_object(knode)
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
    if isinstance(node, yaml.SequenceNode):
        out = LList(_convert(v, constructor, path, walk) for v in node.value)
        out.line, out.lines = node.start_mark.line + 1, [v.start_mark.line + 1 for v in node.value]
        return out


def load(path: str):
    """Return the document as LDict/LList/scalars, or raise UsageError naming file and line."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise UsageError(f"{path}: cannot read config: {e.strerror}") from None
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
        line = f":{mark.line + 1}" if mark else ""
        raise UsageError(f"{path}{line}: invalid YAML: {e.problem or e.context}") from None
    except yaml.reader.ReaderError as e:  # not UTF-8, or a control character
        line = text[:e.position].count(b"\n") + 1 if isinstance(text, bytes) else "?"
        ch = e.character if isinstance(e.character, int) else ord(e.character)
        raise UsageError(f"{path}:{line}: invalid YAML: {e.reason} (#x{ch:02x})") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from None
