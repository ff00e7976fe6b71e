"""Which permissions a request's route demands, found from the route's own ``require(...)`` dependencies, so the
gate can refuse a role before the body is parsed.

Why: FastAPI validates the body before it solves dependencies, so an auditor sending malformed JSON to
``POST /queries`` would learn "422, your JSON is wrong" instead of "403, your role may not do this". Reading the
permissions off the route's dependency tree (rather than keeping a second table of paths) means a new route is
covered the moment it declares ``Depends(require(...))``; the dependency itself stays as a second check.
"""

from __future__ import annotations

from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIRouter
from starlette.routing import Match

from fedinsight.coordinator.auth import Permission


def _collect(dependant: Dependant, into: set[Permission]) -> None:
    permission = getattr(dependant.call, "permission", None)
    if isinstance(permission, Permission):
        into.add(permission)
    for sub in dependant.dependencies:
        _collect(sub, into)


class RoutePermissions:
    """Permissions per route of the given routers, computed once per route.

    The routers are the resource routers themselves (``routes/*.py``), included in the app without a prefix:
    FastAPI 0.138 wraps included routers so the app's own route list no longer exposes their routes, while each
    router's ``routes`` are plain :class:`~fastapi.routing.APIRoute` objects matching the same paths.
    """

    def __init__(self, routers: list[APIRouter]) -> None:
        if any(r.prefix for r in routers):
            raise ValueError("RoutePermissions expects routers included without a prefix")
        self._routes: list[tuple[APIRoute, frozenset[Permission]]] = []
        for router in routers:
            for route in router.routes:
                if isinstance(route, APIRoute):
                    found: set[Permission] = set()
                    _collect(route.dependant, found)
                    self._routes.append((route, frozenset(found)))

    def of(self, scope: dict[str, Any]) -> frozenset[Permission]:
        """The permissions the route matching ``scope`` (path and method) requires; empty when no route fully
        matches (the router then answers 404 / 405 as usual) or the route requires none."""
        for route, permissions in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return permissions
        return frozenset()
