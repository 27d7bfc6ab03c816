"""DETR: the network, its transformer, the segmentation wrapper, its Hugging Face conversion and its family."""
