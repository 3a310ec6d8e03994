"""The command line's parser: one subcommand per option schema, one flag per field, usage mistakes on one line."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import typing

HELP = {
    "train": "fine-tune an encoder + classification head, evaluate, save",
    "evaluate": "score a trained model on labelled data",
    "predict": "classify sentences or a file",
    "export": "write an ONNX Runtime model folder (optionally int8)",
    "serve": "a REST API and a page to try a model (FastAPI + uvicorn)",
}


# Values that start with '-' but are numbers (argparse alone takes only -1 and -1.5 as values, not -1e-3 or -inf).
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


def printable(message: object) -> str:
    """One line whatever a path or value holds: control characters (CR, LF, ESC, ...) shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message))


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake on one line (exit 2) instead of the usage block."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER  # argparse's hook for what looks like a negative number

    def parse_args(self, args=None, namespace=None):
        self.argv = list(sys.argv[1:] if args is None else args)
        return super().parse_args(args, namespace)

    def error(self, message: str) -> typing.NoReturn:
        unknown = re.match(r"unrecognized arguments: (--?[\w-]+)", message)
        commands = self._subparsers._group_actions[0].choices if self._subparsers else {}
        command = next((a for a in getattr(self, "argv", []) if a in commands), None)
        if unknown and command:
            def flags(parser):
                return [o for a in parser._actions for o in a.option_strings]

            elsewhere = [c for c, p in commands.items() if unknown.group(1) in flags(p)]
            close = difflib.get_close_matches(unknown.group(1), flags(commands[command]), n=1)
            if elsewhere:
                message += f"; {unknown.group(1)} is an option of {' and '.join(elsewhere)}, not of {command}"
            elif close:
                message += f"; did you mean {close[0]}?"
        self.exit(2, f"headcls: error: {printable(message)} (see: {self.prog} --help)\n")


def _metavar(name: str, annotation) -> str:
    from headcls.options.fields import base_type

    base = base_type(annotation)
    if typing.get_origin(base) is typing.Literal:
        return "{" + ",".join(typing.get_args(base)) + "}"
    return {int: "N", float: "X"}.get(base) or name.split("_")[-1].upper()  # --test-file FILE, --model MODEL


def add_options(parser: argparse.ArgumentParser, schema) -> None:
    """One flag per schema field; values stay strings until the schema checks them."""
    from headcls.options.fields import Positional, Runs, Writes, base_type

    # The command's own options first, then those every command that runs a model or writes an output shares.
    shared = {**Runs.model_fields, **Writes.model_fields}
    for name, field in sorted(schema.model_fields.items(), key=lambda item: item[0] in shared):
        flag = "--" + name.replace("_", "-")
        help_text = field.description or ""
        if field.is_required():
            help_text += " (required)"
        elif (default := field.get_default(call_default_factory=True)) not in (None, [], False, True):
            help_text += f" (default: {' '.join(default) if isinstance(default, list) else default})"
        if any(isinstance(m, Positional) for m in field.metadata):
            parser.add_argument(name, nargs="*", default=argparse.SUPPRESS, help=help_text)
        elif field.annotation is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        elif typing.get_origin(base_type(field.annotation)) is list:
            parser.add_argument(flag, nargs="+", default=argparse.SUPPRESS, metavar="NAME", help=help_text)
        else:
            metavar = _metavar(name, field.annotation)
            parser.add_argument(flag, default=argparse.SUPPRESS, metavar=metavar, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    from headcls import __version__
    from headcls.options.commands import COMMAND_CONFIGS

    parser = Parser(prog="headcls", description="Head-based text classification with BERT encoders.",
                    allow_abbrev=False)
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--version", action="version", version=f"headcls {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command, schema in COMMAND_CONFIGS.items():
        p = sub.add_parser(command, help=HELP[command], description=schema.__doc__, allow_abbrev=False)
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only warnings and errors")
        p.add_argument("--config", help="YAML file of options (keys = flag names with underscores); flags override it")
        add_options(p, schema)
    return parser
