import time

import triton_python_backend_utils as pb_utils

from pipelines.serving.python_model import python_model_class


def make_slow_identity(context):
    delay = float(context.parameter("execute_delay_s"))

    def process(requests):
        time.sleep(delay)
        return [{"y": tensors["x"]} for tensors in requests]

    return process


TritonPythonModel = python_model_class(pb_utils, make_slow_identity)
