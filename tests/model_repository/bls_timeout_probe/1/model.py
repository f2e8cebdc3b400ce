import triton_python_backend_utils as pb_utils

from pipelines.serving.partition import per_item_async
from pipelines.serving.python_model import python_model_class


def make_forward(context):
    async def one(tensors):
        return await context.bls.infer_async("timeout_probe", {"x": tensors["x"]}, ["y"])

    return per_item_async(one, context=f"model '{context.name}'")


TritonPythonModel = python_model_class(pb_utils, make_forward)
