"""HTTP details FastAPI leaves to the application: HEAD wherever GET is answered, and query
strings held to the parameters a route declares, each given once."""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send


class HeadAsGet:
    """Answers HEAD as GET (FastAPI's routes answer 405 to it), for `curl -I` and uptime
    monitors: the same status and headers; uvicorn sends no body to a HEAD request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        # A copy, since uvicorn reads the method from its own scope to drop the body; the
        # route the router matched is handed back for the metrics' label.
        inner = {**scope, "method": "GET"}
        try:
            await self.app(inner, receive, send)
        finally:
            if "route" in inner:
                scope["route"] = inner["route"]


def declared_query(request: Request) -> None:
    """Refuses a query parameter the route does not take, or one given twice (422): FastAPI
    ignores the first and keeps the last, so `?sybmol=AAPL` would answer for every symbol
    and `?symbol=AAPL&symbol=MSFT` for MSFT alone, both without a word."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.include_in_schema:
        return  # /docs and its helpers
    taken = [param.alias for param in route.dependant.query_params]
    given = [name for name, _ in request.query_params.multi_items()]
    for name in dict.fromkeys(given):
        if name not in taken:
            takes = ", ".join(taken) or "none"
            raise HTTPException(422, f"{name}: unknown parameter; this route takes {takes}")
        if given.count(name) > 1:
            raise HTTPException(422, f"{name}: given more than once; give one value")
