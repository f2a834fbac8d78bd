"""SHAP explanations of a LightGBM churn or uplift model, as tidy DataFrames.

Every function here is pure: it reads a :class:`lightgbm.Booster`, a feature
frame or an array of contributions and returns a new frame, array or figure.
Contributions are in the booster's raw space (log-odds for the binary churn
model), so for every user ``base_value + contrib.sum()`` is the raw score.

The pieces, from per-user to population:

* :func:`contributions` -- LightGBM's native TreeSHAP (``pred_contrib=True``),
  computed in chunks so memory stays bounded however many users are scored.
* :func:`reason_codes` -- the top features pushing each user's risk up (or
  down), in plain words generated from the feature glossary and the user's
  value, e.g. ``days_since_last_activity=12`` -> ``"no activity for 12 days"``.
  The glossary comes from the feature schema file (:func:`glossary_from_schema`)
  or from the feature definitions (:func:`glossary_from_features`), so the
  wording follows whatever event types the dataset config produced.
* :func:`global_importance`, :func:`dependence`, :func:`interaction_table` and
  :func:`cohort_explanation` -- population summaries.
* :func:`plot_beeswarm`, :func:`plot_dependence`, :func:`plot_interaction` --
  matplotlib figures, drawn without pyplot's global state.

Speed. Exact TreeSHAP costs O(trees x leaves x depth^2) per user: called
directly, LightGBM's ``pred_contrib`` explained about 1,000 users a second with
the 419-tree churn champion on two cores, 16 minutes for a million. But within
one tree a user's contributions depend only on the branch taken at each of its
splits, and a million users take few distinct branch patterns per tree (about
32,000 for that model). On frames of 2,000 rows or more :func:`contributions`
therefore explains each tree's distinct patterns once and copies the result to
every user who shares it; the values are LightGBM's own, up to floating-point
summation order (tests hold them to 1e-10). A million users' exact reason
codes took 38 s (``benchmarks/reason_codes_scale.py --champion``).
``approximate=True`` (Saabas' path attribution, what
:meth:`shap.TreeExplainer.shap_values` calls ``approximate=True``) is cheaper
still but not consistent: it picked the same first reason as TreeSHAP for only
two users in three.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import math
import os
import queue
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from churnml.exceptions import SchemaMismatchError
from churnml.models.churn import lightgbm_input

if TYPE_CHECKING:  # pragma: no cover - typing only
    import lightgbm as lgb
    from matplotlib.figure import Figure

    from churnml.features.definitions import Feature

__all__ = [
    "cohort_explanation",
    "contributions",
    "dependence",
    "global_importance",
    "glossary_from_features",
    "glossary_from_schema",
    "interaction_table",
    "one_day",
    "plot_beeswarm",
    "plot_dependence",
    "plot_interaction",
    "reason_codes",
    "reason_text",
]

_Glossary = Mapping[str, Mapping[str, Any]]
_NOT_FEATURES = frozenset({"id", "label"})
# The approximate path holds a rows x trees leaf matrix, several times over while converting it:
# bound it to this many cells (about 100 MB) whatever the chunk size.
_SAABAS_CELLS = 4_000_000


# --------------------------------------------------------------------------- checks


def _error(owner: str, name: str, allowed: str, got: object) -> ValueError:
    """Build the one error shape this module raises."""
    return ValueError(f"The `{name}` parameter of `{owner}` must be `{allowed}`. Got `{got}` instead.")


def _feature_names(booster: lgb.Booster, X: pd.DataFrame, owner: str) -> list[str]:
    """The booster's feature names, after checking it has one output and X holds them all."""
    if not isinstance(X, pd.DataFrame):
        raise _error(owner, "X", "a pandas DataFrame", type(X).__name__)
    if booster.num_model_per_iteration() != 1:
        raise _error(owner, "booster", "a single-output (binary or regression) model",
                     f"{booster.num_model_per_iteration()} outputs per iteration")
    names = booster.feature_name()
    missing = [n for n in names if n not in X.columns]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise SchemaMismatchError(
            f"The `X` parameter of `{owner}` must be `a DataFrame with the booster's "
            f"{len(names)} feature columns`. Got `a frame missing {len(missing)}: {shown}` instead."
        )
    return names


def _check_contrib(contrib: np.ndarray, n_features: int, owner: str) -> np.ndarray:
    """Return contributions as a 2-D array with one column per feature."""
    arr = np.asarray(contrib)
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise _error(owner, "contrib", f"an array of shape (n_users, {n_features})",
                     f"an array of shape {arr.shape}")
    return arr


