import triton_python_backend_utils as pb_utils

from pipelines.serving.python_model import python_model_class
from pipelines.vit.models import make_vit_python

TritonPythonModel = python_model_class(pb_utils, make_vit_python)
