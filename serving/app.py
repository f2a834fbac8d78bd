"""The online scoring API: FastAPI routes over :class:`churnml.scoring.Scorer`.

Run it with ``uvicorn --factory serving.app:create_app`` (see ``serving/README.md``).
The champion models and the newest nightly snapshot are loaded once, at startup,
into one immutable :class:`Service`; ``POST /reload`` builds a new one and swaps
it in, so a request always sees one consistent set of models and features.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import logging
import math
import re
import secrets
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from churnml.config import Settings
from churnml.exceptions import ModelNotFoundError, SchemaMismatchError
from churnml.scoring import Scorer
from serving.schemas import (
    HealthResponse,
    ModelInfo,
    ModelResponse,
    ReloadResponse,
    ScoreRequest,
    ScoreResponse,
    SnapshotInfo,
)

__all__ = ["ServeSettings", "Service", "create_app", "load_service"]

log = logging.getLogger("churnml.serving")

# The files of a nightly list folder (churnml.batch; not imported from there to keep ibis/DuckDB out).
FEATURES_FILE, SCORES_FILE, LIST_FILE = "features.parquet", "scores.parquet", "recall_list.parquet"
MANIFEST_FILE = "manifest.json"
# Rows rescored at load to check that a nightly scores.parquet matches the served models.
_PROBE_ROWS = 64
_PLACEHOLDER = re.compile(r"change.?(me|this)|placeholder|secret|password|example|your.?token|dummy|"
                          r"^(x+|\*+|0+|1+|12345.*|test|token|default|none|null|todo)$", re.IGNORECASE)


class ServeSettings(BaseSettings):
    """Settings of the scoring API, from the environment (prefix ``CHURNML_SERVE_``) or ``.env``.

    Parameters
    ----------
    lists_dir : path
        Folder of the nightly lists (``<lists_dir>/<YYYY-MM-DD>/features.parquet``);
        ids are looked up in the newest one.
    churn_model, uplift_model, alias : str
        Registered models served (``uplift_model`` empty: churn risk only).
    max_batch : int
        Most users per ``POST /score``.
    api_token : SecretStr, optional
        Bearer token every route but ``/health`` requires when set; placeholders
        and tokens under 16 characters are refused.
    reasons : int
        Reasons per user.
    runtime : churnml Settings, optional
        The MLflow store etc.; default ``churnml.config.get_settings()`` (``CHURNML_*``).
    """

    # hide_input_in_errors: a refused token must not end up in the startup log.
    model_config = SettingsConfigDict(env_prefix="CHURNML_SERVE_", env_file=".env", extra="ignore",
                                      hide_input_in_errors=True)

    lists_dir: Path
    churn_model: str = "churn-risk"
    uplift_model: str | None = "recall-uplift"
    alias: str = "champion"
    max_batch: Annotated[int, Field(gt=0, le=100_000)] = 1000
    api_token: SecretStr | None = None
    reasons: Annotated[int, Field(ge=0, le=10)] = 3
    runtime: Settings | None = None

    @field_validator("api_token")
    @classmethod
    def _real_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        token = v.get_secret_value().strip()
        if len(token) < 16 or _PLACEHOLDER.search(token):
            got = "a placeholder value" if _PLACEHOLDER.search(token) else f"{len(token)} characters"
            raise ValueError("The `api_token` parameter of `ServeSettings` must be `a random secret of at "
                             f"least 16 characters (e.g. openssl rand -hex 32)`. Got `{got}` instead.")
        return v


# --------------------------------------------------------------------------- the served state


@dataclass(frozen=True)
class Snapshot:
    """The newest nightly list: its feature rows indexed by user id, and its scores if they match the models.

    ``reasons`` caches each user's reasons: the nightly job words them (exact TreeSHAP) for the users
    on the recall list only, so those are read from the list and the API computes the others with
    :meth:`Scorer.reasons` the first time each is asked for.
    """

    date: dt.date
    folder: Path
    as_of: str | None
    features: pd.DataFrame
    positions: dict[str, int]
    scores: dict[str, list] | None = None
    reasons: dict[int, list[str]] = field(default_factory=dict)

    def info(self) -> SnapshotInfo:
        return SnapshotInfo(date=self.date.isoformat(), as_of=self.as_of, folder=str(self.folder),
                            users=len(self.positions), scores="live" if self.scores is None else "nightly",
                            reasons_cached=len(self.reasons))


@dataclass(frozen=True)
class Service:
    """Everything a request reads; replaced whole on reload (only the snapshot's reason cache fills in)."""

    scorer: Scorer | None
    snapshot: Snapshot | None
    problems: tuple[str, ...] = ()
    uplift_note: str = "served"
    loaded_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def score_ids(self, user_ids: list, reasons: int) -> tuple[list[dict], list]:
        """Scores of the ids found in the snapshot (request order) and the ids it lacks."""
        snap = self.snapshot
        found = [snap.positions.get(str(u)) for u in user_ids]
        rows = [p for p in found if p is not None]
        unknown = [u for u, p in zip(user_ids, found, strict=True) if p is None]
        if not rows:
            return [], unknown
        if snap.scores is None:
            scored = self.scorer.score(snap.features.iloc[rows], reasons=reasons,
                                       where=f"features of {snap.date}")
            return _records(_columns(scored, reasons), range(len(rows))), unknown
        items = _records(snap.scores, rows)
        for item, texts in zip(items, self._reasons(rows, reasons), strict=True):
            item["reasons"] = texts
        return items, unknown

    def _reasons(self, rows: list[int], top: int) -> list[list[str]]:
        """Reasons of snapshot rows, computed for the rows not asked for before."""
        cache = self.snapshot.reasons
        new = [p for p in dict.fromkeys(rows) if p not in cache]
        if new and top:
            codes = self.scorer.reasons(self.snapshot.features.iloc[new], top=top,
                                        where=f"features of {self.snapshot.date}")
            # Concurrent requests may word the same user twice; both write the same list.
            cache.update(zip(new, _columns(codes, top, ())["reasons"], strict=True))
        return [cache.get(p, []) for p in rows]

    def score_rows(self, rows: list[dict], reasons: int) -> list[dict]:
        """Scores of feature rows sent in the request."""
        for keys in {frozenset(r) for r in rows}:
            try:
                self.scorer.check_schema(keys)
            except SchemaMismatchError as exc:
                bad = [i for i, r in enumerate(rows) if frozenset(r) == keys]
                raise SchemaMismatchError(f"rows {_span(bad)}: {exc}") from None
        scored = self.scorer.score(pd.DataFrame.from_records(rows), reasons=reasons, where="request rows")
        return _records(_columns(scored, reasons), range(len(rows)))


def _span(rows: list[int]) -> str:
    return ", ".join(map(str, rows[:10])) + (" ..." if len(rows) > 10 else "")


_FIELDS = ("user_id", "p_churn", "uplift", "p_return_if_contacted", "p_return_if_not", "segment")


def _columns(scored: pd.DataFrame, reasons: int, fields: tuple[str, ...] = _FIELDS) -> dict[str, list]:
    """:meth:`Scorer.score` output as plain Python lists per response field (NaN -> None)."""
    def values(name: str) -> list:
        if name not in scored:
            return [None] * len(scored)
        return [None if isinstance(v, float) and math.isnan(v) else v for v in scored[name].tolist()]

    cols = {k: values(k) for k in fields}
    texts = [values(f"reason_{i}") for i in range(1, reasons + 1)]
    cols["reasons"] = [[t for t in row if t is not None] for row in zip(*texts, strict=True)] if texts \
        else [[] for _ in range(len(scored))]
    return cols


def _records(cols: dict[str, list], rows) -> list[dict]:
    return [{k: v[i] for k, v in cols.items()} for i in rows]


def _latest_folder(lists_dir: Path) -> tuple[dt.date, Path]:
    dates = []
    for child in lists_dir.iterdir() if lists_dir.is_dir() else ():
        try:
            day = dt.date.fromisoformat(child.name)
        except ValueError:
            continue  # temporary folders of a list being written, and anything else
        if (child / FEATURES_FILE).is_file():
            dates.append((day, child))
    if not dates:
        raise FileNotFoundError(f"no nightly list with {FEATURES_FILE} in {lists_dir} (run `churnml score`)")
    return max(dates)


def _nightly_scores(folder: Path, scorer: Scorer, features: pd.DataFrame, manifest: dict) -> dict[str, list] | None:
    """The list's scores (without reasons) if they come from the served model versions and match a
    rescored sample of rows; else None (score per request)."""
    versions = {k: str(v.get("version")) for k, v in manifest.get("models", {}).items()}
    path = folder / SCORES_FILE
    if versions != scorer.versions or not path.is_file():
        return None
    scores = pd.read_parquet(path)
    if len(scores) != len(features) or not scores["user_id"].equals(features["user_id"]):
        return None
    cols = _columns(scores, 0, _FIELDS)
    del cols["reasons"]
    probe = _columns(scorer.score(features.iloc[:_PROBE_ROWS], reasons=0), 0)
    for k, v in cols.items():
        if any(a != b and not (isinstance(a, float) and math.isclose(a, b, rel_tol=1e-9))
               for a, b in zip(probe[k], v[:_PROBE_ROWS], strict=True)):
            log.warning("%s does not match the served models on %s; scoring per request", path, k)
            return None
    return cols


def _listed_reasons(folder: Path, positions: dict[str, int], top: int) -> dict[int, list[str]]:
    """The reasons the nightly job wrote for the users on its recall list, by snapshot row."""
    path = folder / LIST_FILE
    need = [f"reason_{i}" for i in range(1, top + 1)]
    if not top or not path.is_file():
        return {}
    listed = pd.read_parquet(path)
    if not set(need) <= set(listed.columns):
        return {}
    # Reasons are chosen strongest first one at a time, so the first `top` of a longer list are the top.
    cols = _columns(listed, top, ("user_id",))
    return {positions[str(u)]: r for u, r in zip(cols["user_id"], cols["reasons"], strict=True)
            if str(u) in positions}


def _load_snapshot(lists_dir: Path, scorer: Scorer, reasons: int) -> Snapshot:
    day, folder = _latest_folder(lists_dir)
    features = pd.read_parquet(folder / FEATURES_FILE)
    scorer.check_schema(features.columns)
    manifest_path = folder / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    positions = {str(u): i for i, u in enumerate(features["user_id"].tolist())}
    scores = _nightly_scores(folder, scorer, features, manifest)
    # The list's reasons come from the same churn model version only when its scores do.
    cached = _listed_reasons(folder, positions, reasons) if scores is not None else {}
    return Snapshot(day, folder, manifest.get("as_of"), features, positions, scores, cached)


def _load_scorer(s: ServeSettings) -> tuple[Scorer, str]:
    common = {"churn_model": s.churn_model, "alias": s.alias, "settings": s.runtime}
    if not s.uplift_model:
        return Scorer.from_registry(uplift_model=None, **common), "no uplift model configured"
    try:
        return Scorer.from_registry(uplift_model=s.uplift_model, **common), "served"
    except ModelNotFoundError as exc:
        # Raises again if it is the churn model that is missing.
        return Scorer.from_registry(uplift_model=None, **common), f"churn risk only: {exc}"


def load_service(settings: ServeSettings, scorer: Scorer | None = None) -> Service:
    """Load the champion models (unless ``scorer`` is given) and the newest snapshot.

    Never raises: what could not be loaded is listed in ``Service.problems``.
    """
    problems, snapshot, note = [], None, "served"
    if scorer is not None and scorer.uplift is None:
        note = "churn risk only: the Scorer given has no uplift model"
    try:
        if scorer is None:
            scorer, note = _load_scorer(settings)
    # Anything (registry down, corrupt file) becomes a problem to report: the process keeps serving
    # what it has and can be fixed with POST /reload.
    except Exception as exc:  # noqa: BLE001
        problems.append(f"models: {exc}")
    if scorer is not None:
        try:
            snapshot = _load_snapshot(settings.lists_dir, scorer, settings.reasons)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"snapshot: {exc}")
    service = Service(scorer, snapshot, tuple(problems), note)
    log.info("serving %s, snapshot %s%s", scorer.versions if scorer else "no models",
             snapshot.date if snapshot else "none", f"; problems: {problems}" if problems else "")
    return service


