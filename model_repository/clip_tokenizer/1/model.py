import triton_python_backend_utils as pb_utils

from pipelines.serving.python_model import python_model_class
from pipelines.text.models import make_tokenizer

TritonPythonModel = python_model_class(pb_utils, make_tokenizer)
