"""ViT feature extraction, the seed's Hugging Face example served two ways:

- `vit_python`: one Python model running transformers' image processor and
  the torch `ViTModel` (what the tutorial deploys first; `models.py`);
- `vit`: an ensemble `image_decode` -> `vit_preprocess` (this repository's
  batched preprocessing, `pipelines.image.hf_processor`) -> `vit_model` (the
  ONNX export, or a TensorRT plan where a GPU is).

Both answer `last_hidden_state` [tokens, hidden] per picture (197 x 768 for
ViT-Base/16 at 224 px). The checkpoints come from export/vit.py."""

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "last_hidden_state"
