"""`marketpulse`: run the pipeline, read its results and manage its database.

Every command fails with a one-line message and a non-zero exit code, never a traceback:
2 for bad input (arguments, settings, unknown symbols or ids), 1 for an unhealthy pipeline.
"""

import argparse
import sys
from collections.abc import Sequence

import psycopg

from marketpulse_pipeline.cli import pipeline, reads
from marketpulse_pipeline.settings import Settings, SettingsError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="marketpulse", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    pipeline.add_commands(commands)
    reads.add_commands(commands)
    args = parser.parse_args(argv)
    try:
        return args.handler(args, Settings.from_env())
    except (SettingsError, ValueError, LookupError) as error:
        print(f"marketpulse: error: {error}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as error:
        print(f"marketpulse: database unreachable: {str(error).strip()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
