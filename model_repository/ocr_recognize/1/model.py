import triton_python_backend_utils as pb_utils

from pipelines.ocr.models import make_recognize
from pipelines.serving.python_model import python_model_class

TritonPythonModel = python_model_class(pb_utils, make_recognize)
