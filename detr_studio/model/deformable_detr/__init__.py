"""Deformable DETR (Zhu et al. 2021), the second model family: the network exactly as published, in pure
PyTorch, with the official module names; its checkpoints (official, Hugging Face, ours), post-processing,
sampling points for display and the ONNX graph."""
