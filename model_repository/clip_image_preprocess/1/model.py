import triton_python_backend_utils as pb_utils

from pipelines.image.models import make_hf_preprocess
from pipelines.serving.python_model import python_model_class

TritonPythonModel = python_model_class(pb_utils, make_hf_preprocess)
