"""The command line: argparse from the option schemas, exit codes, logging, signals and threads (the only package that touches process-wide state). May import every other package."""

from headcls.cli.commands import main, run

__all__ = ["main", "run"]
