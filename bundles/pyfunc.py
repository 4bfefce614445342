"""The MLflow "model from code" for Kairos bundles (folders of NumPy / Parquet / JSON files).

MLflow 3 registers only logged models; logging a bundle as a pyfunc whose code is this file (never a
pickle) lets the registry hold it. Kairos never imports this file (MLflow stores it as the model's code,
which is why it calls ``set_model`` at import) and never calls ``predict``: it downloads the folder and
builds it with the kind's own bundle class after checking every file's sha256.
"""

from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class KairosBundle(PythonModel):
    """Placeholder pyfunc: the bundle is read by its kind's bundle class (:mod:`bundles.kinds`), not through pyfunc."""

    def predict(self, context: Any, model_input: list[Any], params: Any = None) -> list[Any]:
        raise NotImplementedError("a Kairos bundle is read by its kind's bundle class (bundles.kinds), not pyfunc")


mlflow.models.set_model(KairosBundle())
