import triton_python_backend_utils as pb_utils

from pipelines.serving.python_model import python_model_class


def make_forward(context):
    target = context.parameter("target")

    async def process(requests):
        return [await context.bls.infer_async(target, {"x": tensors["x"]}, ["y"]) for tensors in requests]

    return process


TritonPythonModel = python_model_class(pb_utils, make_forward)
