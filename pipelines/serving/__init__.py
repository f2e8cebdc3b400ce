"""The serving glue every Python model of this repository runs on.

The life of a request:

1. Loading. A model folder's `1/model.py` is two lines:
   `TritonPythonModel = python_model_class(pb_utils, make_x)`. A config whose
   backend is `onnxruntime` or `openvino` loads backends/<engine>/model.py
   instead, with `make_network(engine)` as its `make_x` (network.py).
2. Initialise, once per instance (python_model.py): the stub's `args` become
   a `ModelContext` (config, version folder, parameters, BLS caller), and
   `make_x(context)` loads what the model needs and returns its batch
   function `process`.
3. Execute: Triton hands over the requests its scheduler gathered.
   `read_requests` turns each into a `RequestTensors` (input arrays by name,
   the outputs asked for, a cancel check). Each is validated against the
   config on its own (`validate_request`, tensors.py): a wrong one is answered
   with its own error now and goes no further (`Partition`, partition.py).
4. The valid requests go to `process` together, which answers each one: a
   dict of output arrays, or an exception for that request alone. Most
   `process` functions are put together from the pieces of batching.py:
   `prepared` (decode or check each request, refusing the bad ones),
   `per_item` (one request at a time), `grouped_by_shape` + `stacked`
   (same-shaped requests as one batch, outputs split back), `items_together`
   (every request's pictures in one pass), `alone_on_failure`. While it
   runs, the stub's progress file says since when (progress.py): past the
   model's execution bound the launcher's watchdog interrupts it.
5. Answers go back in request order (`to_response`); an exception that is not
   a `RequestError` is reported with the model's name and its type, so one
   broken request or batch never takes the stub down.

A coroutine `process` makes execute a coroutine (async BLS calls in flight
together, bls.py). A decoupled config gets a `StreamingModel` instead: each
request runs on a thread of its own, `process(tensors, stream)` sends
intermediate answers and returns the final one."""
