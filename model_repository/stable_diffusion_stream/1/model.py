import triton_python_backend_utils as pb_utils

from pipelines.serving.python_model import python_model_class
from pipelines.stable_diffusion.models import make_stable_diffusion

TritonPythonModel = python_model_class(pb_utils, make_stable_diffusion)
