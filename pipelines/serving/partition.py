"""The one way a batch of items is answered: each item is prepared (checked,
decoded, ...) on its own and a failure answers that item alone; the items
that passed run together; their results go back to their places.

Used at every level: the requests of an execute (validated against the
config), the pictures of a request, the networks' calls of a BLS model. A
run must give exactly one result per item it was handed: a result, or an
exception that becomes that item's error.

Where an answer is an exception, the outermost level reports it
(`as_request_error`, with the model's name): inner levels pass `context=None`
and keep the exception as it is."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, Sequence, TypeVar

from pipelines.serving.tensors import RequestError

Item = TypeVar("Item")
"""What `prepare` makes of an item: what a run is handed."""


class ResultCountError(RuntimeError):
    """A run returned more or fewer results than it was given items."""


class InternalError(RuntimeError):
    """An unexpected failure, reported: its message already says where it
    happened and what it was."""


def as_request_error(error: Exception, context: str = "") -> Exception:
    """A RequestError (or an already reported failure) stays what it is;
    anything else is an internal failure whose message says where it
    happened and what it was."""
    if isinstance(error, (RequestError, InternalError)):
        return error
    where = f"{context}: " if context else ""
    return InternalError(f"{where}{type(error).__name__}: {error}")


def reported(answers: Sequence, context: str | None) -> list:
    """Every exception among `answers` reported under `context` (None: kept as it is)."""
    if context is None:
        return list(answers)
    return [as_request_error(answer, context) if isinstance(answer, Exception) else answer for answer in answers]


class Partition(Generic[Item]):
    """`items` split into `valid` (what `prepare` made of them) and answers
    already known (the RequestError of each item `prepare` refused)."""

    def __init__(self, items: Sequence, prepare: Callable[[object], Item] | None = None):
        self.answers: list = [None] * len(items)
        self.positions: list[int] = []
        self.valid: list[Item] = []
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

    def run(self, function: Callable[[list[Item]], Sequence], context: str | None = "") -> list:
        """`function(valid)` -> results; an exception it raises (or a wrong
        result count) answers every valid item, so one broken batch never
        takes the process down. Exceptions are reported under `context`
        (None: kept as they are, for an outer level to report)."""
        if not self.valid:
            return self.answers
        try:
            return reported(self.fill(function(self.valid)), context)
        except Exception as error:  # noqa: BLE001 - reported per item
            return reported(self.fail(error), context)

    async def run_async(self, function: Callable[[list[Item]], Awaitable[Sequence]], context: str | None = "") -> list:
        """`run` for a coroutine function (BLS models)."""
        if not self.valid:
            return self.answers
        try:
            return reported(self.fill(await function(self.valid)), context)
        except Exception as error:  # noqa: BLE001 - reported per item
            return reported(self.fail(error), context)


def answer_each(items: Sequence, prepare: Callable[[object], Item] | None, run: Callable[[list[Item]], Sequence], context: str | None = "") -> list:
    """Partition(items, prepare).run(run): the common case in one call
    (as a batch function: pipelines.serving.batching.prepared)."""
    return Partition(items, prepare).run(run, context)


async def answer_each_async(
    items: Sequence, prepare: Callable[[object], Item] | None, run: Callable[[list[Item]], Awaitable[Sequence]], context: str | None = ""
) -> list:
    """answer_each for a coroutine `run`."""
    return await Partition(items, prepare).run_async(run, context)


def per_item(function: Callable[[Item], object], context: str | None = None) -> Callable[[list[Item]], list]:
    """A run that handles its items one by one (work that cannot be
    stacked; PyTriton's @sample), each failure answering its own item only,
    reported under `context` (None: by the model, with its name)."""

    def run(items: list[Item]) -> list:
        results = []
        for item in items:
            try:
                results.append(function(item))
            except Exception as error:  # noqa: BLE001 - reported per item
                results.append(error)
        return reported(results, context)

    return run


def per_item_async(function: Callable[[Item], Awaitable[object]], context: str | None = None) -> Callable[[list[Item]], Awaitable[list]]:
    """`per_item` for a coroutine function: every item's coroutine runs
    concurrently (their BLS calls in flight together), each failure
    answering its own item only."""

    async def run(items: list[Item]) -> list:
        return reported(await asyncio.gather(*(function(item) for item in items), return_exceptions=True), context)

    return run
