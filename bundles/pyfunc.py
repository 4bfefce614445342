"""The MLflow "model from code" for Kairos bundles (folders of NumPy / Parquet / JSON files).

MLflow 3 registers only logged models; logging a bundle as a pyfunc whose code is this file (never a
pickle) lets the registry hold it. Kairos never calls ``predict`` on it: it downloads the folder and
loads it with the owning model's own ``load`` after checking every file's sha256.
"""

from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class KairosBundle(PythonModel):
    """Placeholder pyfunc: the bundle is read by Kairos's loaders, not through pyfunc."""

    def predict(self, context: Any, model_input: list[Any], params: Any = None) -> list[Any]:
        raise NotImplementedError("a Kairos bundle is loaded with its model's own load(), not pyfunc")


mlflow.models.set_model(KairosBundle())
