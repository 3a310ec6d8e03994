"""Reading options: a YAML config file and the flags, checked by a command's schema; errors said on one line."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from headcls.errors import HeadclsError
from headcls.options.fields import Options, Positional

MESSAGES = {  # pydantic error type -> how we say it; {ctx keys} are filled from the error's context
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be greater than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "finite_number": "must be a finite number",
    "int_parsing": "must be a whole number, written in digits",
    "int_from_float": "must be a whole number",
    "int_type": "must be a whole number",
    "int_parsing_size": "must be a whole number of sensible size",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "list_type": "must be a list of strings",
    "too_short": "needs at least one item",
    "missing": "is required",
}


def _say(error: dict) -> str:
    kind = error["type"]
    if kind == "literal_error":
        return f"must be one of {error['ctx']['expected'].replace(' or ', ', ').replace(chr(39), '')}"
    if kind in MESSAGES:
        ctx = {k: f"{v:g}" if isinstance(v, float) else v for k, v in error.get("ctx", {}).items()}
        return MESSAGES[kind].format(**ctx)
    return error["msg"].removeprefix("Value error, ").removeprefix("Input should be ")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def problems(errors: list[dict], flags: set[str], config_file: str | None, cls=None) -> str:
    """One line naming every offending flag or config key, what was given and what would be valid."""
    cls_fields = {n: f.metadata for n, f in cls.model_fields.items()} if cls else {}
    lines = []
    for e in errors:
        field = str(e["loc"][0]) if e["loc"] else None
        what = _say(e)
        if field is None:  # a rule across options: its message names the flags
            lines.append(what)
        elif any(isinstance(m, Positional) for m in cls_fields.get(field, ())):
            where = f"sentence {e['loc'][1] + 1}" if len(e["loc"]) > 1 else "the sentences"
            lines.append(f"{where} {what}")
        elif e["type"] == "extra_forbidden":  # a keyword of the Python API (a config file's are caught before)
            close = difflib.get_close_matches(field, cls.model_fields if cls else [], n=1)
            lines.append(f"unknown option {field!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        elif field in flags:  # a flag's value is the string typed: show it as typed
            value = e["input"]
            shown = "" if e["type"] == "missing" else f", got {value if isinstance(value, str) else _shown(value)}"
            lines.append(f"--{field.replace('_', '-')} {what}{shown}")
        elif config_file:
            lines.append(f"{config_file}: key {field!r} {what}, got {_shown(e['input'])}")
        else:
            shown = "" if e["type"] == "missing" else f", got {_shown(e['input'])}"
            lines.append(f"--{field.replace('_', '-')} {what}{shown}")
    return "; ".join(lines)


class YamlLoader(yaml.SafeLoader):
    """YAML 1.1 reads 1e-3 (no dot) as a string; as an option's value it is always a number."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a mapping (checked against a command's schema by `build_config`). It is read
    as every text file is (a BOM decides the encoding)."""
    from headcls.files.text import TextReader

    path = Path(os.path.expanduser(path))
    if path.is_dir():
        raise HeadclsError(f"{path}: is a folder, not a config file")
    if not path.is_file():
        raise HeadclsError(f"{path}: config file not found")
    try:
        with TextReader(path, "utf-8") as reader:
            raw = yaml.load(reader.read(), Loader=YamlLoader)  # a SafeLoader with one more resolver
    except yaml.YAMLError as e:
        raise HeadclsError(f"{path}: not a valid YAML file ({str(e).splitlines()[0]})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise HeadclsError(f"{path}: a config file must be a mapping of keys to values, got {type(raw).__name__}")
    return raw


def build_config(cls: type[Options], config_file: str | None = None, flags: dict[str, Any] | None = None):
    """Defaults, then the YAML file (typed values, checked strictly), then the flags (strings, parsed here).

    Raises HeadclsError with one line naming every offending flag or key.
    """
    flags = flags or {}
    values: dict[str, Any] = {}
    if config_file:
        values = load_yaml(config_file)
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            close = difflib.get_close_matches(unknown[0], cls.model_fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise HeadclsError(
                f"{config_file}: unknown key {', '.join(map(repr, unknown))}{hint}; "
                f"valid keys are: {', '.join(sorted(cls.model_fields))}"
            )
        # Strict on YAML's own types: `epochs: true` or `batch_size: "32"` are mistakes, not numbers.
        try:
            cls.model_validate(values, strict=True)
        except ValidationError as e:
            field_errors = [x for x in e.errors() if x["loc"] and x["type"] != "missing"]
            if field_errors:
                raise HeadclsError(problems(field_errors, set(), config_file, cls)) from None
    try:
        return cls.model_validate({**values, **flags})
    except ValidationError as e:
        raise HeadclsError(problems(e.errors(), set(flags), config_file, cls)) from None


def to_dict(cfg: Options) -> dict[str, Any]:
    return cfg.model_dump()


def options_for(cls: type[Options], cfg: Options | None, options: dict[str, Any]) -> Options:
    """The options of a library entry point (`headcls.train(...)`, ...): a schema instance as given, or keyword
    arguments checked by the command's schema as its flags are (a mistake is one HeadclsError naming them all)."""
    if cfg is not None:
        if options:
            raise HeadclsError(f"give a {cls.__name__} or keyword options, not both (got {', '.join(options)})")
        if not isinstance(cfg, cls):
            raise HeadclsError(f"expected a {cls.__name__}, got {type(cfg).__name__}")
        return cfg
    return build_config(cls, flags=options)
