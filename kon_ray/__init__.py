"""kon_ray: the Kon customer-segmentation pipeline as Ray-distributed batch jobs."""

__version__ = "0.1.0"
