"""A task's partner-side function named by module and attribute, imported when the first message needs it.

Why: the ClientApp is built from every registered task (:mod:`fedinsight.partner.clientapp`), and every Ray worker
of every simulation builds it. A task whose handlers are plain references makes that import its whole partner side
-- for the training tasks torch and Opacus, ~4 s -- even in a job that only answers an insights query. A
:class:`Lazy` reference costs nothing until it is called, so a worker imports only what its messages need.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


class Lazy:
    """``module.attribute``, looked up at each call (importing ``module`` the first time), then called with the same
    arguments: ``Lazy("fedinsight.tasks.propensity.client", "query")(msg, partner)`` is
    ``fedinsight.tasks.propensity.client.query(msg, partner)``. Holds only the two names, so it pickles (Ray) and
    sees the module as it is when called.
    """

    __slots__ = ("attribute", "module")

    def __init__(self, module: str, attribute: str) -> None:
        self.module = module
        self.attribute = attribute

    def resolve(self) -> Callable[..., Any]:
        """The function itself (importing its module if no one has yet)."""
        return getattr(importlib.import_module(self.module), self.attribute)  # type: ignore[no-any-return]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Lazy({self.module}.{self.attribute})"


__all__ = ["Lazy"]
