"""Reward models for DM and DR, and cross-fitting so no row is scored by a model that saw it.

A reward model learns E[r | x, a] from (context features, action features, reward) of the logged
choices and predicts it for every candidate. `RewardModel` is the protocol; the optimizer
package implements it over Vowpal Wabbit. `LogisticRewardModel` is the numpy default: a ridge-
penalised logistic regression on all context x action interactions, fitted by Newton steps.

Features stay plain numpy arrays supplied by the caller: one context row per decision, and an
action table with one row per distinct action plus, for every candidate, its row in that table.
The table keeps memory at O(actions) rather than O(candidates x action features).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from offline_eval._arrays import FloatArray, IntArray, candidate_positions
from offline_eval.dataset import LoggedBandit

# Size of the (rows x actions) logit table above which predictions go candidate by candidate.
_TABLE_CELLS = 1 << 23
# Candidates per block when predicting candidate by candidate.
_PREDICT_BLOCK = 1 << 16


@runtime_checkable
class RewardModel(Protocol):
    """Fit on logged choices, predict for any (context row, action) pair."""

    def fit(
        self,
        *,
        context: FloatArray,
        action_table: FloatArray,
        action: IntArray,
        reward: FloatArray,
    ) -> None:
        """context (m, d_c) of m logged decisions, action (m,) rows of action_table (A, d_a) that
        were chosen, reward (m,)."""

    def predict(
        self,
        *,
        context: FloatArray,
        action_table: FloatArray,
        row: IntArray,
        action: IntArray,
    ) -> FloatArray:
        """Predicted reward of action_table[action[j]] in context[row[j]], for every j."""


@dataclass(frozen=True, eq=False, kw_only=True)
class Features:
    """Model features of one log: `context` (n, d_c), `action_table` (A, d_a) and, for each of
    the N candidates, `candidate_action`, its row in the action table."""

    context: FloatArray
    action_table: FloatArray
    candidate_action: IntArray

    def __post_init__(self) -> None:
        context = np.asarray(self.context, dtype=np.float64)
        table = np.asarray(self.action_table, dtype=np.float64)
        index = np.asarray(self.candidate_action, dtype=np.int64)
        if context.ndim != 2:
            raise ValueError(f"context: expected a 2-D array, got shape {context.shape}")
        if table.ndim != 2:
            raise ValueError(f"action_table: expected a 2-D array, got shape {table.shape}")
        if index.ndim != 1:
            raise ValueError(f"candidate_action: expected a 1-D array, got {index.shape}")
        bad = int(np.count_nonzero(~np.isfinite(context).all(axis=1)))
        if bad:
            raise ValueError(f"context: {bad} of {len(context)} rows have NaN or infinite values")
        if not np.isfinite(table).all():
            raise ValueError("action_table: has NaN or infinite values")
        if index.size and (index.min() < 0 or index.max() >= len(table)):
            raise ValueError(f"candidate_action: rows must be in [0, {len(table)})")
        object.__setattr__(self, "context", context)
        object.__setattr__(self, "action_table", table)
        object.__setattr__(self, "candidate_action", index)

    def check(self, data: LoggedBandit) -> None:
        if len(self.context) != data.n:
            raise ValueError(f"context: has {len(self.context)} rows, expected {data.n}")
        if len(self.candidate_action) != data.n_candidates:
            raise ValueError(
                f"candidate_action: has {len(self.candidate_action)} values, expected "
                f"{data.n_candidates}"
            )


def action_features(
    data: LoggedBandit,
    *,
    context: npt.ArrayLike,
    table: Mapping[int, Sequence[float]] | None = None,
) -> Features:
    """Features from a context matrix and per-action feature vectors keyed by action id.

    Without `table`, every distinct action id gets a one-hot vector (a separate effect and
    separate context interactions per action).
    """
    ids = data.action_ids
    distinct, inverse = np.unique(ids, return_inverse=True)
    if table is None:
        action_table = np.eye(len(distinct))
    else:
        missing = [int(a) for a in distinct if int(a) not in table]
        if missing:
            raise ValueError(
                f"table: no features for {len(missing)} action ids (e.g. {missing[:5]})"
            )
        action_table = np.asarray([table[int(a)] for a in distinct], dtype=np.float64)
    return Features(
        context=np.asarray(context, dtype=np.float64),
        action_table=action_table,
        candidate_action=inverse.astype(np.int64),
    )


@dataclass(frozen=True, eq=False)
class CrossFitted:
    """Out-of-fold predictions for every candidate and the fold each row belonged to."""

    predictions: FloatArray
    folds: IntArray
    n_folds: int


def cross_fit(
    data: LoggedBandit,
    *,
    features: Features,
    model: Callable[[], RewardModel] | None = None,
    n_folds: int = 5,
    rng: np.random.Generator | None = None,
) -> CrossFitted:
    """Fit one model per fold on the other folds and predict the fold's candidates with it.

    Rows are assigned to folds at random (balanced); no row is ever scored by a model trained
    on it, which keeps DR's correction term honest (Chernozhukov et al. 2018).
    """
    features.check(data)
    if n_folds < 2:
        raise ValueError(f"n_folds: need at least 2, got {n_folds}")
    if data.n < n_folds:
        raise ValueError(f"n_folds: {n_folds} folds need at least {n_folds} rows, got {data.n}")
    factory: Callable[[], RewardModel] = model if model is not None else LogisticRewardModel
    generator = rng if rng is not None else np.random.default_rng(0)
    folds: IntArray = (generator.permutation(data.n) % n_folds).astype(np.int64)
    chosen_action = features.candidate_action[data.chosen_flat_index]
    predictions = np.empty(data.n_candidates)
    for fold in range(n_folds):
        train = folds != fold
        fitted = factory()
        fitted.fit(
            context=features.context[train],
            action_table=features.action_table,
            action=chosen_action[train],
            reward=np.asarray(data.reward[train]),
        )
        rows = np.flatnonzero(~train)
        flat, owner = candidate_positions(data.offsets, rows)
        predictions[flat] = fitted.predict(
            context=features.context,
            action_table=features.action_table,
            row=owner,
            action=features.candidate_action[flat],
        )
    return CrossFitted(predictions=predictions, folds=folds, n_folds=n_folds)


class _InteractionModel:
    """Linear predictor eta = [1, x_std]ᵀ B [1, a] over all context x action interactions.

    Context columns are standardised on the training rows, so one ridge penalty fits all; the
    global intercept is not penalised. Statistics are accumulated per distinct action, so a fit
    costs O(m d_c² + A d_c² d_a²) rather than O(m (d_c d_a)²).
    """

    def __init__(self, *, l2: float) -> None:
        if not l2 >= 0.0:
            raise ValueError(f"l2: must be >= 0, got {l2}")
        self.l2 = l2
        self.coef: FloatArray | None = None
        self._mean: FloatArray | None = None
        self._scale: FloatArray | None = None

    def _context(self, context: FloatArray) -> FloatArray:
        if self._mean is None or self._scale is None:
            raise ValueError("model: predict called before fit")
        scaled = (context - self._mean) / self._scale
        return np.hstack([np.ones((len(context), 1)), scaled])

    def _prepare(
        self, context: FloatArray, action_table: FloatArray, action: IntArray, reward: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        if not (len(context) == len(action) == len(reward)) or len(reward) == 0:
            raise ValueError(
                "reward: fit needs the same positive number of context rows, actions and rewards"
            )
        self._mean = context.mean(axis=0)
        scale = context.std(axis=0)
        self._scale = np.where(scale > 0, scale, 1.0)
        x = self._context(context)
        a = np.hstack([np.ones((len(action_table), 1)), action_table])
        return x, a

    def _eta(self, coef: FloatArray, x: FloatArray, a: FloatArray, action: IntArray) -> FloatArray:
        eta: FloatArray = np.einsum("ij,ij->i", x @ coef, a[action])
        return eta

    def _penalty(self, shape: tuple[int, int]) -> FloatArray:
        penalty = np.full(shape, self.l2)
        penalty[0, 0] = 0.0
        return penalty.ravel()

    def _normal_equations(
        self,
        x: FloatArray,
        a: FloatArray,
        action: IntArray,
        weight: FloatArray,
        target: FloatArray,
    ) -> tuple[FloatArray, FloatArray]:
        """Hessian sum_i weight_i (x_i x_iᵀ) ⊗ (a_i a_iᵀ) and gradient sum_i target_i x_i ⊗ a_i,
        with the sums taken per action first."""
        n_actions, dc, da = len(a), x.shape[1], a.shape[1]
        per_action_x = np.stack(
            [np.bincount(action, target * x[:, j], n_actions) for j in range(dc)], axis=1
        )
        gradient = (per_action_x.T @ a).ravel()
        hessian = np.empty((dc, da, dc, da))
        for j in range(dc):
            for k in range(j, dc):
                c = np.bincount(action, weight * x[:, j] * x[:, k], n_actions)
                block = (a * c[:, None]).T @ a
                hessian[j, :, k, :] = block
                hessian[k, :, j, :] = block
        return hessian.reshape(dc * da, dc * da), gradient

    def predict(
        self,
        *,
        context: FloatArray,
        action_table: FloatArray,
        row: IntArray,
        action: IntArray,
    ) -> FloatArray:
        if self.coef is None:
            raise ValueError("model: predict called before fit")
        x = self._context(np.asarray(context, dtype=np.float64))
        a = np.hstack([np.ones((len(action_table), 1)), action_table])
        out = np.empty(len(row))
        if len(x) * len(a) <= _TABLE_CELLS:
            table = (x @ self.coef) @ a.T
            out[:] = table[row, action]
        else:
            for start in range(0, len(row), _PREDICT_BLOCK):
                stop = start + _PREDICT_BLOCK
                out[start:stop] = self._eta(self.coef, x[row[start:stop]], a, action[start:stop])
        return self._link(out)

    def _link(self, eta: FloatArray) -> FloatArray:
        return eta


class RidgeRewardModel(_InteractionModel):
    """Ridge regression on context x action interactions: for rewards of any scale (value
    minus offer cost), solved in closed form."""

    def __init__(self, *, l2: float = 1.0) -> None:
        super().__init__(l2=l2)

    def fit(
        self,
        *,
        context: FloatArray,
        action_table: FloatArray,
        action: IntArray,
        reward: FloatArray,
    ) -> None:
        x, a = self._prepare(context, action_table, action, reward)
        hessian, gradient = self._normal_equations(x, a, action, np.ones(len(reward)), reward)
        hessian[np.diag_indices_from(hessian)] += self._penalty((x.shape[1], a.shape[1]))
        solution = np.asarray(np.linalg.solve(hessian, gradient), dtype=np.float64)
        self.coef = solution.reshape(x.shape[1], a.shape[1])


class LogisticRewardModel(_InteractionModel):
    """L2-penalised logistic regression on context x action interactions (rewards in [0, 1]),
    fitted by Newton-Raphson (IRLS) with step halving; converges in a handful of steps."""

    def __init__(self, *, l2: float = 1.0, max_iter: int = 30, tol: float = 1e-7) -> None:
        super().__init__(l2=l2)
        self.max_iter = max_iter
        self.tol = tol
        self.iterations = 0

    def fit(
        self,
        *,
        context: FloatArray,
        action_table: FloatArray,
        action: IntArray,
        reward: FloatArray,
    ) -> None:
        outside = int(np.count_nonzero((reward < 0.0) | (reward > 1.0)))
        if outside:
            raise ValueError(
                f"reward: {outside} of {len(reward)} rows are outside [0, 1]; a logistic model "
                "needs rewards in [0, 1] (use RidgeRewardModel for other scales)"
            )
        x, a = self._prepare(context, action_table, action, reward)
        shape = (x.shape[1], a.shape[1])
        penalty = self._penalty(shape)
        coef = np.zeros(shape)
        mean = float(np.clip(reward.mean(), 1e-3, 1 - 1e-3))
        coef[0, 0] = np.log(mean / (1.0 - mean))
        objective = self._objective(coef, x, a, action, reward, penalty)
        for iteration in range(1, self.max_iter + 1):
            p = _sigmoid(self._eta(coef, x, a, action))
            hessian, gradient = self._normal_equations(x, a, action, p * (1.0 - p), reward - p)
            gradient -= penalty * coef.ravel()
            hessian[np.diag_indices_from(hessian)] += penalty + 1e-10
            step = np.linalg.solve(hessian, gradient).reshape(shape)
            scale = 1.0
            while True:
                candidate = coef + scale * step
                value = self._objective(candidate, x, a, action, reward, penalty)
                if value <= objective + 1e-12 or scale < 1e-4:
                    break
                scale /= 2.0
            coef, objective = candidate, value
            self.iterations = iteration
            if float(np.max(np.abs(scale * step))) < self.tol:
                break
        self.coef = coef

    def _objective(
        self,
        coef: FloatArray,
        x: FloatArray,
        a: FloatArray,
        action: IntArray,
        reward: FloatArray,
        penalty: FloatArray,
    ) -> float:
        """Negative penalised log-likelihood."""
        eta = self._eta(coef, x, a, action)
        loss = np.logaddexp(0.0, eta) - reward * eta
        return float(loss.sum() + 0.5 * np.dot(penalty, coef.ravel() ** 2))

    def _link(self, eta: FloatArray) -> FloatArray:
        return _sigmoid(eta)


def _sigmoid(eta: FloatArray) -> FloatArray:
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * eta))
    return out
