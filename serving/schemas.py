"""Request and response bodies of the scoring API, named by role."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

__all__ = [
    "HealthResponse",
    "ModelInfo",
    "ModelResponse",
    "ReloadResponse",
    "ScoreItem",
    "ScoreRequest",
    "ScoreResponse",
    "SnapshotInfo",
]

UserId = StrictInt | StrictStr
# A feature value as JSON gives it: numbers, text for categorical features, null for missing.
FeatureValue = StrictInt | StrictFloat | StrictStr | None
Segment = Literal["persuadable", "sure_thing", "lost_cause", "sleeping_dog"]


class ScoreRequest(BaseModel):
    """Either ``user_ids`` (looked up in the latest nightly snapshot) or ``rows`` (feature rows)."""

    user_ids: Annotated[list[UserId], Field(min_length=1)] | None = None
    rows: Annotated[list[dict[str, FeatureValue]], Field(min_length=1)] | None = None

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"user_ids": [17, 42]},
                     {"rows": [{"user_id": 17, "days_since_last_activity": 3.5, "platform": "ios"}]}]})

    @model_validator(mode="after")
    def _one_kind(self) -> ScoreRequest:
        if (self.user_ids is None) == (self.rows is None):
            raise ValueError("give exactly one of `user_ids` (ids in the latest snapshot) "
                             "or `rows` (feature rows, each with a user_id)")
        for i, row in enumerate(self.rows or ()):
            uid = row.get("user_id")
            if uid is None:
                raise ValueError(f"rows[{i}] has no user_id")
            # A number with a fraction, NaN or Infinity is no id: refused here rather than met in scoring.
            if not isinstance(uid, (int, str)) or (isinstance(uid, str) and not uid.strip()):
                raise ValueError(f"rows[{i}].user_id must be an integer or a non-empty string, got {uid!r}")
        return self

    @property
    def size(self) -> int:
        """Users asked for."""
        return len(self.user_ids if self.user_ids is not None else self.rows)


class ScoreItem(BaseModel):
    """One user's scores; the uplift fields are null when no uplift model is served."""

    user_id: UserId
    p_churn: float
    uplift: float | None = None
    p_return_if_contacted: float | None = None
    p_return_if_not: float | None = None
    segment: Segment | None = None
    p_churn_horizons: dict[str, float | None] = Field(
        default_factory=dict, description="probability of churning within each configured horizon "
        "(`p_churn_<h>d`, monotone in h; empty when the model has no horizons)")
    uplift_by_channel: dict[str, float] | None = Field(
        None, description="multi-channel models: each channel's expected uplift (return probability points / 100)")
    channel: str | None = Field(
        None, description="multi-channel models: the channel with the largest expected gain net of its cost "
                          "(the nightly list's costs), null if none pays or every channel would put the user off")
    reasons: list[str] = Field(default_factory=list, description="what pushes churn risk up, strongest first")


class ScoreResponse(BaseModel):
    """Scores in request order; ids not in the snapshot are listed in ``unknown_ids``."""

    as_of: str | None = Field(description="instant of the snapshot the features are from (null for rows)")
    models: dict[str, str] = Field(description="registered model name -> version")
    scores: list[ScoreItem]
    unknown_ids: list[UserId] = Field(default_factory=list)


class ModelInfo(BaseModel):
    """A served registered model version."""

    name: str
    kind: Literal["churn", "uplift"]
    version: str
    alias: str
    features: int


class SnapshotInfo(BaseModel):
    """The nightly feature snapshot ids are looked up in."""

    date: str
    as_of: str | None
    folder: str
    users: int
    scores: Literal["nightly", "live"] = Field(
        description="nightly: the list's scores.parquet (same model versions); live: scored per request")
    reasons_cached: int = Field(
        description="users whose reasons are in memory (the recall list's, then everyone as the background warm-up proceeds)")


class ModelResponse(BaseModel):
    """What the service is serving now."""

    models: list[ModelInfo]
    uplift: str = Field(description="'served', or why only churn risk is served")
    snapshot: SnapshotInfo | None
    loaded_at: str
    problems: list[str]


class HealthResponse(BaseModel):
    """Liveness plus what is loaded (no details: ``GET /model`` has them)."""

    status: Literal["ok", "degraded", "unavailable"]
    models_loaded: bool
    uplift_loaded: bool
    snapshot_loaded: bool


class ReloadResponse(BaseModel):
    """The versions and snapshot before and after a reload."""

    previous: dict[str, str]
    current: dict[str, str]
    snapshot: SnapshotInfo | None
