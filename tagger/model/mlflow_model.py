"""MLflow pyfunc wrapper: the logged model *is* the bundle folder, run by tagger.model.inference.

Imported only by training (to log) and by MLflow (to load); serving never needs it.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc

__all__ = ["BundleModel"]


class BundleModel(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with a ``text`` column (raw clause text). Output: one row per
    clause with the ids of each head, ';'-joined."""

    def load_context(self, context):
        from tagger.model.inference import Tagger

        self.tagger = Tagger(Path(context.artifacts["bundle"]))

    def predict(self, context, model_input, params=None):
        import pandas as pd

        texts = [str(t) for t in (model_input["text"] if hasattr(model_input, "columns") else model_input)]
        preds = self.tagger.predict(texts)
        return pd.DataFrame({h: [";".join(p.labels[h]) for p in preds] for h in self.tagger.heads})