# --------------------------------------------------------------------------- dependencies

_bearer = HTTPBearer(auto_error=False, description="CHURNML_SERVE_API_TOKEN, when set")
# The dependencies are `async def` because they never block: FastAPI would otherwise run each one in the
# thread pool, a hop per dependency per request.


async def _settings(request: Request) -> ServeSettings:
    return request.app.state.settings


SettingsDep = Annotated[ServeSettings, Depends(_settings)]


async def _authorize(settings: SettingsDep,
                     credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    expected = settings.api_token
    if expected is None:
        return
    if credentials is None or not secrets.compare_digest(
            credentials.credentials.encode(), expected.get_secret_value().encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token",
                            headers={"WWW-Authenticate": "Bearer"})


async def _service(request: Request) -> Service:
    return request.app.state.service


async def _ready(service: Annotated[Service, Depends(_service)]) -> Service:
    if service.scorer is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"no models loaded ({'; '.join(service.problems)}); fix and POST /reload")
    return service


ServiceDep = Annotated[Service, Depends(_service)]
ReadyService = Annotated[Service, Depends(_ready)]


async def _check_request(body: ScoreRequest, settings: SettingsDep, service: ReadyService) -> ScoreRequest:
    if body.size > settings.max_batch:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                            f"{body.size} users in one request; at most {settings.max_batch} "
                            "(CHURNML_SERVE_MAX_BATCH): split the batch")
    if body.user_ids is not None and service.snapshot is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"no snapshot to look ids up in ({'; '.join(service.problems)}); send rows")
    return body


