"""Command line: subcommands whose flags are generated from the option schemas in `headcls.config`.

argparse only collects strings; the schema converts and checks them (with the YAML file's values), so every
option is checked in one place. `main(argv)` returns the exit status: 0 done, 2 a mistake the user can fix
(one line on stderr), 130 interrupted (Ctrl-C or SIGTERM, after cleaning up); 1 is a bug (with a traceback).
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import re
import signal
import sys
import typing
from contextlib import contextmanager

from headcls.errors import USER_ERRNOS, HeadclsError, Interrupted

HELP = {
    "train": "fine-tune an encoder + classification head, evaluate, save",
    "evaluate": "score a trained model on labelled data",
    "predict": "classify sentences or a file",
    "export": "write an ONNX Runtime model folder (optionally int8)",
    "serve": "a REST API and a page to try a model (FastAPI + uvicorn)",
}
# Values that start with '-' but are numbers (argparse alone takes only -1 and -1.5 as values, not -1e-3 or -inf).
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


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
    from headcls.config import base_type

    base = base_type(annotation)
    if typing.get_origin(base) is typing.Literal:
        return "{" + ",".join(typing.get_args(base)) + "}"
    return {int: "N", float: "X"}.get(base) or name.split("_")[-1].upper()  # --test-file FILE, --model MODEL


def add_options(parser: argparse.ArgumentParser, schema) -> None:
    """One flag per schema field; values stay strings until the schema checks them."""
    from headcls.config import Positional, Runs, Writes, base_type

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
    from headcls.config import COMMAND_CONFIGS

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


def torch_threads(cfg) -> None:
    """torch's thread count is process-wide, so the CLI, which owns the process, sets it once at start (the
    `Classifier` never does; ONNX Runtime takes it as a session option instead)."""
    from headcls.predict import pick_backend

    if cfg.threads and pick_backend(cfg.model, getattr(cfg, "backend", "torch")) == "torch":
        import torch

        torch.set_num_threads(cfg.threads)


def cmd_train(cfg) -> int:
    from headcls.train import train

    train(cfg)
    return 0


def cmd_evaluate(cfg) -> int:
    from headcls.evaluate import evaluate

    torch_threads(cfg)
    evaluate(cfg)
    return 0


def cmd_predict(cfg) -> int:
    from headcls.predict import predict_command

    torch_threads(cfg)
    predict_command(cfg)
    return 0


def cmd_export(cfg) -> int:
    from headcls.export import export

    torch_threads(cfg)
    export(cfg)
    return 0


def cmd_serve(cfg) -> int:
    from headcls.serve import serve

    torch_threads(cfg)
    return serve(cfg)


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "export": cmd_export,
            "serve": cmd_serve}


NOISY = ("transformers", "datasets", "httpx", "huggingface_hub", "matplotlib", "PIL")


@contextmanager
def cli_logging(quiet: bool):
    """Log lines to stderr while a command runs, as the CLI wants them; the logging setup before is restored after
    (a program that calls `main` keeps its own)."""
    root = logging.getLogger()
    before = (root.handlers[:], root.level, {name: logging.getLogger(name).level for name in NOISY})
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING if not quiet else logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if quiet:  # read when the libraries are imported, which the commands do later, lazily
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    try:
        yield
    finally:
        root.handlers[:], level, levels = before
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM unwinds like Ctrl-C: staging folders, partial files and locks are cleaned up on the way out."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def printable(message: object) -> str:
    """One line whatever a path or value holds: control characters (CR, LF, ESC, ...) shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message))


def os_error_line(e: OSError) -> str:
    where = e.filename if e.filename is not None else ""
    if e.filename2 is not None:
        where = f"{where} -> {e.filename2}"
    reason = e.strerror or str(e)
    return f"{where}: {reason}" if where else reason


def say(line: str) -> None:
    """The last words on stderr, at the start of a line: a progress bar cut short is closed first."""
    tqdm = sys.modules.get("tqdm.std")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()
    print(printable(line), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status (see the module docstring)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, --version (0) or a usage mistake (2, already printed on one line)
        return int(e.code or 0)
    from headcls.config import COMMAND_CONFIGS, build_config

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "quiet")}
    from headcls.distributed import FollowsMain, ranks

    try:
        # Under torchrun the main process reports; the others only warn.
        with cli_logging(args.quiet or not ranks().is_main), sigterm_as_interrupt():
            cfg = build_config(COMMAND_CONFIGS[args.command], args.config, flags)
            return COMMANDS[args.command](cfg)
    except Interrupted as e:
        say(f"headcls: {e}")
        return 130
    except FollowsMain:  # under torchrun: the main process refused the run and said why
        return 2
    except HeadclsError as e:
        say(f"headcls: error: {e}")
        return 2
    except KeyboardInterrupt:
        say("headcls: interrupted; each output is either complete or untouched")
        return 130
    except BrokenPipeError:  # `headcls predict ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        if e.errno not in USER_ERRNOS:
            raise
        say(f"headcls: error: {os_error_line(e)}")
        return 2


def run() -> None:
    """The `headcls` program: `main` on the command line, then exit. A Ctrl-C or SIGTERM that arrives after the
    command finished (while the interpreter shuts down) ends the process at once with 130, not a traceback."""
    try:
        status = main()
    except KeyboardInterrupt:  # between the last output and main's own handler
        status = 130
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: os._exit(130))
    sys.exit(status)
