"""`marketpulse serve`: the REST API over the configured database, served by uvicorn.

FastAPI and uvicorn are imported when the command runs, never when the CLI starts, so the read
commands stay fast and work without the `api` extra.
"""

import argparse
import sys

from marketpulse_pipeline.cli.reads import whole_argument
from marketpulse_pipeline.settings import Settings
from marketpulse_pipeline.storage.database import resolve_url

MISSING_EXTRA = 2
"""Exit code without the `api` extra: a setup to fix, like a bad setting."""


def add_commands(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve", help="the REST API: reads, feedback, /health, /metrics, /docs"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=whole_argument(1, 65535), default=8000)
    serve.add_argument(
        "--workers",
        type=whole_argument(1, 32),
        default=1,
        help="processes, each with its own connection pool (default 1)",
    )
    serve.add_argument(
        "--access-log", action="store_true", help="log every request (off: /metrics counts them)"
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    try:
        import uvicorn

        from marketpulse_pipeline.api.config import ApiSettings
    except ImportError as error:
        print(
            f"marketpulse: serve needs the api extra ({error.name} is missing):"
            " pip install 'marketpulse[api]'",
            file=sys.stderr,
        )
        return MISSING_EXTRA
    # A bad variable stops here in one line, and the embedded server starts once, before the
    # workers each build their app from the same environment.
    ApiSettings.from_env()
    resolve_url(settings.database_url, settings.home)
    uvicorn.run(
        "marketpulse_pipeline.api.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
        log_level="info",
    )
    return 0
