"""Fitted histogram-gradient-boosting models' trees as flat arrays, walked with numpy: every
tree of every model, for every row asked of it, one level at a time.

scikit-learn predicts tree by tree, a Python call each: with 200 trees a model that costs
milliseconds for a single invoice, six models a prediction (measured: 3.6 ms a model for one
row). Here each level of every tree is one numpy step over all the (row, tree) pairs together,
several models' alike (a prediction asks five models of its invoice and the median model of
its factors' path: one walk), the same decisions (a value at most the threshold goes left, a
missing one where the tree learnt), the same leaf values summed onto the same baseline, in the
same order of trees. ``tests/unit/test_prediction_forest.py`` holds it to scikit-learn's own
predictions.

The nodes are laid out so that a step costs few numpy calls: an inner node's two children
side by side (the right one is the left one's index plus one: a comparison picks it), and a
leaf its own child with an infinite threshold (a pair that reached its leaf stays there).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np


class FlatForests:
    """The trees of fitted ``HistGradientBoostingRegressor`` s or binary classifiers, by name."""

    def __init__(self, estimators: Mapping[Hashable, Any]) -> None:
        trees: list[np.ndarray] = []
        self.spans: dict[Hashable, tuple[int, int]] = {}  # each model's trees: [first, last)
        self.baselines: dict[Hashable, float] = {}
        for name, estimator in estimators.items():
            if getattr(estimator, "n_trees_per_iteration_", 1) != 1:
                raise ValueError("one tree per iteration only (regression or two classes)")
            own = [predictors[0].nodes for predictors in estimator._predictors]
            if any(tree["is_categorical"].any() for tree in own):
                raise ValueError("categorical splits are not flattened")
            self.spans[name] = (len(trees), len(trees) + len(own))
            self.baselines[name] = float(np.ravel(estimator._baseline_prediction)[0])
            trees.extend(own)
        self._lay_out(trees)

    def _lay_out(self, trees: list[np.ndarray]) -> None:
        """The roots first (tree t at t), then the children of each inner node as a pair."""
        sizes = np.array([len(tree) for tree in trees], dtype=np.intp)
        nodes = np.concatenate(trees) if trees else np.zeros(0, dtype=[("is_leaf", bool)])
        count = len(nodes)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        shift = np.repeat(offsets, sizes)  # a node's children are numbered within its tree
        leaf = nodes["is_leaf"].astype(bool) if count else np.zeros(0, dtype=bool)
        inner = np.flatnonzero(~leaf)
        where = np.empty(count, dtype=np.intp)  # new index of each node
        where[offsets] = np.arange(len(trees))
        first_child = len(trees) + 2 * np.arange(len(inner), dtype=np.intp)
        if len(inner):
            where[nodes["left"][inner].astype(np.intp) + shift[inner]] = first_child
            where[nodes["right"][inner].astype(np.intp) + shift[inner]] = first_child + 1
        self.roots = np.arange(len(trees), dtype=np.intp)
        self.feature = np.zeros(count, dtype=np.intp)
        self.threshold = np.full(count, np.inf)
        self.missing_right = np.zeros(count, dtype=bool)  # (inner nodes only: a leaf stays)
        self.left = np.empty(count, dtype=np.intp)
        self.value = np.empty(count, dtype=np.float64)
        self.left[where] = where  # a leaf its own child
        self.left[where[inner]] = first_child
        if count:
            self.feature[where[inner]] = nodes["feature_idx"][inner]
            self.threshold[where[inner]] = nodes["num_threshold"][inner]
            self.missing_right[where[inner]] = ~nodes["missing_go_to_left"][inner].astype(bool)
            self.value[where] = nodes["value"]
        self.depth = int(nodes["depth"].max()) if count else 0

    def raw(self, asked: Sequence[tuple[Hashable, np.ndarray]]) -> list[np.ndarray]:
        """For each (model, rows) asked, the model's raw prediction of each row: the baseline
        plus its leaf in every tree, summed tree after tree (as scikit-learn adds them)."""
        matrices = [(name, np.asarray(rows, dtype=np.float64)) for name, rows in asked]
        width = matrices[0][1].shape[1] if matrices else 0
        starts, nodes, lines = [], [], []
        line = pairs = 0
        for name, rows in matrices:
            first, last = self.spans[name]
            starts.append(pairs)
            nodes.append(np.tile(self.roots[first:last], len(rows)))  # row after row, its trees in order
            lines.append(np.repeat(np.arange(line, line + len(rows), dtype=np.intp) * width, last - first))
            line += len(rows)
            pairs += len(rows) * (last - first)
        values = np.concatenate([rows.reshape(-1) for _, rows in matrices]) if matrices else np.zeros(0)
        at = np.concatenate(nodes) if nodes else np.zeros(0, dtype=np.intp)
        base = np.concatenate(lines) if lines else np.zeros(0, dtype=np.intp)
        missing = bool(np.isnan(values).any())
        for _ in range(self.depth):
            x = values[base + self.feature[at]]
            right = x > self.threshold[at]
            if missing:  # (a value missing goes where its node learnt; a leaf's stays)
                right |= np.isnan(x) & self.missing_right[at]
            at = self.left[at] + right
        leaves = self.value[at]
        found = []
        for (name, rows), start in zip(matrices, starts, strict=True):
            first, last = self.spans[name]
            per_tree = leaves[start:start + len(rows) * (last - first)].reshape(len(rows), last - first)
            # baseline first, then tree after tree: a running sum adds in scikit-learn's order
            summed = np.column_stack([np.full(len(rows), self.baselines[name]), per_tree])
            found.append(np.cumsum(summed, axis=1)[:, -1])
        return found

