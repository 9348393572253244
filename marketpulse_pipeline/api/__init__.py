"""The REST API (`marketpulse serve`): an HTTP face on the query surface the CLI and `psql` use.

Needs the `api` extra (`pip install 'marketpulse[api]'`); nothing else imports this package, so
the CLI's read commands never load FastAPI.
"""
