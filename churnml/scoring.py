"""Scoring: one :class:`Scorer` facade for the nightly batch and the API, and the recall list.

:class:`Scorer` loads the registered champion models once and turns feature
rows (built by the same code as training) into churn risk, outcome
probabilities with and without a recall message, uplift, segment and plain
reasons. :func:`recall_list` turns scored users into the ranked list the
recall team acts on: eligibility, exclusions, sleeping dogs never contacted,
priority by expected incremental returns, a budget, and a deterministic
random holdout. Before any randomised campaign there is no uplift model: the
list is then ranked by churn risk (x value), with the same eligibility,
exclusions, budget and holdout, so that its contacts and holdouts are the
first randomised campaign the uplift model will learn from (issue 14, item 6).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from churnml.config import ScoreConfig, Settings
from churnml.exceptions import ConfigError, ModelNotFoundError, SchemaMismatchError

__all__ = ["RANKED_BY_RISK", "RANKED_BY_UPLIFT", "Scorer", "eligible_users", "holdout_draw", "ranked_by", "recall_list",
           "user_value"]

#: How a list was ranked, as the manifest and the summary say it.
RANKED_BY_UPLIFT = "uplift"
RANKED_BY_RISK = "churn_risk"

REASON_COLUMNS = ("reason_1", "reason_2", "reason_3")


@dataclass
class Scorer:
    """Churn and uplift models plus the wording of reasons, loaded once, used by batch and API.

    Parameters
    ----------
    churn : ChurnModel
    uplift : UpliftModel, optional
        Without it, only churn risk and its reasons are scored.
    versions : dict
        Registered name -> version, for manifests and ``GET /model``.
    costs : dict, optional
        Cost of a message per channel (multi-channel models), for the
        ``channel`` each user is best messaged by; only these channels are
        chosen. Empty: every channel, free.
    value_per_user : float
        Value of one return, in the unit of the costs.
    """

    churn: object
    uplift: object | None = None
    versions: dict = field(default_factory=dict)
    costs: dict = field(default_factory=dict)
    value_per_user: float = 1.0

    @property
    def channels(self) -> list[str] | None:
        """The channels of a multi-channel uplift model (one uplift each); None otherwise."""
        return None if self.uplift is None else getattr(self.uplift, "channels", None)

    @classmethod
    def from_registry(cls, *, churn_model: str = "churn-risk", uplift_model: str | None = "recall-uplift",
                      alias: str = "champion", settings: Settings | None = None,
                      uplift_optional: bool = False) -> Scorer:
        """Load ``name@alias`` for both models from the MLflow registry.

        Parameters
        ----------
        uplift_optional : bool
            Load the churn model alone when ``uplift_model`` has no version
            with ``alias`` (instead of raising).

        Raises
        ------
        ModelNotFoundError
            If a requested model has no version with ``alias``.
        """
        from churnml import tracking

        churn, ref = tracking.load_model(churn_model, alias, settings)
        versions = {churn_model: ref.version}
        uplift = None
        if uplift_model:
            try:
                uplift, uref = tracking.load_model(uplift_model, alias, settings)
                versions[uplift_model] = uref.version
            except ModelNotFoundError:
                if not uplift_optional:
                    raise
        if getattr(churn, "kind", None) != "churn":
            raise ModelNotFoundError(f"{churn_model}@{alias} is not a churn model")
        return cls(churn, uplift, versions)

    @property
    def event_types(self) -> list[str] | None:
        """The event types the churn model's features were built with."""
        return self.churn.metadata.get("event_types")

    def check_schema(self, columns) -> None:
        """Raise :class:`SchemaMismatchError` if feature columns a model needs are missing."""
        need = {s.name for s in self.churn.features}
        if self.uplift is not None:
            need |= set(self.uplift.feature_names)
        missing = sorted(need - set(columns))
        if missing:
            raise SchemaMismatchError(
                f"the features lack {len(missing)} column(s) the models were trained on: "
                f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}; were the models trained on "
                "a dataset config with other event types or windows?")

    def score(self, features: pd.DataFrame, *, reasons: int = 3, where: str = "scoring data") -> pd.DataFrame:
        """Score feature rows (one per user).

        Returns
        -------
        DataFrame
            ``user_id``, ``p_churn``, ``p_churn_<h>d`` per horizon when the
            churn model has them, then with an uplift model
            ``p_return_if_contacted``, ``p_return_if_not``, ``uplift`` and
            ``segment``, then ``reason_1``.. (what pushes churn risk up, in
            plain words). Same row order as ``features``. A multi-channel
            uplift model adds ``uplift_<channel>`` per channel and ``channel``,
            the one with the largest expected net value (``value_per_user *
            uplift - cost``) if it is positive and its uplift too (else
            empty); ``uplift`` and the probabilities are then that channel's,
            or the best channel's when none pays.
        """
        self.check_schema(features.columns)
        out = pd.DataFrame({"user_id": features["user_id"].to_numpy()}, index=features.index)
        X = self.churn.matrix(features, where=where)
        out["p_churn"] = self.churn.calibrator.apply(self.churn.raw_score_matrix(X))
        if getattr(self.churn, "horizons", None) is not None:  # p_churn_<h>d, monotone in h
            out = out.join(self.churn.horizons.predict_matrix(X))
        if self.uplift is not None:
            # Both models usually read the same features: build their input matrix once.
            same = self.uplift.features == self.churn.features
            up = self.uplift.predict_matrix(X) if same else self.uplift.predict_frame(features, where=where)
            out["p_return_if_contacted"] = up["p_treated"].to_numpy()
            out["p_return_if_not"] = up["p_control"].to_numpy()
            out["uplift"] = up["uplift"].to_numpy()
            out["segment"] = up["segment"].to_numpy()
            if self.channels is not None:
                out = _channel_scores(out, up, self.channels, self.costs, self.value_per_user)
        if reasons:
            out = out.join(self._reasons(X, reasons))
        return out

    def reasons(self, features: pd.DataFrame, *, top: int = 3, where: str = "scoring data") -> pd.DataFrame:
        """Plain-language reasons pushing each user's churn risk up (``reason_1``..), same index.

        Exact TreeSHAP: about 37 s for a million users on 2 cores with a
        419-tree model (:func:`churnml.explain.contributions`). The nightly job
        asks for the users on its list; the API words everyone's in the background.
        """
        return self._reasons(self.churn.matrix(features, where=where), top)

    def _reasons(self, X: pd.DataFrame, top: int) -> pd.DataFrame:
        from churnml.explain import reason_codes

        glossary = self.churn.metadata.get("glossary", {})
        codes = reason_codes(self.churn.booster, X, glossary, top=top, direction="up")
        return codes[[f"reason_{i}" for i in range(1, top + 1)]]


