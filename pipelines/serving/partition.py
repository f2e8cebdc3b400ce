"""The one way a batch of items is answered: each item is prepared (checked,
decoded, ...) on its own and a failure answers that item alone; the items
that passed run together; their results go back to their places.

Used at every level: the requests of an execute (validated against the
config), the pictures of a request, the networks' calls of a BLS model. A
run must give exactly one result per item it was handed: a result, or an
exception that becomes that item's error."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, Sequence, TypeVar

from pipelines.serving.tensors import RequestError

Prepared = TypeVar("Prepared")


class ResultCountError(RuntimeError):
    """A run returned more or fewer results than it was given items."""


class Partition(Generic[Prepared]):
    """`items` split into `valid` (what `prepare` made of them) and answers
    already known (the RequestError of each item `prepare` refused)."""

    def __init__(self, items: Sequence, prepare: Callable[[object], Prepared] | None = None):
        self.answers: list = [None] * len(items)
        self.positions: list[int] = []
        self.valid: list[Prepared] = []
        for position, item in enumerate(items):
            try:
                prepared = item if prepare is None else prepare(item)
            except RequestError as error:
                self.answers[position] = error
                continue
            self.positions.append(position)
            self.valid.append(prepared)

    def fill(self, results: Sequence) -> list:
        """Every item's answer: the refusals, and `results` (one per valid
        item, in order) in the places of the valid items."""
        if len(results) != len(self.valid):
            raise ResultCountError(f"{len(results)} results for {len(self.valid)} items")
        for position, result in zip(self.positions, results, strict=True):
            self.answers[position] = result
        return self.answers

    def fail(self, error: Exception) -> list:
        """Every valid item answered with the same error."""
        return self.fill([error] * len(self.valid))

    def run(self, function: Callable[[list[Prepared]], Sequence], context: str = "") -> list:
        """`function(valid)` -> results; an exception it raises (or a wrong
        result count) answers every valid item, so one broken batch never
        takes the process down."""
        if not self.valid:
            return self.answers
        try:
            return self.fill(function(self.valid))
        except Exception as error:  # noqa: BLE001 - reported per item
            return self.fail(as_request_error(error, context))

    async def run_async(self, function: Callable[[list[Prepared]], Awaitable[Sequence]], context: str = "") -> list:
        """`run` for a coroutine function (BLS models)."""
        if not self.valid:
            return self.answers
        try:
            return self.fill(await function(self.valid))
        except Exception as error:  # noqa: BLE001 - reported per item
            return self.fail(as_request_error(error, context))


def as_request_error(error: Exception, context: str = "") -> Exception:
    """A RequestError stays what it is; anything else is an internal failure
    whose message says where it happened and what it was."""
    if isinstance(error, RequestError):
        return error
    where = f"{context}: " if context else ""
    return RuntimeError(f"{where}{type(error).__name__}: {error}")


def answer_each(items: Sequence, prepare: Callable[[object], Prepared] | None, run: Callable[[list[Prepared]], Sequence], context: str = "") -> list:
    """Partition(items, prepare).run(run): the common case in one call."""
    return Partition(items, prepare).run(run, context)


async def answer_each_async(
    items: Sequence, prepare: Callable[[object], Prepared] | None, run: Callable[[list[Prepared]], Awaitable[Sequence]], context: str = ""
) -> list:
    """answer_each for a coroutine `run`."""
    return await Partition(items, prepare).run_async(run, context)


def per_item(function: Callable[[Prepared], object], context: str = "") -> Callable[[list[Prepared]], list]:
    """A run that handles its items one by one (work that cannot be
    stacked), each failure answering its own item only."""

    def run(items: list[Prepared]) -> list:
        results = []
        for item in items:
            try:
                results.append(function(item))
            except Exception as error:  # noqa: BLE001 - reported per item
                results.append(as_request_error(error, context))
        return results

    return run


def per_item_async(function: Callable[[Prepared], Awaitable[object]], context: str = "") -> Callable[[list[Prepared]], Awaitable[list]]:
    """`per_item` for a coroutine function: every item's coroutine runs
    concurrently (their BLS calls in flight together), each failure
    answering its own item only."""

    async def run(items: list[Prepared]) -> list:
        results = await asyncio.gather(*(function(item) for item in items), return_exceptions=True)
        return [as_request_error(r, context) if isinstance(r, Exception) else r for r in results]

    return run
