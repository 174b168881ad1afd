"""`waitfor schema`: the JSON Schema of the config file, for editors
(yaml-language-server: `# yaml-language-server: $schema=waitfor.schema.json`).
Built from the same SETTINGS table, validators and probe table the config loader uses."""

from __future__ import annotations

import json

from waitfor.config import validators as v
from waitfor.config.model import LIST_KEYS, SETTINGS
from waitfor.probes import table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _schema_of(fn: object) -> dict[str, Any]:
    return dict(fn.schema) if isinstance(fn, v.Validator) else {}


def dependency_schema() -> dict[str, Any]:
    variants: list[dict[str, Any]] = []
    for kind in table.KINDS:
        mod = table.load(kind)
        props: dict[str, Any] = {
            "name": {"type": "string"},
            "timeout": _schema_of(v.duration),
            "after": {"type": "array", "items": {"type": "string"}},
            "invert": {"type": "boolean"},
        }
        props.update({k: _schema_of(fn) for k, fn in mod.OPTIONS.items()})
        if kind == "command":
            props["command"] = _schema_of(v.argv)
            required = ["command"]
        else:
            schemes = [s for s, k in table.SCHEMES.items() if k == kind]
            props["url"] = {"type": "string", "pattern": "^(" + "|".join(schemes) + ")://"}
            if kind == "tcp":
                props["url"]["pattern"] = "^(tcp://)?[^/]+:[0-9]+$"
            required = ["url"]
        variants.append({"title": kind, "type": "object", "properties": props,
                         "required": required, "additionalProperties": False})
    return {"oneOf": [{"type": "string", "description": "a target URL"}, *variants]}


def schema() -> dict[str, Any]:
    props: dict[str, Any] = {}
    for s in SETTINGS:
        if not s.yaml:
            continue
        if "." in s.yaml:
            parent, child = s.yaml.split(".", 1)
            nested = props.setdefault(parent, {"type": "object", "additionalProperties": False, "properties": {}})
            nested["properties"][child] = dict(s.schema)
        else:
            props[s.yaml] = dict(s.schema)
    dep_list = {"type": "array", "items": dependency_schema()}
    props.update({key: dep_list for key in LIST_KEYS})
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "waitfor config",
            "type": "object", "properties": props, "additionalProperties": False}


def run_schema() -> int:
    from waitfor.output import write_stdout

    write_stdout(json.dumps(schema(), indent=2) + "\n")
    return 0
