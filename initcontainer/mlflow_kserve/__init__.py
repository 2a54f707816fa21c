"""mlflow-kserve: a ready-to-serve environment for any MLflow model (see docs/architecture.md)."""

__version__ = "0.1.0"
