"""Python-based stand-in for Triton's native openvino backend.

Serves every model whose config says `backend: "openvino"` where only the
python backend exists (the CPU runtime of this repository). In the official
container the native backend takes precedence and this file is not used."""

import triton_python_backend_utils as pb_utils

from pipelines.serving.network import make_network
from pipelines.serving.python_model import python_model_class

TritonPythonModel = python_model_class(pb_utils, make_network("openvino"))
