"""Models turn images into vectors. See `Embedder`."""

from .base import Embedder, Outputs, Prediction
from .classic import ClassicEmbedder
from .manifest import EmbeddingSpec, HeadSpec, InputSpec, ModelManifest
from .onnx import OnnxEmbedder
from .registry import import_model, list_models, load_model, model_home

__all__ = ["Embedder", "Outputs", "Prediction", "ClassicEmbedder", "OnnxEmbedder", "ModelManifest", "InputSpec",
           "EmbeddingSpec", "HeadSpec", "import_model", "list_models", "load_model", "model_home"]
