"""Batch functions built from small pieces, one job each (in the spirit of
PyTriton's @batch, @group_by_values and @sample).

A model's batch function takes the valid requests of one execute (each a
RequestTensors, already checked against the config) and gives one answer
per request, in order: a dict of output arrays, or an exception that
answers that request alone (BatchModel reports it with the model's name).
The pieces make such a function out of a smaller one:

- `prepared(prepare, run)`: each request prepared on its own (decoded,
  cropped, ...); a RequestError refuses that request alone, the prepared
  ones go on together;
- `per_item` / `per_item_async` (pipelines.serving.partition, @sample): a
  function of one request, each failure its own request's answer;
- `grouped_by_shape` (@group_by_values over shapes): one call per group of
  requests whose inputs agree on dtype and every non-batch dimension;
- `stacked` (@batch): a group's requests concatenated along the batch axis,
  one call, the outputs split back by each request's batch size;
- `items_together`: requests prepared into lists of items (pictures, crops)
  run as one list, the rows split back per request;
- `alone_on_failure`: a joint run that fails is tried again one request at
  a time, so a bad request fails alone.

    grouped_by_shape(stacked(pool))                     # text_pooling
    prepared(crop_pictures, items_together(normalize))  # image preprocessing"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

import numpy as np

from pipelines.serving.partition import Partition, per_item
from pipelines.serving.python_model import RequestTensors
from pipelines.serving.tensors import group_by_item_shape, split_batch, stack_batch

BatchFunction = Callable[[list], list]
Outputs = dict[str, np.ndarray]


def prepared(prepare: Callable[[RequestTensors], object], run: BatchFunction) -> BatchFunction:
    """`run`, a function of the prepared requests (a coroutine function
    too), behind `prepare`, which checks and converts each request on its
    own: a RequestError it raises answers that request alone."""
    if inspect.iscoroutinefunction(run):

        async def process_async(requests: list) -> list:
            return await Partition(requests, prepare).run_async(run, context=None)

        return process_async

    def process(requests: list) -> list:
        return Partition(requests, prepare).run(run, context=None)

    return process


def grouped_by_shape(process: BatchFunction) -> BatchFunction:
    """`process` called once per group of requests whose tensors agree on
    dtype and every non-batch dimension (and send the same optional
    inputs), in first-seen order; the answers go back in request
    order. A group whose call fails is answered with that error alone."""

    def grouped(requests: list) -> list:
        answers: list = [None] * len(requests)
        for group in group_by_item_shape(requests):
            results = Partition([requests[index] for index in group]).run(process, context=None)
            for index, answer in zip(group, results, strict=True):
                answers[index] = answer
        return answers

    return grouped


def stacked(function: Callable[[RequestTensors], Outputs]) -> BatchFunction:
    """`function` run once on the requests concatenated along the batch
    axis (their non-batch shapes must agree: see `grouped_by_shape`). It is
    handed one RequestTensors that asks for every output any request asked
    for; its outputs are split back by each request's batch size, and each
    request gets the outputs it asked for."""

    def process(requests: Sequence[RequestTensors]) -> list[Outputs]:
        arrays, sizes = stack_batch([{name: array for name, array in tensors.items() if array is not None} for tensors in requests])
        batch = RequestTensors(arrays)
        if all(tensors.requested for tensors in requests):
            batch.requested = frozenset().union(*(tensors.requested for tensors in requests))
        parts = split_batch(function(batch), sizes)
        return [{name: array for name, array in part.items() if tensors.wants(name)} for tensors, part in zip(requests, parts, strict=True)]

    return process


def items_together(function: Callable[[list], Outputs]) -> BatchFunction:
    """`function` run once on the items of every request (each request
    prepared into a list of items: its pictures, its crops); its outputs,
    one row per item, are split back per request."""

    def process(items_per_request: Sequence[list]) -> list[Outputs]:
        outputs = function([item for items in items_per_request for item in items])
        return split_batch(outputs, [len(items) for items in items_per_request])

    return process


def alone_on_failure(process: BatchFunction) -> BatchFunction:
    """`process` on every request at once; where that raises, again on each
    request alone, so the one that broke it fails and the others are served."""

    def alone(request) -> object:
        (answer,) = process([request])
        return answer

    def process_or_retry(requests: list) -> list:
        try:
            return process(requests)
        except Exception:  # noqa: BLE001 - which request broke it is found below
            return per_item(alone)(requests)

    return process_or_retry
