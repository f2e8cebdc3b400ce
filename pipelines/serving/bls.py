"""Calls from a Python model to other models of the same server (BLS).

`pb_utils` is passed in because it only exists inside the stub (the tests
pass an in-process stand-in). Every response is checked with `has_error()`:
a failed call raises ModelCallError, which fails the request that made it.

Every call carries a timeout (microseconds): a called model whose queue
policy allows the override rejects the call once it has waited that long
in its queue, so a saturated downstream model fails the request instead of
hanging it. A caller sets it with the config parameter
`bls_timeout_microseconds` (default two minutes)."""

from __future__ import annotations

from typing import Awaitable, Callable, Sequence

import numpy as np


DEFAULT_TIMEOUT_MICROSECONDS = 120_000_000


class ModelCallError(RuntimeError):
    pass


class Bls:
    def __init__(self, pb_utils, timeout_microseconds: int = DEFAULT_TIMEOUT_MICROSECONDS):
        self.pb_utils = pb_utils
        self.timeout_microseconds = int(timeout_microseconds)

    def _request(self, model: str, inputs: dict[str, np.ndarray], outputs: Sequence[str]):
        return self.pb_utils.InferenceRequest(
            model_name=model,
            inputs=[self.pb_utils.Tensor(name, np.ascontiguousarray(array)) for name, array in inputs.items()],
            requested_output_names=list(outputs),
            timeout=self.timeout_microseconds,
        )

    def _unpack(self, model: str, response, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        if response.has_error():
            raise ModelCallError(f"{model}: {response.error().message()}")
        found = {}
        for name in outputs:
            tensor = self.pb_utils.get_output_tensor_by_name(response, name)
            if tensor is None:
                raise ModelCallError(f"{model}: no output '{name}' in its response")
            found[name] = tensor.as_numpy()
        return found

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Run `model` on `inputs` and return the named outputs (blocking)."""
        return self._unpack(model, self._request(model, inputs, outputs).exec(), outputs)

    async def infer_async(self, model: str, inputs: dict[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """The same, awaitable: calls of one execute are in flight together,
        so the called model's dynamic batcher sees them at once."""
        response = await self._request(model, inputs, outputs).async_exec()
        return self._unpack(model, response, outputs)

    def network(self, model: str, input_name: str, outputs: str | Sequence[str]) -> Callable[[np.ndarray], Awaitable]:
        """An awaitable one-input network: `await run(batch)` gives the
        output named `outputs`, or the tuple of the outputs named in it."""
        names = [outputs] if isinstance(outputs, str) else list(outputs)

        async def run(batch: np.ndarray):
            found = await self.infer_async(model, {input_name: batch}, names)
            return found[outputs] if isinstance(outputs, str) else tuple(found[name] for name in names)

        return run
