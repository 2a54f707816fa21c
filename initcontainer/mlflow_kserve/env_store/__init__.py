"""The environment store (``--env-store``): one build of a model's environment serves every node, without the
package index. key.py says what names an environment, store.py how entries are read and written, archive.py
how a venv becomes one file, backend.py and one module per backend how bytes move (s3, gcs, azure, local)."""

from mlflow_kserve.env_store.backend import Bounds, check_uri
from mlflow_kserve.env_store.key import StoreKey, store_key, unkeyable
from mlflow_kserve.env_store.store import EnvStore, Manifest, Published, Restored, StoreFault

__all__ = [
    "Bounds", "EnvStore", "Manifest", "Published", "Restored", "StoreFault", "StoreKey", "check_uri", "store_key",
    "unkeyable",
]  # fmt: skip