CheckedRequest = Annotated[ScoreRequest, Depends(_check_request)]


# --------------------------------------------------------------------------- routes

public = APIRouter()
protected = APIRouter(dependencies=[Depends(_authorize)])


@public.get("/health")
async def health(service: ServiceDep) -> HealthResponse:
    """Liveness and what is loaded."""
    loaded = service.scorer is not None
    state = "ok" if loaded and service.snapshot and service.scorer.uplift else "degraded" if loaded \
        else "unavailable"
    return HealthResponse(status=state, models_loaded=loaded, snapshot_loaded=service.snapshot is not None,
                          uplift_loaded=loaded and service.scorer.uplift is not None)


@protected.post("/score")
def score(body: CheckedRequest, service: ReadyService, settings: SettingsDep) -> ScoreResponse:
    """Score users by id (newest nightly snapshot) or by feature rows."""
    if body.user_ids is not None:
        scores, unknown = service.score_ids(body.user_ids, settings.reasons)
        as_of = service.snapshot.as_of
    else:
        scores, unknown, as_of = service.score_rows(body.rows, settings.reasons), [], None
    return ScoreResponse(as_of=as_of, models=service.scorer.versions, scores=scores, unknown_ids=unknown)


@protected.get("/model")
def model(service: ReadyService, settings: SettingsDep) -> ModelResponse:
    """Served model versions, aliases, feature counts and the snapshot."""
    sc = service.scorer
    # Scorer.versions lists the churn model first, then the uplift model if there is one.
    served = zip(sc.versions.items(), (("churn", sc.churn), ("uplift", sc.uplift)), strict=False)
    models = [ModelInfo(name=name, kind=kind, version=version, alias=settings.alias, features=len(m.features))
              for (name, version), (kind, m) in served]
    return ModelResponse(models=models, uplift=service.uplift_note, loaded_at=service.loaded_at,
                         snapshot=service.snapshot.info() if service.snapshot else None,
                         problems=list(service.problems))


