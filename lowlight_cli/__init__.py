"""lowlight: low-light image enhancement with learned models and classical baselines."""

__version__ = "0.1.0"
