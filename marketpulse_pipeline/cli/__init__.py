"""`marketpulse`: run the pipeline, read its results and manage its database.

Every command fails with a one-line message and a non-zero exit code, never a traceback:
2 for bad input (arguments, settings, unknown symbols or ids), 1 for an unreachable or
unhealthy database (or an unexpected failure). A database password is never printed.
"""

import argparse
import gc
import os
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

import psycopg

from marketpulse_pipeline.cli import charts, notify, pipeline, reads, serve
from marketpulse_pipeline.settings import Settings, SettingsError, scrub_password
from marketpulse_pipeline.storage.database import EmbeddedServerError, SchemaOutdated

BAD_INPUT = 2
FAILED = 1


class _Parser(argparse.ArgumentParser):
    """argparse reporting a usage error in one line, like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        self.exit(BAD_INPUT, f"{self.prog}: error: {_one_line(message)} (see --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    # The embedded server's package warns, now and at exit, that XDG_RUNTIME_DIR is unset.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    parser = _Parser(prog="marketpulse", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    pipeline.add_commands(commands)
    reads.add_commands(commands)
    notify.add_commands(commands)
    charts.add_commands(commands)
    serve.add_commands(commands)
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error already reported
        return stop.code if isinstance(stop.code, int) else BAD_INPUT
    try:
        return args.handler(args, Settings.from_env())
    except BrokenPipeError:  # the reader stopped early (`| head`): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (SettingsError, ValueError, LookupError) as error:
        return _fail("error", error, BAD_INPUT)
    except psycopg.OperationalError as error:
        return _fail("database unreachable", error, FAILED)
    except (SchemaOutdated, EmbeddedServerError) as error:
        return _fail("database not ready", error, FAILED)
    except psycopg.Error as error:
        return _fail("database error", error, FAILED)
    except Exception as error:  # a bug still deserves one readable line, not a traceback
        return _fail(f"unexpected {type(error).__name__}", error, FAILED)


def run() -> None:
    """The `marketpulse` command: `main`, then the process ends."""
    code = main()
    exiting()
    sys.exit(code)


def exiting() -> None:
    """Just before a command's process exits: its objects go with it, not through one last
    garbage collection of everything a large run left in memory (1.5 s after a backfill)."""
    gc.freeze()


def _fail(what: str, error: Exception, code: int) -> int:
    """Print `error` as one line, with any spelling of the database password removed."""
    text = scrub_password(str(error), os.environ.get("MARKETPULSE_DATABASE_URL", ""))
    print(f"marketpulse: {what}: {_one_line(text) or type(error).__name__}", file=sys.stderr)
    return code


def _one_line(text: str) -> str:
    """`text` with its line breaks and runs of blanks folded into single spaces."""
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