def _channel_scores(out: pd.DataFrame, up: pd.DataFrame, channels: list[str], costs: dict,
                    value: float) -> pd.DataFrame:
    """Add each channel's uplift and the channel with the largest positive expected net value."""
    from churnml.assignment import NONE, assign_channels
    from churnml.models.uplift_store import uplift_column

    per = up[[uplift_column(c) for c in channels]].to_numpy()
    cost = np.array([float(costs.get(c, 0.0)) for c in channels])
    net = value * per - cost
    if costs:  # only the channels priced (the list's configured ones) may be chosen
        net[:, [c not in costs for c in channels]] = np.nan
    best = assign_channels(net, cost, uplift=per)
    chosen = np.where(best == NONE, None, np.asarray(channels, dtype=object)[np.maximum(best, 0)])
    rows = np.flatnonzero(best != NONE)
    # The chosen channel's uplift and return probability (the best channel's, as predicted, when none pays).
    uplift = up["uplift"].to_numpy().copy()
    uplift[rows] = per[rows, best[rows]]
    p_treated = out["p_return_if_contacted"].to_numpy().copy()
    p_treated[rows] = out["p_return_if_not"].to_numpy()[rows] + uplift[rows]
    return out.assign(p_return_if_contacted=p_treated, uplift=uplift,
                      **{uplift_column(c): per[:, k] for k, c in enumerate(channels)}, channel=chosen)


