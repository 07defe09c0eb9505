"""meta_schedule's XGBoost cost model, sized for small budgets and instrumented to prove it is used."""

from __future__ import annotations

from tvm.s_tir.meta_schedule.cost_model import PyCostModel, XGBModel
from tvm.ir.utils import derived_object


def warmup_samples(trials: int) -> int:
    """XGBModel scores candidates at random until this many measurements exist (default 100, which a
    200-trial run over a dozen kernels barely reaches). A quarter of the budget, within [16, 100]."""
    return max(16, min(100, trials // 4))


@derived_object
class TrackedXGBModel(PyCostModel):
    """Delegates to XGBModel; counts predictions made by the trained model vs random warm-up scores."""

    def __init__(self, num_warmup_samples: int, num_tuning_cores: int | None = None) -> None:
        super().__init__()
        self.xgb = XGBModel(num_warmup_samples=num_warmup_samples, num_tuning_cores=num_tuning_cores)
        self.model_predictions = 0
        self.random_predictions = 0

    def load(self, path: str) -> None:
        self.xgb.load(path)

    def save(self, path: str) -> None:
        self.xgb.save(path)

    def update(self, context, candidates, results) -> None:
        self.xgb.update(context, candidates, results)

    def predict(self, context, candidates):
        trained = self.xgb.data_size >= self.xgb.num_warmup_samples and self.xgb.booster is not None
        if trained:
            self.model_predictions += len(candidates)
        else:
            self.random_predictions += len(candidates)
        return self.xgb.predict(context, candidates)

    @property
    def samples(self) -> int:
        return int(self.xgb.data_size)
