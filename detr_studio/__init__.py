"""DETR Studio: detect and segment objects in your own images with DETR."""

__version__ = "0.1.0"