def holdout_draw(user_ids: pd.Series, campaign_id: str) -> np.ndarray:
    """A uniform number in [0, 1) per user, fixed by the user id and the campaign id.

    The same user gets the same draw every time the campaign's list is built,
    and independent draws across campaigns (SHA-256 of ``campaign_id:user_id``).
    """
    def draw(uid) -> float:
        h = hashlib.sha256(f"{campaign_id}:{uid}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64

    return np.fromiter((draw(u) for u in user_ids.astype(str)), dtype="float64", count=len(user_ids))


def ranked_by(scored: pd.DataFrame) -> str:
    """How :func:`recall_list` ranks these scores: by uplift when they have it, else by churn risk."""
    return RANKED_BY_UPLIFT if "uplift" in scored else RANKED_BY_RISK


def user_value(features: pd.DataFrame, cfg: ScoreConfig) -> np.ndarray:
    """Each user's value: the ``value_column`` of the feature rows, else ``value_per_user``.

    Missing and negative values count 0 (a user with nothing at stake is worth no contact).

    Raises
    ------
    ConfigError
        If ``value_column`` is not a numeric column of the feature rows.
    """
    if cfg.value_column is None:
        return np.full(len(features), cfg.value_per_user, dtype="float64")
    col = cfg.value_column
    if col not in features or not pd.api.types.is_numeric_dtype(features[col]):
        numeric = [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])
                   and ("sum_" in c or "amount" in c or "value" in c or "spend" in c)]
        what = "is not numeric" if col in features else "is not a feature column"
        raise ConfigError(f"value_column {col!r} {what}; per-user value columns of these features: "
                          f"{', '.join(numeric[:8]) or 'none (configure sum_columns in the dataset config)'}")
    return features[col].astype("float64").fillna(0.0).clip(lower=0.0).to_numpy()


def eligible_users(scored: pd.DataFrame, features: pd.DataFrame, cfg: ScoreConfig,
                   opt_out: set | None = None) -> tuple[np.ndarray, dict, dict]:
    """Who may be on the list: lapsed or at-risk users, less the recently contacted and the opted out.

    Returns the mask of users kept, the counts (scored, eligible, at risk,
    lapsed) and the users excluded by each rule.
    """
    f = features
    inactive = f["days_since_last_activity"].to_numpy()
    lapsed = (inactive >= cfg.eligibility.lapsed_min_days) & (inactive <= cfg.eligibility.lapsed_max_days)
    at_risk = (inactive < cfg.eligibility.lapsed_min_days) & (scored["p_churn"].to_numpy() >= cfg.eligibility.at_risk_min_p_churn)
    eligible = lapsed | at_risk
    counts = {"scored": len(scored), "eligible": int(eligible.sum()),
              "eligible_at_risk": int(at_risk.sum()), "eligible_lapsed": int(lapsed.sum())}
    excluded = {}
    keep = eligible.copy()
    if "days_since_last_contact" in f:
        recent = (f["days_since_last_contact"].to_numpy() < cfg.exclusions.contacted_within_days) & keep
        excluded["contacted_recently"] = int(recent.sum())
        keep &= ~recent
    if opt_out:
        out = f["user_id"].isin(opt_out).to_numpy() & keep
        excluded["opted_out"] = int(out.sum())
        keep &= ~out
    return keep, counts, excluded


