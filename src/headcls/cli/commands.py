"""Command line: subcommands whose flags are generated from the option schemas in `headcls.options`.

argparse only collects strings; the schema converts and checks them (with the YAML file's values), so every
option is checked in one place. `main(argv)` returns the exit status: 0 done, 2 a mistake the user can fix
(one line on stderr), 130 interrupted (Ctrl-C or SIGTERM, after cleaning up); 1 is a bug (with a traceback).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from contextlib import contextmanager

from headcls.cli.parser import build_parser, printable
from headcls.cli.process import sigterm_as_interrupt, torch_threads
from headcls.errors import USER_ERRNOS, HeadclsError, Interrupted

# command -> (module, function); the function takes the command's config. Imported when the command runs, so that
# `headcls --help` and a mistake in the flags stay quick.
COMMANDS = {
    "train": ("headcls.training.run", "train"),
    "evaluate": ("headcls.evaluation.command", "evaluate"),
    "predict": ("headcls.inference.command", "predict"),
    "export": ("headcls.export.onnx", "export_onnx"),
    "serve": ("headcls.serving.server", "serve"),
}


def run_command(command: str, cfg) -> int:
    """Set what belongs to the process (threads, signals), then run the command; its exit status."""
    import importlib

    module, name = COMMANDS[command]
    function = getattr(importlib.import_module(module), name)
    torch_threads(cfg, command)
    if command == "train":
        from headcls.cli.process import stop_on_signal

        with stop_on_signal() as stop:
            function(cfg, stop=stop)
        return 0
    if command == "serve":
        from headcls.cli.process import remember_signals

        with remember_signals() as stopped_by:
            function(cfg)
        return 130 if signal.SIGINT in stopped_by else 0
    function(cfg)
    return 0


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
    from headcls.options.commands import COMMAND_CONFIGS
    from headcls.options.loading import build_config

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "quiet")}
    from headcls.runtime.distributed import FollowsMain, ranks

    try:
        # Under torchrun the main process reports; the others only warn.
        with cli_logging(args.quiet or not ranks().is_main), sigterm_as_interrupt():
            cfg = build_config(COMMAND_CONFIGS[args.command], args.config, flags)
            return run_command(args.command, cfg)
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
