"""ferops: facial emotion recognition as a continuous-retraining MLOps pipeline."""

__version__ = "0.1.0"