def recall_list(scored: pd.DataFrame, features: pd.DataFrame, cfg: ScoreConfig, *, campaign_id: str,
                opt_out: set | None = None, channels: list[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """Rank scored users by expected incremental returns (or churn risk) and cut the list to the budget.

    With an uplift model's scores, priority is ``uplift x value - contact_cost``
    and sleeping dogs and users without an expected gain are left out. Without
    them (no campaign has been run yet), priority is ``p_churn x value``: the
    value at risk. Either way the same eligibility, exclusions, budget and
    deterministic random holdout apply. With a multi-channel uplift model
    (``channels`` given) and uplift ranking, each user gets at most one
    channel: :func:`churnml.recall_channels.channel_list`.

    Parameters
    ----------
    scored : DataFrame
        :meth:`Scorer.score` output (``p_churn``; ``uplift`` and ``segment``
        when an uplift model scored).
    features : DataFrame
        The feature rows scored (``days_since_last_activity``,
        ``days_since_last_contact``, ``user_id``, the ``value_column``), same index.
    cfg : ScoreConfig
    campaign_id : str
        Seeds the holdout draw.
    opt_out : set, optional
        User ids never to contact.
    channels : list of str, optional
        The channels of a multi-channel uplift model.

    Returns
    -------
    list : DataFrame
        One row per selected user, by rank: ``rank``, ``user_id``, ``group``
        (``contact`` or ``holdout``), ``priority``, probabilities, ``uplift``
        and ``segment`` (uplift ranking), ``value`` (with ``value_column``),
        ``days_since_last_activity`` and reasons.
    counts : dict
        ``ranked_by`` (``uplift`` or ``churn_risk``), how many users were
        scored, eligible, excluded (by reason), selected, contacted and held
        out; by uplift also the expected incremental returns and the segments.

    Raises
    ------
    SchemaMismatchError
        ``cfg.ranking`` is ``uplift`` and the scores have no uplift.
    """
    by = ranked_by(scored)
    if cfg.ranking == "uplift" and by != RANKED_BY_UPLIFT:
        raise SchemaMismatchError("ranking: uplift needs an uplift model's scores")
    if cfg.ranking == "risk":
        by = RANKED_BY_RISK
    keep, counts, excluded = eligible_users(scored, features, cfg, opt_out)
    counts = {"ranked_by": by, **counts}
    value = user_value(features, cfg)
    if channels is not None and by == RANKED_BY_UPLIFT:
        from churnml.recall_channels import channel_list

        return channel_list(scored, features, cfg, channels, campaign_id=campaign_id, keep=keep, counts=counts,
                            excluded=excluded, value=value)
    inactive = features["days_since_last_activity"].to_numpy()
    if by == RANKED_BY_UPLIFT:
        dogs = (scored["segment"].to_numpy() == "sleeping_dog") & keep
        excluded["sleeping_dog"] = int(dogs.sum())
        keep &= ~dogs
        priority = scored["uplift"].to_numpy() * value - cfg.contact_cost
        unprofitable = (priority <= 0) & keep
        excluded["no_expected_gain"] = int(unprofitable.sum())
    else:
        # Without an estimate of what a contact changes there is no expected gain to weigh the cost
        # against: rank by the value at risk, leaving out only users with nothing at stake.
        priority = scored["p_churn"].to_numpy() * value
        unprofitable = (priority <= 0) & keep
        excluded["no_value_at_risk"] = int(unprofitable.sum())
    keep &= ~unprofitable
    counts["excluded"] = excluded
    cand = scored[keep]
    if by == RANKED_BY_RISK:
        cand = cand.drop(columns=[c for c in cand if c in ("uplift", "segment", "p_return_if_contacted",
                                                           "p_return_if_not", "channel") or c.startswith("uplift_")])
    cand = cand.assign(priority=priority[keep], days_since_last_activity=inactive[keep])
    if cfg.value_column is not None:
        cand["value"] = value[keep]
    # Highest priority first; ties broken by user id so the order never depends on input order.
    cand = cand.sort_values(["priority", "user_id"], ascending=[False, True], kind="stable")
    if cfg.budget.max_contacts is not None:
        cand = cand.head(cfg.budget.max_contacts)
    draws = holdout_draw(cand["user_id"], campaign_id)
    cand.insert(0, "group", np.where(draws < cfg.holdout_share, "holdout", "contact"))
    cand.insert(0, "user_id", cand.pop("user_id"))
    cand.insert(0, "rank", np.arange(1, len(cand) + 1))
    cand["campaign_id"] = campaign_id
    if cfg.channel:
        cand["channel"] = cfg.channel
    contact = cand["group"] == "contact"
    counts |= {"selected": len(cand), "contact": int(contact.sum()), "holdout": int((~contact).sum())}
    if by == RANKED_BY_UPLIFT:
        counts |= {"expected_incremental_returns": float(cand.loc[contact, "uplift"].sum()),
                   "segments": {k: int(v) for k, v in cand["segment"].value_counts().sort_index().items()}}
    else:
        counts["expected_churners_contacted"] = float(cand.loc[contact, "p_churn"].sum())
    return cand.reset_index(drop=True), counts
