"""The model.py a draining launcher (runtime/drain.py) loads in place of each
entry model: every request is answered at once with UNAVAILABLE (HTTP 503)
and the message below, which a client can read and a balancer or a gRPC retry
policy sends to another replica. It runs in a Python backend stub, from a
load's file override, so it imports nothing but the backend's own module."""

import json

import triton_python_backend_utils as pb_utils

MESSAGE = "server is stopping: this replica takes no new requests; send them to another one"


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.decoupled = bool(config.get("model_transaction_policy", {}).get("decoupled", False))

    def execute(self, requests):
        error = pb_utils.TritonError(MESSAGE, pb_utils.TritonError.UNAVAILABLE)
        if not self.decoupled:
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        for request in requests:
            response = pb_utils.InferenceResponse(output_tensors=[], error=error)
            request.get_response_sender().send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
