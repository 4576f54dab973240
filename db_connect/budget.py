"""The request bodies one process holds at once. Each body has its own limit; a budget caps their sum, so many
large uploads at the same moment cannot fill a replica's memory (a JSON body is parsed whole: ~13 times its
size, measured) or its disk (CSV bodies are spooled), and get the replica killed. Past the budget, a body is
refused with 503 and Retry-After, and the requests already holding their share go on."""

from __future__ import annotations

from collections.abc import Callable

from db_connect.errors import ApiError

RETRY_AFTER_S = 2


class Budget:
    """Bytes of bodies in flight in this process (one event loop: no lock needed)."""

    def __init__(self, what: str, setting: str, limit: int) -> None:
        self.what, self.setting, self.limit, self.held = what, setting, limit, 0

    def hold(self) -> Holding:
        return Holding(self)


class Holding:
    """One request's share: `take(n)` as its body arrives; all of it given back when the `with` block ends."""

    def __init__(self, budget: Budget) -> None:
        self.budget, self.taken = budget, 0

    def take(self, size: int) -> None:
        budget = self.budget
        if budget.held + size > budget.limit:
            raise ApiError(
                503,
                "too_many_uploads",
                f"This API is already holding {budget.held} bytes of {budget.what} (at most {budget.limit},"
                f" {budget.setting})",
                hint=f"Retry in {RETRY_AFTER_S} s, or send smaller bodies",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        budget.held += size
        self.taken += size

    def __enter__(self) -> Callable[[int], None]:
        return self.take

    def __exit__(self, *_: object) -> None:
        self.budget.held -= self.taken
        self.taken = 0