def _check_positive_int(value: Any, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise _error(owner, name, "an int >= 1", value)
    return int(value)


def _mask(value: Any, n: int, name: str, owner: str) -> np.ndarray:
    arr = value.to_numpy() if isinstance(value, pd.Series | pd.Index) else np.asarray(value)
    if arr.dtype != bool or arr.shape != (n,):
        raise _error(owner, name, f"a boolean mask of length {n}", f"{arr.dtype} of shape {arr.shape}")
    if not arr.any():
        raise _error(owner, name, "a mask selecting at least one user", "no user selected")
    return arr


# --------------------------------------------------------------------------- contributions


def _chunk_frame(X: pd.DataFrame, names: list[str], start: int, stop: int) -> pd.DataFrame:
    """Rows start:stop with exactly the booster's columns, in its order (copying only the chunk)."""
    chunk = X.iloc[start:stop]
    return chunk if list(X.columns) == names else chunk[names]


def _node_means(node: dict) -> tuple[float, float]:
    """Cover-weighted mean leaf value and data count under a dumped tree node."""
    if "split_feature" not in node:
        return float(node["leaf_value"]), float(node.get("leaf_count", 0))
    left_mean, left_n = _node_means(node["left_child"])
    right_mean, right_n = _node_means(node["right_child"])
    total = left_n + right_n
    # A node no training row reached has no cover; TreeSHAP gives both sides equal weight then.
    mean = (left_mean * left_n + right_mean * right_n) / total if total else (left_mean + right_mean) / 2
    node["_mean"] = mean
    return mean, total


def _saabas_tables(booster: lgb.Booster) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
    """Per tree: the features it splits on and each leaf's Saabas attribution to them.

    The attribution of a leaf is, for every split on the root-to-leaf path, the
    change in cover-weighted mean leaf value from the node to the child taken,
    credited to the split's feature. The base value is the sum of the root means,
    which is also the base value of TreeSHAP.
    """
    tables: list[tuple[np.ndarray, np.ndarray]] = []
    base = 0.0
    for tree in booster.dump_model()["tree_info"]:
        root = tree["tree_structure"]
        root_mean, _ = _node_means(root)
        base += root_mean
        leaves: dict[int, dict[int, float]] = {}
        stack: list[tuple[dict, float, dict[int, float]]] = [(root, root_mean, {})]
        while stack:
            node, mean, acc = stack.pop()
            if "split_feature" not in node:
                leaves[int(node.get("leaf_index", 0))] = acc
                continue
            feature = int(node["split_feature"])
            for child in (node["left_child"], node["right_child"]):
                child_mean = child.get("_mean", child.get("leaf_value"))
                step = dict(acc)
                step[feature] = step.get(feature, 0.0) + float(child_mean) - mean
                stack.append((child, float(child_mean), step))
        feats = np.array(sorted({f for acc in leaves.values() for f in acc}), dtype=np.intp)
        table = np.zeros((max(leaves) + 1, feats.size))
        col = {f: j for j, f in enumerate(feats.tolist())}
        for leaf, acc in leaves.items():
            for f, v in acc.items():
                table[leaf, col[f]] = v
        tables.append((feats, table))
    return tables, base


# --------------------------------------------------------------------------- exact TreeSHAP, deduplicated

# Below this many rows a chunk goes straight to LightGBM: the per-tree bookkeeping would cost more.
_DEDUP_MIN_ROWS = 2_000
# LightGBM's kZeroThreshold, the float literal 1e-35f: |x| <= this counts as zero in its splits.
_ZERO = float(np.float32(1e-35))


# Per booster: private copies for range-limited predictions, and the deduplicated explainer's
# tables. LightGBM keeps a prediction's iteration range on the booster and lets predictions run
# together, so a one-tree call on a booster someone else predicts with changes their answer: those
# calls only ever run on a copy checked out for the call. Neither cache refers to its key, so both
# entries go with the booster.
_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_DEDUP: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()
# From this many rows a direct TreeSHAP call is split over the cores, one booster copy per thread.
_PARALLEL_MIN_ROWS = 256


@contextlib.contextmanager
def _copy_of(booster: lgb.Booster):
    """A copy of ``booster`` no other call uses until this one is done with it."""
    with _CACHE_LOCK:
        idle = _COPIES.setdefault(booster, queue.SimpleQueue())
    try:
        copy = idle.get_nowait()
    except queue.Empty:
        copy = type(booster)(model_str=booster.model_to_string())
    try:
        yield copy
    finally:
        idle.put(copy)


def _cpu_count() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _DedupTreeShap:
    """Exact path-dependent TreeSHAP that explains each distinct decision pattern once per tree.

    Within one tree, a user's TreeSHAP values depend on the user only through
    the branch taken at every split of that tree (the leaf reached and, for
    every other leaf, which of its path conditions hold). Users who lie in the
    same interval between the tree's thresholds on every feature it splits on
    (missing and zero values in intervals of their own, since splits may send
    them a default way; categorical values by their code) take the same branch
    everywhere in the tree, so they share its contributions exactly. Per tree,
    users are keyed by those intervals, one representative per key is
    explained by LightGBM's own TreeSHAP (``pred_contrib`` with
    ``start_iteration=t, num_iteration=1``), and the result is scattered back
    to every user with that key. The sum over trees is LightGBM's answer up to
    floating-point summation order.
    """

    def __init__(self, booster: lgb.Booster) -> None:
        self.n_features = booster.num_feature()
        per_tree: list[tuple[dict[int, set[float]], set[int]]] = []
        for tree in booster.dump_model()["tree_info"]:
            numeric: dict[int, set[float]] = {}
            categorical: set[int] = set()
            stack = [tree["tree_structure"]]
            while stack:
                node = stack.pop()
                if "split_feature" not in node:
                    continue
                f = int(node["split_feature"])
                if node["decision_type"] == "==":
                    categorical.add(f)
                else:
                    numeric.setdefault(f, set()).add(float(node["threshold"]))
                stack += [node["left_child"], node["right_child"]]
            per_tree.append((numeric, categorical))
        merged: dict[int, set[float]] = {}
        for numeric, _ in per_tree:
            for f, thresholds in numeric.items():
                merged.setdefault(f, set()).update(thresholds)
        # One sorted threshold list per numeric feature over all trees: a user's bin in it is found
        # once per chunk, and each tree maps it to its own coarser bins through a small lookup table.
        self.thresholds = {f: np.array(sorted(t)) for f, t in merged.items()}
        self.categorical = sorted({f for _, cats in per_tree for f in cats})
        self.trees: list[list[tuple[int, np.ndarray | None]]] = []
        for numeric, cats in per_tree:
            keyed: list[tuple[int, np.ndarray | None]] = [(f, None) for f in sorted(cats)]
            for f in sorted(numeric):
                own = np.array(sorted(numeric[f]))
                # Global bin k holds (glob[k-1], glob[k]]; in the tree it is the count of its thresholds below.
                local = np.searchsorted(own, self.thresholds[f], side="left")
                keyed.append((f, np.concatenate([local, [own.size, own.size + 1, own.size + 2]])))
            self.trees.append(keyed)

    def _bins(self, A: np.ndarray) -> dict[int, tuple[np.ndarray, int]]:
        """Per split feature: each row's global bin (numeric) or category key, and how many there are."""
        bins: dict[int, tuple[np.ndarray, int]] = {}
        for f, glob in self.thresholds.items():
            col = A[:, f]
            code = np.searchsorted(glob, col, side="left")
            code[np.abs(col) <= _ZERO] = glob.size + 2
            code[np.isnan(col)] = glob.size + 1
            bins[f] = (code, glob.size + 3)
        for f in self.categorical:
            col = A[:, f]
            # LightGBM truncates categorical values to int; missing values get a key of their own.
            code, uniques = pd.factorize(np.where(np.isnan(col), -np.inf, np.trunc(col)))
            bins[f] = (code, len(uniques))
        return bins

    def __call__(self, booster: lgb.Booster, A: np.ndarray) -> np.ndarray:
        """Contributions ``(rows, features + 1)`` of the rows of ``A`` (LightGBM's float matrix of ``booster``)."""
        n, p = A.shape[0], self.n_features
        out = np.zeros((p + 1, n))  # feature-major: adding a column is a contiguous write
        bins = self._bins(A)
        workers = max(1, min(_cpu_count(), len(self.trees)))
        # Trees are explained in parallel threads (numpy, pandas' hashing and LightGBM release the
        # GIL), one LightGBM thread each, each keying all rows so duplicates are found across the
        # whole chunk, each on a booster copy of its own (see _copy_of). Results are added in tree
        # order, so the sums are the same whatever the number of threads.
        threads = 1 if workers > 1 else 0

        def explain_tree(t: int) -> tuple[np.ndarray, np.ndarray]:
            with _copy_of(booster) as copy:
                return self._explain_tree(A, bins, t, copy, threads)

        def add(t: int, job) -> None:
            inverse, phi = job.result()
            for f, _ in self.trees[t]:
                out[f] += phi[f].take(inverse)
            out[p] += phi[p, 0]

        with ThreadPoolExecutor(workers) as pool:
            pending: collections.deque = collections.deque()  # at most 2 x workers trees in flight
            for t in range(len(self.trees)):
                pending.append((t, pool.submit(explain_tree, t)))
                if len(pending) > 2 * workers:
                    add(*pending.popleft())
            while pending:
                add(*pending.popleft())
        return out.T

    def _explain_tree(self, A: np.ndarray, bins: dict[int, tuple[np.ndarray, int]], t: int,
                      booster: lgb.Booster, num_threads: int) -> tuple[np.ndarray, np.ndarray]:
        """Tree ``t``: each row's key index and the contributions ``(features + 1, keys)`` per key."""
        n = A.shape[0]
        key = np.zeros(n, np.int64)
        span = 1
        for f, lut in self.trees[t]:
            code, size = bins[f]
            if lut is not None:
                code, size = lut[code], lut[-1] + 1
            if span * size >= 2**62:  # keep the key inside int64: renumber what there is so far
                key, uniques = pd.factorize(key)
                span = len(uniques)
            key = key * size + code
            span *= size
        inverse, uniques = pd.factorize(key)
        rep = np.empty(len(uniques), np.intp)
        rep[inverse] = np.arange(n)
        phi = booster.predict(A[rep], pred_contrib=True, start_iteration=t, num_iteration=1,
                              num_threads=num_threads)
        return inverse, phi.T


def _contribution_fn(booster: lgb.Booster, approximate: bool) -> Callable[[pd.DataFrame], np.ndarray]:
    """A function mapping a feature chunk to its ``(rows, features + 1)`` contributions."""
    if not approximate:

        def exact(chunk: pd.DataFrame) -> np.ndarray:
            n, A = len(chunk), lightgbm_input(booster, chunk)
            if n >= _DEDUP_MIN_ROWS:
                with _CACHE_LOCK:
                    dedup = _DEDUP.get(booster)
                    if dedup is None:
                        dedup = _DEDUP[booster] = _DedupTreeShap(booster)
                return dedup(booster, A)
            workers = min(_cpu_count(), n // (_PARALLEL_MIN_ROWS // 2))
            if workers < 2:
                return booster.predict(A, pred_contrib=True)
            # Row blocks on booster copies in threads of their own, one OpenMP thread each: the
            # caller's OpenMP setting (OMP_NUM_THREADS=1 in the API) is left as it was.
            def block(bounds: tuple[int, int]) -> np.ndarray:
                with _copy_of(booster) as copy:
                    return copy.predict(A[bounds[0]:bounds[1]], pred_contrib=True, num_threads=1)

            edges = np.linspace(0, n, workers + 1).astype(int)
            with ThreadPoolExecutor(workers) as pool:
                return np.concatenate(list(pool.map(block, itertools.pairwise(edges))))

        return exact
    from scipy import sparse  # a dependency of lightgbm

    tables, base = _saabas_tables(booster)
    n_features = booster.num_feature()
    offsets = np.cumsum([0] + [table.shape[0] for _, table in tables])
    index_dtype = np.int32 if offsets[-1] < 2**31 else np.int64
    rows, cols, vals = [], [], []
    for t, (feats, table) in enumerate(tables):
        r, c = np.nonzero(table)
        rows.append(r + offsets[t])
        cols.append(feats[c])
        vals.append(table[r, c])
    # One row per (tree, leaf) holding its attribution: a user's contributions are the sum of the
    # rows of the leaves it lands in, i.e. a sparse one-hot (users x leaves) times this matrix.
    # Summing per tree into a dense array instead costs trees x features-per-tree per user (~5x slower).
    by_leaf = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(int(offsets[-1]), n_features),
    )

    def saabas(chunk: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(chunk), n_features + 1))
        out[:, -1] = base
        step = max(1, _SAABAS_CELLS // max(len(tables), 1))
        for start in range(0, len(chunk), step):
            part = chunk.iloc[start:start + step]
            leaves = booster.predict(part, pred_leaf=True).reshape(len(part), -1)
            n, n_trees = leaves.shape
            hot = (leaves + offsets[:n_trees]).astype(index_dtype, copy=False).ravel()
            one_hot = sparse.csr_matrix(
                (np.ones(hot.size), hot, np.arange(0, n * n_trees + 1, n_trees, dtype=index_dtype)),
                shape=(n, by_leaf.shape[0]),
            )
            out[start:start + n, :-1] = (one_hot @ by_leaf).toarray()
        return out

    return saabas


def contributions(
    booster: lgb.Booster,
    X: pd.DataFrame,
    *,
    chunk_size: int = 1_000_000,
    approximate: bool = False,
    dtype: type | np.dtype = np.float64,
) -> tuple[np.ndarray, float]:
    """Per-user SHAP contributions of every feature, in the booster's raw (log-odds) space.

    Uses LightGBM's native path-dependent TreeSHAP (``booster.predict(X,
    pred_contrib=True)``), ``chunk_size`` rows at a time. Chunks of 2,000 rows
    or more are explained pattern by pattern (see the module notes): the same
    values, many times faster, using about 3 GB of working memory per million
    rows of a chunk besides the ``(n, p)`` result.

    Parameters
    ----------
    booster : lightgbm.Booster
        A single-output model (binary churn model, or an uplift learner).
    X : pandas.DataFrame
        One row per user holding every feature column of the booster (by name;
        other columns are ignored, order may differ). Categorical columns must
        use the categories the booster was trained with.
    chunk_size : int, default=1_000_000
        Rows explained at a time. Larger chunks share more patterns (faster) and
        hold more memory.
    approximate : bool, default=False
        Use Saabas' path attribution instead of TreeSHAP: roughly the cost of a
        prediction instead of ``depth**2`` times it, with the same base value
        and the same additivity, but not consistent (it over-credits splits near
        the leaves). It is what ``shap.TreeExplainer.shap_values(approximate=True)``
        computes.
    dtype : numpy dtype, default=numpy.float64
        Dtype of the returned array (``np.float32`` halves its memory).

    Returns
    -------
    contrib : numpy.ndarray of shape (n_users, n_features)
        Columns in ``booster.feature_name()`` order.
    base_value : float
        The expected raw score; ``base_value + contrib.sum(axis=1)`` equals
        ``booster.predict(X, raw_score=True)``.

    Raises
    ------
    SchemaMismatchError
        If ``X`` lacks some of the booster's features.
    ValueError
        If the booster has several outputs per iteration (multiclass) or
        ``chunk_size`` is not a positive int.

    Examples
    --------
    >>> contrib, base = contributions(booster, X)                # doctest: +SKIP
    >>> np.allclose(base + contrib.sum(1), booster.predict(X, raw_score=True))  # doctest: +SKIP
    True
    """
    names = _feature_names(booster, X, "contributions")
    chunk_size = _check_positive_int(chunk_size, "chunk_size", "contributions")
    explain = _contribution_fn(booster, approximate)
    n, p = len(X), len(names)
    if n == 0:
        # An all-missing row gives the base value without changing the empty result.
        probe = X.iloc[:0][names].reindex(range(1))
        return np.zeros((0, p), dtype=dtype), float(explain(probe)[0, -1])
    out = np.empty((n, p), dtype=dtype)
    base = 0.0
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        chunk = explain(_chunk_frame(X, names, start, stop))
        out[start:stop] = chunk[:, :p]
        base = float(chunk[0, p])
    return out, base


# --------------------------------------------------------------------------- glossary and wording


def glossary_from_schema(schema_doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Build a reason-code glossary from a feature schema document.

    Parameters
    ----------
    schema_doc : mapping
        The parsed ``<table>.schema.json`` written by the feature job: its
        ``columns`` list holds ``{name, dtype, description, family,
        window_days}``. Id and label columns are left out.

    Returns
    -------
    dict
        ``name -> {"description", "family", "window_days"}``.

    Raises
    ------
    ValueError
        If the document has no ``columns`` list.

    Examples
    --------
    >>> doc = {"columns": [{"name": "n_play_7d", "dtype": "int64", "family": "frequency",
    ...                     "description": "number of 'play' events in the last 7 days",
    ...                     "window_days": 7}]}
    >>> glossary_from_schema(doc)["n_play_7d"]["family"]
    'frequency'
    """
    columns = schema_doc.get("columns") if isinstance(schema_doc, Mapping) else None
    if not isinstance(columns, list):
        raise _error("glossary_from_schema", "schema_doc", "a schema with a `columns` list",
                     type(schema_doc).__name__)
    return {
        c["name"]: {"description": c.get("description") or c["name"], "family": c.get("family"),
                    "window_days": c.get("window_days")}
        for c in columns
        if c.get("family") not in _NOT_FEATURES
    }


def glossary_from_features(features: Iterable[Feature]) -> dict[str, dict[str, Any]]:
    """Build a reason-code glossary from feature definitions.

    Parameters
    ----------
    features : iterable of Feature
        E.g. ``FeatureSet.features`` or :func:`~churnml.features.definitions.feature_definitions`.
        Columns that are not :class:`Feature` objects (``tenure_days``, user
        attributes) are only in the schema; use :func:`glossary_from_schema`
        to cover them too.

    Returns
    -------
    dict
        ``name -> {"description", "family", "window_days"}``.
    """
    return {f.name: {"description": f.description, "family": f.family, "window_days": f.window_days}
            for f in features}


def _num(v: float) -> str:
    """A number as people write it: ``12``, ``1,200``, ``3.5``."""
    if float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:,.2f}".rstrip("0").rstrip(".")


def _days(d: float) -> str:
    return "1 day" if d == 1 else f"{_num(d)} days"


def _round2(v: np.ndarray) -> np.ndarray:
    return np.round(v, 2)


def _whole_days(v: np.ndarray) -> np.ndarray:
    # Completed days: 12.9 days without activity reads "12 days". Clock skew never goes below 0.
    return np.floor(np.maximum(v, 0.0))


@dataclass(frozen=True)
class _Template:
    """How one feature is worded.

    ``key`` maps raw values to the values shown (so the phrase is built once per
    distinct shown value); ``text`` words one shown value (NaN = missing);
    ``category`` words one non-numeric value.
    """

    text: Callable[[float], str]
    key: Callable[[np.ndarray], np.ndarray] = _round2
    category: Callable[[Any], str] | None = None


# A quoted event name, not the apostrophe of "the user's".
_QUOTED = re.compile(r"(?<!\w)'([^']+)'(?!\w)")
_TAIL = re.compile(r"\s*\((?:empty|1/0)[^)]*\)\s*$")


def one_day(text: str) -> str:
    """Say "the last day", not "the last 1 days" (feature descriptions are generated per window)."""
    return re.sub(r"\b(last|first) 1 days\b", r"\1 day", text)


def _normalise(description: str) -> str:
    """Drop a trailing "(empty if never)"-style note and say "the last day", not "the last 1 days"."""
    return one_day(_TAIL.sub("", description.strip()))


def _since_template(thing: str, quoted: str | None) -> _Template:
    """``days since the last X``: recency of activity, of one event type, of a contact."""
    if thing == "activity" or thing.endswith(" activity"):
        def text(v: float) -> str:
            if math.isnan(v):
                return f"no {thing} yet"
            return "active in the last day" if v == 0 else f"no {thing} for {_days(v)}"
    else:
        def text(v: float) -> str:
            if math.isnan(v):
                return f"never did '{quoted}'" if quoted else f"no {thing} so far"
            return f"last {thing} less than a day ago" if v == 0 else f"last {thing} {_days(v)} ago"
    return _Template(text, key=_whole_days)


def _tenure_template(thing: str) -> _Template:
    """``days since X`` for a start: signup, the first event."""
    subject = "signed up" if thing == "signup" else thing

    def text(v: float) -> str:
        if math.isnan(v):
            return f"{thing}: unknown"
        return f"{subject} less than a day ago" if v == 0 else f"{subject} {_days(v)} ago"

    return _Template(text, key=_whole_days)


def _active_days_template(tail: str) -> _Template:
    """``days with activity among the last 7`` / ``in the first 7 days after signup`` / ``so far``."""
    span = re.sub(r"^(?:among|in|over|during) ", "", tail)
    if re.fullmatch(r"the (?:last|first) \d+", span):
        span += " days"
    span = re.sub(r"\b(last|first) 1 days\b", r"\1 day", span)
    single = span.startswith(("the last day", "the first day"))

    def text(v: float) -> str:
        if math.isnan(v):
            return f"days with activity {tail}: unknown"
        if span == "so far":
            return "no active days so far" if v == 0 else f"active on {_days(v)} so far"
        if single:
            return f"not active in {span}" if v == 0 else f"active in {span}"
        return f"not active on any of {span}" if v == 0 else f"active on {_num(v)} of {span}"

    return _Template(text)


def _count_template(rest: str) -> _Template:
    """``number of 'play' events in the last 7 days``: a count of events."""
    singular = re.sub(r"\bevents\b", "event", rest, count=1)

    def text(v: float) -> str:
        if math.isnan(v):
            return f"{rest}: unknown"
        if v == 0:
            return f"no {rest}"
        return f"1 {singular}" if v == 1 else f"{_num(v)} {rest}"

    return _Template(text)


def _trend_template(thing: str, recent: str, before: str) -> _Template:
    """``log ratio of activity in the last 7 days to the 7 before``, as a percentage change."""
    period = f"in the last {recent} days vs the {before} days before"

    def text(pct: float) -> str:
        if math.isnan(pct):
            return f"{thing} trend unknown"
        if pct == 0:
            return f"{thing} unchanged {period}"
        return f"{thing} {'down' if pct < 0 else 'up'} {_num(abs(pct))}% {period}"

    # The feature is log((last + 1) / (before + 1)); show it as a rounded percentage change.
    return _Template(text, key=lambda v: np.round(100 * np.expm1(v)))


def _gap_template(kind: str, between: str) -> _Template:
    def text(v: float) -> str:
        if math.isnan(v):
            return f"{kind} gap between {between}: none yet"
        return f"{kind} gap of {_days(v)} between {between}"

    return _Template(text, key=lambda v: np.round(v, 1))


def _flag_template(statement: str) -> _Template:
    def text(v: float) -> str:
        if math.isnan(v):
            return f"{statement}: unknown"
        return f"{statement}: {'yes' if v else 'no'}"

    return _Template(text)


def _labelled_template(label: str) -> _Template:
    """The fallback: ``<description>: <value>``."""
    def text(v: float) -> str:
        return f"{label}: unknown" if math.isnan(v) else f"{label}: {_num(v)}"

    return _Template(text, category=lambda c: f"{label}: {c}")


@functools.lru_cache(maxsize=4096)
def _base_template(name: str, description: str, family: str, window: int | None) -> _Template:
    """Pick the wording from the family and the description's shape (see :func:`reason_text`)."""
    quoted = _QUOTED.search(description)
    event = quoted.group(1) if quoted else None
    desc = _normalise(description)
    if family == "attribute":
        return _labelled_template(event or name)
    if "(1/0" in description:
        return _flag_template(desc)
    if m := re.fullmatch(r"days since (?:the user's |the )?last (.+)", desc):
        return _since_template(m.group(1), event)
    if m := re.fullmatch(r"days since (?:the user's |the )?(.+)", desc):
        return _tenure_template(m.group(1))
    if m := re.fullmatch(r"days with activity (.+)", desc):
        return _active_days_template(m.group(1))
    if m := re.fullmatch(r"log ratio of (.+?) in the last (\d+) days to the (\d+) before.*", desc):
        return _trend_template(*m.groups())
    if m := re.fullmatch(r"(average|mean|median|longest|shortest) gap in days between (.+)", desc):
        return _gap_template(m.group(1), m.group(2))
    count = re.sub(r"^number of ", "", desc)
    if family in {"frequency", "activity", "onboarding", "trend"} and re.search(r"\bevents\b", count):
        return _count_template(count)
    if family == "depth" and "per active day" in desc:
        base = _labelled_template(desc)
        span = f" in the last {window} days" if window else " so far"

        def depth_text(v: float) -> str:
            return f"no active days{span}" if math.isnan(v) else f"{_num(v)} {desc}"

        return _Template(depth_text, category=base.category)
    return _labelled_template(desc)


def _template(name: str, entry: Mapping[str, Any] | None) -> _Template:
    """The wording of one feature, with the glossary entry's own phrases taking precedence."""
    entry = entry or {}
    description = str(entry.get("description") or name)
    base = _base_template(name, description, str(entry.get("family") or ""), entry.get("window_days"))
    phrase, zero, missing = (entry.get(k) for k in ("phrase", "phrase_zero", "phrase_missing"))
    if not (phrase or zero or missing):
        return base

    def text(v: float) -> str:
        if math.isnan(v):
            return missing or base.text(v)
        if v == 0 and zero:
            return zero.format(value=_num(v))
        return phrase.format(value=_num(v)) if phrase else base.text(v)

    return _Template(text, key=base.key, category=base.category)


def _phrases(template: _Template, values: pd.Series) -> np.ndarray:
    """Word many values of one feature: once per distinct shown value, then broadcast."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not isinstance(values.dtype, pd.CategoricalDtype):
        raw = values.to_numpy(dtype=np.float64, na_value=np.nan)
        shown, inverse = np.unique(template.key(raw), return_inverse=True)
        words = np.array([template.text(float(v)) for v in shown], dtype=object)
        return words[inverse.reshape(-1)]
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    category = template.category or (lambda c: f"{c}")
    words = np.array([category(u) for u in uniques] + [template.text(math.nan)], dtype=object)
    return words[codes]


def reason_text(feature: str, value: Any, glossary: _Glossary) -> str | np.ndarray:
    """Describe a feature value in plain words, as reason codes do.

    The wording is generated from the glossary entry, so it works for any
    event type the dataset config produced:

    ========================= ================================ ===================================================
    family / description      value                            text
    ========================= ================================ ===================================================
    recency, activity         ``days_since_last_activity=12``  "no activity for 12 days"
    recency, one event        ``days_since_last_like=NaN``     "never did 'like'"
    recency, one event        ``days_since_last_play=3.4``     "last 'play' event 3 days ago"
    frequency / activity      ``n_play_7d=2``                  "2 'play' events in the last 7 days"
    onboarding                ``onboard_n_like_7d=0``          "no 'like' events in the first 7 days after signup"
    days with activity        ``active_days_7d=2``             "active on 2 of the last 7 days"
    trend (log ratio)         ``activity_trend_7d=-0.69``      "activity down 50% in the last 7 days vs ..."
    gaps                      ``gap_max_days=12``              "longest gap of 12 days between consecutive ..."
    tenure                    ``tenure_days=40.2``             "signed up 40 days ago"
    campaign flag (1/0)       ``responded_last_contact=0``     "came back within 7 days of ...: no"
    attribute                 ``platform="ios"``               "platform: ios"
    anything else             ``communities_joined=0``         "distinct communities joined so far: 0"
    ========================= ================================ ===================================================

    Day counts are whole completed days. A glossary entry may override the
    generated wording with ``phrase`` (a format string with ``{value}``),
    ``phrase_zero`` (used when the value is 0, e.g. ``"liked no song in the
    first 7 days after signup"``) and ``phrase_missing`` (used for NaN).

    Parameters
    ----------
    feature : str
        Feature name; a name missing from the glossary is worded ``"<name>: <value>"``.
    value : scalar or array-like
        One value, or many (a list, array or Series).
    glossary : mapping
        ``name -> {"description", "family", "window_days"}``, see
        :func:`glossary_from_schema`.

    Returns
    -------
    str or numpy.ndarray of str
        One phrase per value.

    Examples
    --------
    >>> g = {"days_since_last_activity": {"description": "days since the user's last activity",
    ...                                   "family": "recency", "window_days": None}}
    >>> reason_text("days_since_last_activity", 12.4, g)
    'no activity for 12 days'
    """
    template = _template(feature, glossary.get(feature))
    scalar = np.ndim(value) == 0
    series = pd.Series([value] if scalar else value)
    if scalar and value is None:
        series = series.astype(float)
    words = _phrases(template, series)
    return str(words[0]) if scalar else words


# --------------------------------------------------------------------------- reason codes


@dataclass(frozen=True)
class _Facts:
    """Which features state overlapping facts, read from the glossary (see :func:`reason_codes`).

    Recency features ("days since the last X") say when something last
    happened; window features ("number of X in the last w days", "days with
    activity among the last w") at 0 say that it did not happen in a window.
    ``subject`` is the quoted event type, or ``activity`` (any event).
    """

    recency: np.ndarray         # column positions of the recency features
    recency_subject: np.ndarray
    window: np.ndarray          # column positions of the "last w days" features
    window_days: np.ndarray
    window_subject: np.ndarray
    recency_pos: np.ndarray     # per column: its position in `recency`, or -1
    window_pos: np.ndarray      # per column: its position in `window`, or -1

    ACTIVITY = 0

    @classmethod
    def from_glossary(cls, names: Sequence[str], glossary: _Glossary) -> _Facts | None:
        subjects: dict[str, int] = {"activity": cls.ACTIVITY}
        recency, r_subject, window, w_days, w_subject = [], [], [], [], []
        for j, name in enumerate(names):
            entry = glossary.get(name) or {}
            family, description = str(entry.get("family") or ""), str(entry.get("description") or "")
            quoted = _QUOTED.search(description)
            subject = subjects.setdefault(quoted.group(1) if quoted else "activity", len(subjects))
            desc = _normalise(description)
            if family == "recency" and re.fullmatch(r"days since (?:the user's |the )?last .+", desc):
                if quoted or "activity" in desc:
                    recency.append(j)
                    r_subject.append(subject)
            elif (family in ("frequency", "activity") and entry.get("window_days")
                  and re.search(r"\b(?:in|among) the last\b", desc)
                  and (quoted or "activity" in desc)):
                window.append(j)
                w_days.append(float(entry["window_days"]))
                w_subject.append(subject)
        if not recency and not window:
            return None
        r_pos = np.full(len(names), -1, dtype=np.intp)
        r_pos[recency] = np.arange(len(recency))
        w_pos = np.full(len(names), -1, dtype=np.intp)
        w_pos[window] = np.arange(len(window))
        return cls(np.array(recency, dtype=np.intp), np.array(r_subject), np.array(window, dtype=np.intp),
                   np.array(w_days), np.array(w_subject), r_pos, w_pos)

    def values(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Whole days of the recency features (as worded) and which window features are 0, per row."""
        def block(cols):
            out = np.empty((len(frame), len(cols)), order="F")
            for k, c in enumerate(cols):  # column by column: far faster than a mixed-dtype frame's to_numpy
                out[:, k] = frame.iloc[:, c].to_numpy(dtype=np.float64, na_value=np.nan)
            return out

        days = _whole_days(block(self.recency)) if len(self.recency) else np.empty((len(frame), 0))
        zero = block(self.window) == 0 if len(self.window) else np.empty((len(frame), 0), dtype=bool)
        return days, zero

    def exclude(self, score: np.ndarray, best: np.ndarray, chosen: np.ndarray, days: np.ndarray,
                zero: np.ndarray) -> None:
        """Take out of ``score`` the features that restate what each row's ``best`` feature says.

        A recency of d days restates any other recency of d days (the same last
        moment: "no activity for 9 days", "last 'visit' event 9 days ago") and
        every window of at most d days at 0 for its event, or for any event when
        that moment is the user's last activity ("no 'visit' events in the last
        7 days", "not active on any of the last 7 days"). A window at 0 says
        that its events (any event, for activity) stopped: so do the other
        windows at 0 and the recencies of at least its length for them.
        """
        n = score.shape[0]
        rows = np.arange(n)
        rpos, wpos = self.recency_pos[best], self.window_pos[best]
        is_r = chosen & (rpos >= 0)
        is_w = chosen & (wpos >= 0)
        if len(self.window):
            is_w &= zero[rows, np.maximum(wpos, 0)]
        if not (is_r.any() or is_w.any()):
            return
        reach = np.full(n, -np.inf)
        subject = np.full(n, -1)
        reach[is_r] = days[is_r, rpos[is_r]]
        subject[is_r] = self.recency_subject[rpos[is_r]]
        reach[is_w] = self.window_days[wpos[is_w]]
        subject[is_w] = self.window_subject[wpos[is_w]]
        # Cells are switched off through the positions found, not by masking whole column blocks:
        # gathering and scattering strided columns of a million rows cost more than the rest.
        if len(self.recency) and is_r.any():
            r, k = np.nonzero((days == reach[:, None]) & is_r[:, None])
            score[r, self.recency[k]] = -np.inf
        if len(self.window):
            everything = subject == self.ACTIVITY
            activity = np.flatnonzero(self.recency_subject == self.ACTIVITY)
            if len(activity):  # the chosen moment is the user's last activity: nothing happened since
                everything |= is_r & (days[:, activity[0]] == reach)
            covers = (self.window_subject[None, :] == subject[:, None]) | everything[:, None]
            # A recency of d days empties the windows of at most d days; a window at 0 says that its
            # events stopped, as every other window at 0 of them does.
            span = np.where(is_w, np.inf, reach)
            r, k = np.nonzero(zero & (self.window_days[None, :] <= span[:, None]) & covers)
            score[r, self.window[k]] = -np.inf
            if len(self.recency) and is_w.any():
                # ... and so does a recency of at least the window's length
                covers_r = (self.recency_subject[None, :] == subject[:, None]) | everything[:, None]
                r, k = np.nonzero((days >= reach[:, None]) & covers_r & is_w[:, None])
                score[r, self.recency[k]] = -np.inf


def _top_k(contrib: np.ndarray, k: int, sign: float, threshold: float, facts: _Facts | None = None,
           values: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Column index and value of the k largest ``sign * contrib`` per row above the threshold.

    Repeated argmax rather than a sort: it is O(k p) per row, and argmax returns
    the first maximum, so ties go to the earlier feature column deterministically.
    With ``facts`` (and the rows' ``values``), a feature that restates a reason
    already chosen for a row is skipped for that row (:meth:`_Facts.exclude`).
    """
    n = contrib.shape[0]
    score = np.array(contrib, dtype=np.float64) * sign
    rows = np.arange(n)
    idx = np.full((n, k), -1, dtype=np.intp)
    val = np.full((n, k), np.nan)
    for j in range(min(k, contrib.shape[1])):
        best = score.argmax(axis=1)
        top = score[rows, best]
        keep = top > threshold
        idx[keep, j] = best[keep]
        val[keep, j] = sign * top[keep]
        score[rows, best] = -np.inf
        if facts is not None and j + 1 < k:
            facts.exclude(score, best, keep, *values)
    return idx, val


def reason_codes(
    booster: lgb.Booster,
    X: pd.DataFrame,
    glossary: _Glossary,
    *,
    top: int = 3,
    direction: Literal["up", "down"] = "up",
    min_contribution: float = 0.0,
    contrib: np.ndarray | None = None,
    approximate: bool = False,
    chunk_size: int = 1_000_000,
    distinct: bool = True,
) -> pd.DataFrame:
    """The top reasons behind each user's score, in plain words.

    For ``direction="up"`` the reasons are the features with the largest
    positive contributions (what pushes churn risk up); for ``"down"`` those
    with the most negative ones (what keeps the user, or, on an uplift model,
    what makes them responsive). Each reason is worded from the glossary and
    the user's own value (see :func:`reason_text`). Contributions are computed
    chunk by chunk and not kept, unless passed in.

    Parameters
    ----------
    booster : lightgbm.Booster
        The model explained.
    X : pandas.DataFrame
        One row per user with the booster's feature columns; the result has
        the same index.
    glossary : mapping
        ``name -> {"description", "family", "window_days"}`` (see
        :func:`glossary_from_schema`).
    top : int, default=3
        Reasons per user.
    direction : {"up", "down"}, default="up"
        Which way the reasons push the score.
    min_contribution : float, default=0.0
        A reason must move the raw score by more than this (in log-odds); users
        with fewer such features get missing values (NaN) in the remaining slots.
    contrib : numpy.ndarray of shape (n_users, n_features), optional
        Contributions already computed by :func:`contributions` for ``X``.
    approximate : bool, default=False
        Passed to :func:`contributions` when ``contrib`` is not given.
    chunk_size : int, default=1_000_000
        Rows explained at a time.
    distinct : bool, default=True
        Each reason states a different fact: a feature that restates a reason
        already chosen for the user is skipped and the next one taken. Read
        from the glossary: recency features with the same day count state one
        moment ("no activity for 9 days" and "last 'visit' event 9 days ago"),
        and a recency of d days (or a window at 0) already says that windows of
        at most d days hold none of its events ("no 'visit' events in the last
        7 days"). ``False`` gives the plain top contributions.

    Returns
    -------
    pandas.DataFrame
        Indexed like ``X``, with columns ``reason_1`` ... ``reason_<top>``
        (text), ``reason_1_feature`` ... (feature names) and
        ``reason_1_contribution`` ... (signed raw-score contributions), strongest
        first. Ties go to the feature that comes first in the booster.

    Raises
    ------
    SchemaMismatchError
        If ``X`` lacks some of the booster's features.
    ValueError
        If an argument is out of range or ``contrib`` has the wrong shape.

    Examples
    --------
    >>> reasons = reason_codes(booster, X, glossary_from_schema(schema))   # doctest: +SKIP
    >>> reasons.loc[user, "reason_1"]                                      # doctest: +SKIP
    'no activity for 12 days'
    """
    owner = "reason_codes"
    names = _feature_names(booster, X, owner)
    top = _check_positive_int(top, "top", owner)
    chunk_size = _check_positive_int(chunk_size, "chunk_size", owner)
    if direction not in ("up", "down"):
        raise _error(owner, "direction", '"up" or "down"', direction)
    if not (isinstance(min_contribution, int | float) and min_contribution >= 0):
        raise _error(owner, "min_contribution", "a number >= 0", min_contribution)
    if contrib is not None:
        contrib = _check_contrib(contrib, len(names), owner)
        if contrib.shape[0] != len(X):
            raise _error(owner, "contrib", f"one row per row of X ({len(X)})", f"{contrib.shape[0]} rows")
    sign = 1.0 if direction == "up" else -1.0
    n, p = len(X), len(names)
    idx = np.full((n, top), -1, dtype=np.intp)
    val = np.full((n, top), np.nan)
    explain = None if contrib is not None else _contribution_fn(booster, approximate)
    facts = _Facts.from_glossary(names, glossary) if distinct and top > 1 else None
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        frame = _chunk_frame(X, names, start, stop) if explain is not None or facts is not None else None
        block = contrib[start:stop] if explain is None else explain(frame)[:, :p]
        idx[start:stop], val[start:stop] = _top_k(block, top, sign, float(min_contribution), facts,
                                                   facts.values(frame) if facts is not None else None)

    # Word each feature's chosen values in one go: group the (user, slot) cells by feature.
    flat = idx.ravel()
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(p + 1))
    text = np.full(flat.size, np.nan, dtype=object)
    for j, name in enumerate(names):
        cells = order[bounds[j]:bounds[j + 1]]
        if cells.size:
            column = X[name].iloc[cells // top]
            text[cells] = _phrases(_template(name, glossary.get(name)), column)
    text = text.reshape(n, top)
    feature = np.array([*names, np.nan], dtype=object)[idx]
    columns: dict[str, Any] = {}
    for j in range(top):
        columns[f"reason_{j + 1}"] = text[:, j]
    for j in range(top):
        columns[f"reason_{j + 1}_feature"] = feature[:, j]
    for j in range(top):
        columns[f"reason_{j + 1}_contribution"] = val[:, j]
    return pd.DataFrame(columns, index=X.index)


# --------------------------------------------------------------------------- population summaries


def global_importance(contrib: np.ndarray, feature_names: Sequence[str]) -> pd.DataFrame:
    """Rank features by mean absolute contribution.

    Parameters
    ----------
    contrib : numpy.ndarray of shape (n_users, n_features)
        From :func:`contributions`.
    feature_names : sequence of str
        Column names of ``contrib`` (``booster.feature_name()``).

    Returns
    -------
    pandas.DataFrame
        ``feature``, ``mean_abs_shap``, ``mean_shap`` (signed: the average push
        on the raw score) and ``rank`` (1 = most important), sorted by rank;
        ties keep the feature order.

    Raises
    ------
    ValueError
        If ``contrib`` is not 2-D with one column per name, or has no rows.
    """
    names = list(feature_names)
    arr = _check_contrib(contrib, len(names), "global_importance")
    if arr.shape[0] == 0:
        raise _error("global_importance", "contrib", "at least one row", "0 rows")
    table = pd.DataFrame({
        "feature": names,
        "mean_abs_shap": np.abs(arr).mean(axis=0, dtype=np.float64),
        "mean_shap": arr.mean(axis=0, dtype=np.float64),
    })
    table = table.sort_values("mean_abs_shap", ascending=False, kind="stable").reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    return table


@dataclass(frozen=True)
class _Bins:
    """Bin of every row (-1 = missing), and per bin its label and value range."""

    codes: np.ndarray
    labels: list[str]
    lower: np.ndarray
    upper: np.ndarray
    numeric: bool


def _bins(values: pd.Series, bins: int) -> _Bins:
    """One bin per distinct value when there are at most ``bins``, else quantile bins.

    Exact values keep steps visible (risk falls after the third like); quantile
    edges keep bins populated for continuous features. Missing values get no
    bin (code -1); categories are bins of their own.
    """
    if isinstance(values.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(values.dtype):
        cat = pd.Categorical(values)
        nan = np.full(len(cat.categories), np.nan)
        return _Bins(np.asarray(cat.codes, dtype=np.intp), [str(c) for c in cat.categories], nan, nan,
                     False)
    v = values.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = ~np.isnan(v)
    distinct = np.unique(v[finite])
    codes = np.full(v.size, -1, dtype=np.intp)
    if distinct.size <= bins:
        codes[finite] = np.searchsorted(distinct, v[finite])
        return _Bins(codes, [_num(d) for d in distinct], distinct, distinct, True)
    edges = np.unique(np.quantile(v[finite], np.linspace(0, 1, bins + 1)))
    codes[finite] = np.clip(np.searchsorted(edges, v[finite], side="right") - 1, 0, edges.size - 2)
    labels = [f"[{_num(a)}, {_num(b)})" for a, b in itertools.pairwise(edges[:-1])]
    labels.append(f"[{_num(edges[-2])}, {_num(edges[-1])}]")
    return _Bins(codes, labels, edges[:-1], edges[1:], True)


def _column(contrib: np.ndarray, names: list[str], feature: str, owner: str) -> np.ndarray:
    if feature not in names:
        raise _error(owner, "feature", "one of the explained features", feature)
    return np.asarray(contrib[:, names.index(feature)], dtype=np.float64)


def dependence(
    contrib: np.ndarray,
    X: pd.DataFrame,
    feature: str,
    *,
    bins: int = 20,
    feature_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """How one feature's contribution changes with its value.

    Parameters
    ----------
    contrib : numpy.ndarray of shape (n_users, n_features)
        From :func:`contributions` on ``X``.
    X : pandas.DataFrame
        The explained rows.
    feature : str
        The feature to trace.
    bins : int, default=20
        A feature with at most this many distinct values gets one bin per value
        (so a step such as "risk falls after the third like" shows exactly);
        otherwise quantile bins. Categories are bins of their own; missing
        values form a last ``"missing"`` bin.
    feature_names : sequence of str, optional
        Column names of ``contrib``; defaults to ``X.columns`` (pass
        ``booster.feature_name()`` when ``X`` has other columns).

    Returns
    -------
    pandas.DataFrame
        One row per non-empty bin in value order: ``bin`` (label), ``lower``,
        ``upper`` (bin edges), ``value_mean``, ``shap_mean`` (mean
        contribution, raw score), ``n``.

    Raises
    ------
    ValueError
        If shapes disagree or ``feature`` is unknown.
    """
    owner = "dependence"
    names = list(X.columns if feature_names is None else feature_names)
    arr = _check_contrib(contrib, len(names), owner)
    if arr.shape[0] != len(X):
        raise _error(owner, "contrib", f"one row per row of X ({len(X)})", f"{arr.shape[0]} rows")
    bins = _check_positive_int(bins, "bins", owner)
    shap_col = _column(arr, names, feature, owner)
    b = _bins(X[feature], bins)
    k = len(b.labels)
    slot = np.where(b.codes < 0, k, b.codes)
    n = np.bincount(slot, minlength=k + 1)
    shap_sum = np.bincount(slot, weights=shap_col, minlength=k + 1)
    if b.numeric:
        raw = X[feature].to_numpy(dtype=np.float64, na_value=np.nan)
        value_sum = np.bincount(slot, weights=np.nan_to_num(raw), minlength=k + 1)
        value_mean = np.divide(value_sum, n, out=np.full(k + 1, np.nan), where=n > 0)
        value_mean[k] = np.nan
    else:
        value_mean = np.full(k + 1, np.nan)
    table = pd.DataFrame({
        "bin": [*b.labels, "missing"],
        "lower": [*b.lower, np.nan],
        "upper": [*b.upper, np.nan],
        "value_mean": value_mean,
        "shap_mean": np.divide(shap_sum, n, out=np.full(k + 1, np.nan), where=n > 0),
        "n": n,
    })
    return table[table["n"] > 0].reset_index(drop=True)


def _is_binary(booster: lgb.Booster) -> bool:
    objective = str(booster.params.get("objective") or booster.dump_model(num_iteration=1)["objective"])
    return objective.startswith(("binary", "cross_entropy", "xentropy"))


def interaction_table(
    booster: lgb.Booster,
    X: pd.DataFrame,
    a: str,
    b: str,
    *,
    bins: int | tuple[int, int] = 5,
    contrib: np.ndarray | None = None,
    base_value: float | None = None,
    min_count: int = 1,
    approximate: bool = False,
    chunk_size: int = 1_000_000,
) -> pd.DataFrame:
    """Mean contributions and predicted risk over a grid of two features' bins.

    Users are grouped by the bin of ``a`` and the bin of ``b`` (binned as in
    :func:`dependence`), and each cell reports the mean contribution of ``a``,
    of ``b``, of both together, and the mean predicted risk. Read across a row
    of the grid to see whether ``a``'s effect changes with ``b`` (e.g. whether
    likes matter less once a user has joined a community).

    This reuses the per-user contributions (no extra model passes when
    ``contrib`` is given; one when not), so it scales with :func:`contributions`
    and covers every user. The cell means are conditional averages over the
    observed users, not SHAP interaction values: a difference across cells
    mixes the interaction with the way the other features co-vary with ``a``
    and ``b``. Cells with few users are noisy; ``n`` is reported and cells below
    ``min_count`` get NaN means.

    Parameters
    ----------
    booster : lightgbm.Booster
        The model explained.
    X : pandas.DataFrame
        The explained rows (with the booster's features).
    a, b : str
        The two features.
    bins : int or (int, int), default=5
        Bins for ``a`` and ``b`` (see :func:`dependence`).
    contrib : numpy.ndarray, optional
        Contributions of ``X`` from :func:`contributions`.
    base_value : float, optional
        Required with ``contrib``: the base value :func:`contributions` returned.
    min_count : int, default=1
        Smallest cell whose means are reported.
    approximate : bool, default=False
        Passed to :func:`contributions` when ``contrib`` is not given.
    chunk_size : int, default=1_000_000
        Passed to :func:`contributions` when ``contrib`` is not given.

    Returns
    -------
    pandas.DataFrame
        One row per non-empty cell, in bin order: ``a_bin``, ``b_bin`` (labels;
        ``"missing"`` for NaN), ``n``, ``shap_a``, ``shap_b``, ``shap_ab`` (the
        sum), ``mean_raw`` (mean raw score) and ``mean_risk`` (mean predicted
        probability; equal to ``mean_raw`` for a non-binary objective). The
        feature names are in ``table.attrs["a"]`` and ``table.attrs["b"]``.

    Raises
    ------
    SchemaMismatchError
        If ``X`` lacks some of the booster's features.
    ValueError
        If ``a`` or ``b`` is unknown, or ``contrib`` comes without ``base_value``.
    """
    owner = "interaction_table"
    names = _feature_names(booster, X, owner)
    bins_a, bins_b = (bins, bins) if isinstance(bins, int | np.integer) else bins
    bins_a = _check_positive_int(bins_a, "bins", owner)
    bins_b = _check_positive_int(bins_b, "bins", owner)
    min_count = _check_positive_int(min_count, "min_count", owner)
    if contrib is None:
        contrib, base_value = contributions(booster, X, chunk_size=chunk_size, approximate=approximate)
    elif base_value is None:
        raise _error(owner, "base_value", "the base value returned with `contrib`", None)
    arr = _check_contrib(contrib, len(names), owner)
    if arr.shape[0] != len(X):
        raise _error(owner, "contrib", f"one row per row of X ({len(X)})", f"{arr.shape[0]} rows")
    shap_a, shap_b = _column(arr, names, a, owner), _column(arr, names, b, owner)
    raw = arr.sum(axis=1, dtype=np.float64) + float(base_value)
    risk = 1.0 / (1.0 + np.exp(-raw)) if _is_binary(booster) else raw
    ba, bb = _bins(X[a], bins_a), _bins(X[b], bins_b)
    ka, kb = len(ba.labels), len(bb.labels)
    ca = np.where(ba.codes < 0, ka, ba.codes)
    cb = np.where(bb.codes < 0, kb, bb.codes)
    cell = ca * (kb + 1) + cb
    size = (ka + 1) * (kb + 1)
    n = np.bincount(cell, minlength=size)
    ok = n >= min_count

    def mean(weights: np.ndarray) -> np.ndarray:
        total = np.bincount(cell, weights=weights, minlength=size)
        return np.divide(total, n, out=np.full(size, np.nan), where=ok)

    labels_a, labels_b = [*ba.labels, "missing"], [*bb.labels, "missing"]
    table = pd.DataFrame({
        "a_bin": np.repeat(labels_a, kb + 1),
        "b_bin": np.tile(labels_b, ka + 1),
        "n": n,
        "shap_a": mean(shap_a),
        "shap_b": mean(shap_b),
        "shap_ab": mean(shap_a + shap_b),
        "mean_raw": mean(raw),
        "mean_risk": mean(risk),
    })
    table = table[n > 0].reset_index(drop=True)
    table.attrs.update(a=a, b=b)
    return table


def cohort_explanation(
    contrib: np.ndarray,
    feature_names: Sequence[str],
    in_cohort: np.ndarray | pd.Series,
    baseline: np.ndarray | pd.Series,
    *,
    X: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Why a cohort scores differently: mean contributions in the cohort against a baseline.

    The differences add up to the gap in mean raw score (log-odds) between the
    two groups, so the top rows are the features that explain most of it.

    Parameters
    ----------
    contrib : numpy.ndarray of shape (n_users, n_features)
        From :func:`contributions`.
    feature_names : sequence of str
        Column names of ``contrib``.
    in_cohort, baseline : boolean array-like of shape (n_users,)
        The cohort and the users it is compared with (e.g. everyone else, or
        last month's signups). They may overlap.
    X : pandas.DataFrame, optional
        The explained rows; when given, the mean value of every numeric
        feature in both groups is added.

    Returns
    -------
    pandas.DataFrame
        ``feature``, ``mean_shap_cohort``, ``mean_shap_baseline``,
        ``difference`` (cohort minus baseline), and with ``X``
        ``mean_value_cohort``, ``mean_value_baseline``; sorted by
        ``|difference|``, largest first (ties keep the feature order).

    Raises
    ------
    ValueError
        If a mask is not boolean of the right length or selects nobody.
    """
    owner = "cohort_explanation"
    names = list(feature_names)
    arr = _check_contrib(contrib, len(names), owner)
    cohort = _mask(in_cohort, arr.shape[0], "in_cohort", owner)
    base = _mask(baseline, arr.shape[0], "baseline", owner)
    mean_c = arr[cohort].mean(axis=0, dtype=np.float64)
    mean_b = arr[base].mean(axis=0, dtype=np.float64)
    table = pd.DataFrame({"feature": names, "mean_shap_cohort": mean_c, "mean_shap_baseline": mean_b,
                          "difference": mean_c - mean_b})
    if X is not None:
        if len(X) != arr.shape[0]:
            raise _error(owner, "X", f"a frame with {arr.shape[0]} rows", f"{len(X)} rows")
        numeric = [n for n in names if n in X.columns and pd.api.types.is_numeric_dtype(X[n].dtype)
                   and not isinstance(X[n].dtype, pd.CategoricalDtype)]
        values = X[numeric].to_numpy(dtype=np.float64, na_value=np.nan)
        for column, rows in (("mean_value_cohort", cohort), ("mean_value_baseline", base)):
            # Mean of the known values; NaN for a feature no user of the group has (np.nanmean would warn).
            part = values[rows]
            known = (~np.isnan(part)).sum(axis=0)
            mean = np.divide(np.nansum(part, axis=0), known, out=np.full(len(numeric), np.nan), where=known > 0)
            table[column] = pd.Series(mean, index=numeric).reindex(names).to_numpy()
    order = np.argsort(-np.abs(table["difference"].to_numpy()), kind="stable")
    return table.iloc[order].reset_index(drop=True)


# --------------------------------------------------------------------------- plots


def _numeric_frame(X: pd.DataFrame, names: list[str]) -> np.ndarray:
    """Feature values as floats for colouring: categories become their codes, missing NaN."""
    cols = []
    for name in names:
        s = X[name]
        if isinstance(s.dtype, pd.CategoricalDtype):
            codes = s.cat.codes.to_numpy().astype(np.float64)
            cols.append(np.where(codes < 0, np.nan, codes))
        elif pd.api.types.is_numeric_dtype(s.dtype):
            cols.append(s.to_numpy(dtype=np.float64, na_value=np.nan))
        else:
            codes = pd.factorize(s)[0].astype(np.float64)
            cols.append(np.where(codes < 0, np.nan, codes))
    return np.column_stack(cols) if cols else np.empty((len(X), 0))


def plot_beeswarm(
    contrib: np.ndarray,
    X: pd.DataFrame,
    *,
    base_value: float = 0.0,
    feature_names: Sequence[str] | None = None,
    max_display: int = 15,
    max_points: int = 5_000,
    random_state: int = 0,
) -> Figure:
    """SHAP beeswarm of the native contributions, drawn by :func:`shap.plots.beeswarm`.

    Parameters
    ----------
    contrib : numpy.ndarray of shape (n_users, n_features)
        From :func:`contributions`.
    X : pandas.DataFrame
        The explained rows (colours the points by feature value; categorical
        features are coloured by category code).
    base_value : float, default=0.0
        The base value from :func:`contributions`.
    feature_names : sequence of str, optional
        Column names of ``contrib``; defaults to ``X.columns``.
    max_display : int, default=15
        Features shown; the rest are summed into one row.
    max_points : int, default=5_000
        Users drawn, sampled uniformly without replacement (a million points
        would take minutes and show nothing more).
    random_state : int, default=0
        Seed of that sample.

    Returns
    -------
    matplotlib.figure.Figure
        Not registered with pyplot; save it with ``fig.savefig``.
    """
    import shap
    from matplotlib.figure import Figure

    names = list(X.columns if feature_names is None else feature_names)
    arr = _check_contrib(contrib, len(names), "plot_beeswarm")
    rows = np.arange(arr.shape[0])
    if rows.size > max_points:
        rows = np.sort(np.random.default_rng(random_state).choice(rows, max_points, replace=False))
    explanation = shap.Explanation(
        values=np.asarray(arr[rows], dtype=np.float64),
        base_values=np.full(rows.size, float(base_value)),
        data=_numeric_frame(X.iloc[rows], names),
        feature_names=names,
    )
    n_shown = min(max_display, len(names))
    fig = Figure(figsize=(8, 0.4 * n_shown + 1.5))
    ax = fig.add_subplot()
    shap.plots.beeswarm(explanation, max_display=max_display, ax=ax, show=False, plot_size=None)
    ax.set_xlabel("contribution to churn risk (log-odds)")
    fig.tight_layout()
    return fig


def plot_dependence(table: pd.DataFrame, *, feature: str = "") -> Figure:
    """Plot a :func:`dependence` table: mean contribution per value bin, marker area by users.

    Parameters
    ----------
    table : pandas.DataFrame
        The output of :func:`dependence`.
    feature : str, optional
        Name for the x axis.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    numeric = table["value_mean"].notna()
    x = table["value_mean"].where(numeric, pd.Series(np.arange(len(table)), index=table.index))
    size = 20 + 200 * table["n"] / max(int(table["n"].max()), 1)
    ax.plot(x, table["shap_mean"], color="#4477aa", lw=1, zorder=1)
    ax.scatter(x, table["shap_mean"], s=size, color="#4477aa", zorder=2)
    ax.axhline(0, color="#999999", lw=0.8)
    if not numeric.all():
        ax.set_xticks(x, table["bin"], rotation=45, ha="right")
    ax.set_xlabel(feature or "feature value (bin mean)")
    ax.set_ylabel("mean contribution (log-odds)")
    fig.tight_layout()
    return fig


def plot_interaction(table: pd.DataFrame, *, value: str = "shap_a") -> Figure:
    """Heatmap of an :func:`interaction_table`: bins of ``a`` down, bins of ``b`` across.

    Parameters
    ----------
    table : pandas.DataFrame
        The output of :func:`interaction_table`.
    value : str, default="shap_a"
        The column shown: ``shap_a``, ``shap_b``, ``shap_ab``, ``mean_raw`` or
        ``mean_risk``.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If ``value`` is not a column of the table.
    """
    from matplotlib.figure import Figure

    if value not in table.columns or value in ("a_bin", "b_bin", "n"):
        raise _error("plot_interaction", "value", "shap_a, shap_b, shap_ab, mean_raw or mean_risk", value)
    order_a = list(dict.fromkeys(table["a_bin"]))
    order_b = list(dict.fromkeys(table["b_bin"]))
    grid = table.pivot(index="a_bin", columns="b_bin", values=value).reindex(index=order_a, columns=order_b)
    values = grid.to_numpy(dtype=np.float64)
    fig = Figure(figsize=(1.0 * len(order_b) + 3, 0.5 * len(order_a) + 2))
    ax = fig.add_subplot()
    diverging = value != "mean_risk"
    span = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
    image = ax.imshow(values, aspect="auto", cmap="RdBu_r" if diverging else "viridis",
                      vmin=-span if diverging else None, vmax=span if diverging else None)
    ax.set_xticks(np.arange(len(order_b)), order_b, rotation=45, ha="right")
    ax.set_yticks(np.arange(len(order_a)), order_a)
    ax.set_xlabel(table.attrs.get("b", "b"))
    ax.set_ylabel(table.attrs.get("a", "a"))
    fig.colorbar(image, ax=ax, label=value)
    fig.tight_layout()
    return fig
