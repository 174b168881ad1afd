"""`waitfor schema`: the JSON Schema of the config file, for editors
(yaml-language-server: `# yaml-language-server: $schema=waitfor.schema.json`).
Built from the same validators and probe table the config loader uses."""

import json

from waitfor import validators as v
from waitfor.config import TOP_KEYS
from waitfor.probes import table


def dependency_schema() -> dict:
    variants = []
    for kind in table.KINDS:
        mod = table.module(kind)
        props = {
            "name": {"type": "string"},
            "timeout": v.duration.schema,
            "after": {"type": "array", "items": {"type": "string"}},
            "invert": {"type": "boolean"},
        }
        props.update({k: fn.schema for k, fn in mod.OPTIONS.items()})
        if kind == "command":
            props["command"] = v.argv.schema
            required = ["command"]
        else:
            schemes = [s for s, k in table.SCHEMES.items() if k == kind]
            props["url"] = {"type": "string", "pattern": "^(" + "|".join(schemes) + ")://"}
            if kind == "tcp":
                props["url"]["pattern"] = "^(tcp://)?[^/]+:[0-9]+$"
            required = ["url"]
        variants.append({"title": kind, "type": "object", "properties": props,
                         "required": required, "additionalProperties": False})
    return {"oneOf": [{"type": "string", "description": "a target URL"}] + variants}


def schema() -> dict:
    dep_list = {"type": "array", "items": dependency_schema()}
    props = {
        "timeout": v.duration.schema,
        "interval": v.duration.schema,
        "max_interval": v.duration.schema,
        "attempt_timeout": v.duration.schema,
        "stop_timeout": v.duration.schema,
        "stop_signal": {"type": ["string", "integer"]},
        "log_format": {"enum": ["text", "json"]},
        "probe_addr": {"type": "string"},
        "watch": {"type": "object", "additionalProperties": False, "properties": {
            "interval": v.duration.schema, "failure_threshold": v.positive_int.schema}},
        "dependencies": dep_list,
        "health": dep_list,
    }
    assert set(props) == set(TOP_KEYS)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "waitfor config",
            "type": "object", "properties": props, "additionalProperties": False}


def print_schema() -> int:
    print(json.dumps(schema(), indent=2))
    return 0