@protected.post("/reload")
def reload(request: Request, settings: SettingsDep) -> ReloadResponse:
    """Load the champion models and the newest snapshot; swap them in only if both load."""
    with request.app.state.reload_lock:
        old: Service = request.app.state.service
        new = load_service(settings)
        if new.problems:
            kept = old.scorer.versions if old.scorer else "nothing"
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                f"reload failed, still serving {kept}: {'; '.join(new.problems)}")
        request.app.state.service = new
        _freeze()
    return ReloadResponse(previous=old.scorer.versions if old.scorer else {}, current=new.scorer.versions,
                          snapshot=new.snapshot.info())


def _freeze() -> None:
    """Exclude the loaded models and snapshot from garbage collection.

    Full collections otherwise rescan them (and every imported module) about
    every 60 batch requests: 250-430 ms pauses on two shared cores.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _unprocessable(request: Request, exc: SchemaMismatchError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def create_app(settings: ServeSettings | None = None, scorer: Scorer | None = None) -> FastAPI:
    """Build the API; ``settings`` default to the environment, ``scorer`` to the registry champions."""
    settings = settings or ServeSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.service = await run_in_threadpool(load_service, settings, scorer)
        _freeze()
        yield
        gc.unfreeze()

    app = FastAPI(title="churnml scoring API", version="1", lifespan=lifespan)
    app.state.settings = settings
    app.state.reload_lock = threading.Lock()
    app.add_exception_handler(SchemaMismatchError, _unprocessable)
    app.include_router(public)
    app.include_router(protected)
    return app
