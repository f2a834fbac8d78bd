"""The online scoring API: FastAPI routes over :class:`churnml.scoring.Scorer`.

Run it with ``uvicorn --factory serving.app:create_app`` (see ``serving/README.md``).
The champion models and the newest nightly snapshot are loaded once, at startup,
into one immutable :class:`Service`; ``POST /reload`` builds a new one and swaps
it in, so a request always sees one consistent set of models and features.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import functools
import gc
import json
import logging
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field, SecretStr, ValidationError, field_validator
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
    max_body_bytes : int, optional
        Largest request body accepted (413 beyond it, before the body is
        read); default 8 KiB per user of ``max_batch`` (8 MB for 1,000; a
        feature row is about 2.5 KB of JSON).
    api_token : SecretStr, optional
        Bearer token every route but ``/health`` requires when set; placeholders
        and tokens under 16 characters are refused.
    reasons : int
        Reasons per user.
    warm_reasons : bool
        After loading, word every snapshot user's reasons in a background
        thread (about 40 s per million users on 2 cores), so id lookups read
        them from memory; until then a request computes its users' own.
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
    max_body_bytes: Annotated[int, Field(gt=0)] | None = None
    api_token: SecretStr | None = None
    reasons: Annotated[int, Field(ge=0, le=10)] = 3
    warm_reasons: bool = True
    runtime: Settings | None = None

    @field_validator("api_token")
    @classmethod
    def _real_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        token = v.get_secret_value().strip()
        if len(token) < 16 or _PLACEHOLDER.search(token) or len(set(token)) < 8:
            got = ("a placeholder value" if _PLACEHOLDER.search(token) else
                   f"{len(token)} characters" if len(token) < 16 else f"only {len(set(token))} distinct characters")
            raise ValueError(f"must be a random secret of at least 16 characters (e.g. `openssl rand -hex 32`); "
                             f"got {got}")
        return v

    @property
    def body_limit(self) -> int:
        """The largest request body accepted, in bytes."""
        return self.max_body_bytes or max(1 << 20, self.max_batch * 8192)

    def token_matches(self, token: str | None) -> bool:
        """Whether a request presenting ``token`` may pass (always, when no token is set)."""
        if self.api_token is None:
            return True
        return token is not None and secrets.compare_digest(token.encode(),
                                                            self.api_token.get_secret_value().encode())


# --------------------------------------------------------------------------- the served state


@dataclass(frozen=True)
class Snapshot:
    """The newest nightly list: its feature rows indexed by user id, and its scores if they match the models.

    ``reasons`` caches each user's reasons: the nightly job words them (exact TreeSHAP) for the users
    on the recall list only, so those are read from the list; a background thread words everyone
    else's after loading (:meth:`Service.warm_reasons`), and a request for a user it has not reached
    yet computes them with :meth:`Scorer.reasons`.
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


class _Batcher:
    """Coalesces concurrent small scoring requests into one model call (dynamic batching).

    Scoring one row costs about as much as scoring sixteen: the time goes into
    building model matrices and into each LightGBM call, not into rows. So
    requests hand their rows to one worker thread, which scores everything
    queued while it was busy (at most ``max_rows`` rows, same ``key``) in one
    call and gives each request its part. Rows are scored independently, so a
    request gets the same answer batched or alone. If a batch fails (one
    request's bad values), each of its requests is scored alone, so only the
    faulty one gets the error. The worker stops after a few idle seconds and
    is started again by the next request.
    """

    def __init__(self, max_rows: int = 1024, idle_seconds: float = 5.0) -> None:
        self.max_rows = max_rows
        self.idle_seconds = idle_seconds
        self._ready = threading.Condition()
        self._queue: collections.deque = collections.deque()
        self._running = False

    def run(self, rows: list, key: object, score: Callable[[list], list]) -> list:
        """``score(rows)``, possibly computed together with other requests' rows of the same ``key``."""
        if len(rows) >= self.max_rows:
            return score(rows)
        return self.submit(rows, key, score).result()

    def submit(self, rows: list, key: object, score: Callable[[list], list]) -> Future:
        """Queue ``rows`` (fewer than ``max_rows``); the future gets ``score`` of them."""
        mine: Future = Future()
        with self._ready:
            self._queue.append((rows, key, score, mine))
            if not self._running:
                self._running = True
                self._start_worker()
            self._ready.notify()
        return mine

    def _start_worker(self) -> None:
        threading.Thread(target=self._work, name="churnml-batcher", daemon=True).start()

    def _take(self) -> list[tuple]:
        with self._ready:
            if not self._queue:
                self._ready.wait(self.idle_seconds)
            if not self._queue:
                self._running = False
                return []
            taken = [self._queue.popleft()]
            size = len(taken[0][0])
            while (self._queue and self._queue[0][1] == taken[0][1]
                   and size + len(self._queue[0][0]) <= self.max_rows):
                size += len(self._queue[0][0])
                taken.append(self._queue.popleft())
            return taken

    def _work(self) -> None:
        try:
            while batch := self._take():
                # A request given up meanwhile (client gone, server stopping) is skipped.
                live = [item for item in batch if item[3].set_running_or_notify_cancel()]
                try:
                    self._answer(live)
                except BaseException as exc:  # noqa: BLE001 - whatever happens, no request waits forever
                    for *_, future in live:
                        if not future.done():
                            future.set_exception(exc)
        finally:
            with self._ready:
                # Ended by an error while requests were queued: hand them to a new worker.
                if self._running and self._queue:
                    self._start_worker()
                elif self._running:
                    self._running = False

    def _answer(self, batch: list[tuple]) -> None:
        if not batch:
            return
        score = batch[0][2]
        try:
            out = score([r for part, *_ in batch for r in part]) if len(batch) > 1 else None
        except Exception:  # noqa: BLE001 - each request is retried alone and gets its own error
            out = None
        if out is None:
            for part, _, _, future in batch:
                try:
                    future.set_result(score(part))
                except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                    future.set_exception(exc)
            return
        start = 0
        for part, _, _, future in batch:
            future.set_result(out[start:start + len(part)])
            start += len(part)


@dataclass(frozen=True)
class Service:
    """Everything a request reads; replaced whole on reload (only the snapshot's reason cache fills in)."""

    scorer: Scorer | None
    snapshot: Snapshot | None
    problems: tuple[str, ...] = ()
    uplift_note: str = "served"
    loaded_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    batcher: _Batcher = field(default_factory=lambda: _Batcher())
    retired: threading.Event = field(default_factory=threading.Event)

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
            # Batched with other requests' first-time users; concurrent requests may word the same
            # user twice, and both write the same list.
            texts = self.batcher.run(new, ("reasons", top), lambda batch: self._word(batch, top))
            cache.update(zip(new, texts, strict=True))
        return [cache.get(p, []) for p in rows]

    @functools.cached_property
    def _categorical(self) -> list[str]:
        models = [self.scorer.churn] + ([self.scorer.uplift] if self.scorer.uplift is not None else [])
        return sorted({s.name for m in models for s in m.features if s.kind == "categorical"})

    def _word(self, rows: list[int], top: int) -> list[list[str]]:
        codes = self.scorer.reasons(self.snapshot.features.iloc[rows], top=top,
                                    where=f"features of {self.snapshot.date}")
        return _columns(codes, top, ())["reasons"]

    def score_rows(self, rows: list[dict], reasons: int) -> list[dict]:
        """Scores of feature rows sent in the request."""
        self._check_rows(rows)
        return self.batcher.run(rows, reasons, lambda batch: self._score_records(batch, reasons))

    def submit_rows(self, rows: list[dict], reasons: int) -> Future:
        """:meth:`score_rows` without waiting (fewer than ``batcher.max_rows`` rows): a future of the scores.

        Raises
        ------
        SchemaMismatchError
            At once, if rows lack features the models need.
        """
        self._check_rows(rows)
        return self.batcher.submit(rows, reasons, lambda batch: self._score_records(batch, reasons))

    def _check_rows(self, rows: list[dict]) -> None:
        # JSON numbers beyond float range (1e309) or Infinity parse to inf: no model can score them.
        infinite = [(i, k) for i, r in enumerate(rows) for k, v in r.items()
                    if isinstance(v, float) and math.isinf(v)]
        if infinite:
            names = sorted({k for _, k in infinite})
            raise SchemaMismatchError(f"rows {_span(sorted({i for i, _ in infinite}))}: infinite value in "
                                      f"{', '.join(names)}; send a finite number, or null for missing")
        for keys in {frozenset(r) for r in rows}:
            try:
                self.scorer.check_schema(keys)
            except SchemaMismatchError as exc:
                bad = [i for i, r in enumerate(rows) if frozenset(r) == keys]
                raise SchemaMismatchError(f"rows {_span(bad)}: {exc}") from None

    def _score_records(self, rows: list[dict], reasons: int) -> list[dict]:
        scored = self.scorer.score(_request_frame(rows, self._categorical), reasons=reasons, where="request rows")
        return _records(_columns(scored, reasons), range(len(rows)))

    def warm_reasons(self, top: int, chunk: int = 20_000) -> None:
        """Word the reasons of every snapshot user not cached yet, a chunk at a time, until retired.

        Run in a background thread after loading, so that ids are answered from
        the cache; a request for a user not reached yet computes that user's reasons itself.
        """
        snap = self.snapshot
        if snap is None or self.scorer is None or not top:
            return
        todo = [p for p in range(len(snap.features)) if p not in snap.reasons]
        t0 = time.perf_counter()
        log.info("wording the reasons of %d snapshot users in the background", len(todo))
        for start in range(0, len(todo), chunk):
            if self.retired.is_set():
                return
            self._reasons(todo[start:start + chunk], top)
        log.info("reasons of all %d snapshot users in memory (%d computed in %.1f s)", len(snap.features),
                 len(todo), time.perf_counter() - t0)


def _request_frame(rows: list[dict], categorical: list[str]) -> pd.DataFrame:
    """Feature rows as a frame; categorical values keep their own type.

    pandas infers one dtype per column across the rows, so a level sent as 1
    beside another request's 2.5 would become "1.0", a level never seen.
    """
    frame = pd.DataFrame.from_records(rows)
    for name in categorical:
        if name in frame:
            frame[name] = pd.Series([r.get(name) for r in rows], dtype=object, index=frame.index)
    return frame


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
    if "p_churn" in fields:  # p_churn_<h>d of a multi-horizon churn model, as one mapping per user
        names = [c for c in scored.columns if re.fullmatch(r"p_churn_\d+d", c)]
        cols["p_churn_horizons"] = [dict(zip(names, row, strict=True)) for row in
                                    zip(*(values(c) for c in names), strict=True)] if names else [{}] * len(scored)
    per = [c for c in scored.columns if c.startswith("uplift_")]
    if per:  # a multi-channel model: each channel's uplift, and the channel chosen
        names = [c.removeprefix("uplift_") for c in per]
        cols["uplift_by_channel"] = [dict(zip(names, row, strict=True)) for row in scored[per].to_numpy().tolist()]
        cols["channel"] = values("channel")
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
    day, shown = _latest_folder(lists_dir)
    # A list's date is a link that `churnml score --force` swaps whole: read every file through the
    # folder it points at now, so that they all come from one version of the list.
    folder = shown.resolve()
    t0 = time.perf_counter()
    log.info("loading the nightly list of %s (%s)", day, shown)
    features = pd.read_parquet(folder / FEATURES_FILE)
    scorer.check_schema(features.columns)
    manifest_path = folder / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    positions = {str(u): i for i, u in enumerate(features["user_id"].tolist())}
    scores = _nightly_scores(folder, scorer, features, manifest)
    # The list's reasons come from the same churn model version only when its scores do.
    cached = _listed_reasons(folder, positions, reasons) if scores is not None else {}
    log.info("nightly list of %s loaded in %.1f s: %d users, scores %s, reasons of %d users", day,
             time.perf_counter() - t0, len(positions), "from the list" if scores is not None else "computed live",
             len(cached))
    return Snapshot(day, shown, manifest.get("as_of"), features, positions, scores, cached)


def _load_scorer(s: ServeSettings) -> tuple[Scorer, str]:
    common = {"churn_model": s.churn_model, "alias": s.alias, "settings": s.runtime}
    if not s.uplift_model:
        return Scorer.from_registry(uplift_model=None, **common), "no uplift model configured"
    try:
        return Scorer.from_registry(uplift_model=s.uplift_model, **common), "served"
    except ModelNotFoundError as exc:
        # Raises again if it is the churn model that is missing.
        return Scorer.from_registry(uplift_model=None, **common), f"churn risk only: {exc}"


def _priced(scorer: Scorer, lists_dir: Path) -> Scorer:
    """A multi-channel scorer with the channels, costs and value of the newest nightly list's config.

    So the channel ``POST /score`` chooses is the one the nightly list would
    choose before its budget; without a list, every channel the model knows, free.
    """
    if scorer.channels is None:
        return scorer
    try:
        folder = _latest_folder(lists_dir)[1].resolve()  # one version of the list (see _load_snapshot)
        cfg = json.loads((folder / MANIFEST_FILE).read_text()).get("config", {})
    except (FileNotFoundError, json.JSONDecodeError):
        return scorer
    listed = cfg.get("channels") or {}
    default = float(cfg.get("contact_cost", 0.0))
    costs = {c: default if (listed.get(c) or {}).get("cost") is None else float(listed[c]["cost"])
             for c in scorer.channels if not listed or c in listed}
    return dataclasses.replace(scorer, costs=costs, value_per_user=float(cfg.get("value_per_user", 1.0)))


def load_service(settings: ServeSettings, scorer: Scorer | None = None) -> Service:
    """Load the champion models (unless ``scorer`` is given) and the newest snapshot.

    Never raises: what could not be loaded is listed in ``Service.problems``.
    """
    problems, snapshot, note = [], None, "served"
    if scorer is not None and scorer.uplift is None:
        note = "churn risk only: the Scorer given has no uplift model"
    try:
        if scorer is None:
            t0 = time.perf_counter()
            log.info("loading the models %s@%s%s from the MLflow store", settings.churn_model, settings.alias,
                     f" and {settings.uplift_model}@{settings.alias}" if settings.uplift_model else "")
            scorer, note = _load_scorer(settings)
            log.info("models loaded in %.1f s: %s", time.perf_counter() - t0,
                     ", ".join(f"{k} v{v}" for k, v in scorer.versions.items()))
    # Anything (registry down, corrupt file) becomes a problem to report: the process keeps serving
    # what it has and can be fixed with POST /reload.
    except Exception as exc:  # noqa: BLE001
        problems.append(f"models: {exc}")
    if scorer is not None:
        try:
            scorer = _priced(scorer, settings.lists_dir)
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
    # _Gate has refused the request already if this fails; kept for the OpenAPI schema and for apps
    # mounted without the gate.
    if not settings.token_matches(credentials.credentials if credentials else None):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, _UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


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
async def score(body: CheckedRequest, service: ReadyService, settings: SettingsDep) -> ScoreResponse:
    """Score users by id (newest nightly snapshot) or by feature rows."""
    unknown, as_of = [], None
    if body.user_ids is not None:
        scores, unknown = await run_in_threadpool(service.score_ids, body.user_ids, settings.reasons)
        as_of = service.snapshot.as_of
    elif len(body.rows) < service.batcher.max_rows:
        # Awaited, not waited for in a worker thread: the batcher's thread does the work.
        scores = await asyncio.wrap_future(service.submit_rows(body.rows, settings.reasons))
    else:
        scores = await run_in_threadpool(service.score_rows, body.rows, settings.reasons)
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
        old.retired.set()
        _freeze()
        if settings.warm_reasons:
            _start_warming(new, settings)
    return ReloadResponse(previous=old.scorer.versions if old.scorer else {}, current=new.scorer.versions,
                          snapshot=new.snapshot.info())


def _start_warming(service: Service, settings: ServeSettings) -> None:
    """Word every snapshot user's reasons in a background thread, then exclude them from GC scans."""
    def warm() -> None:
        try:
            service.warm_reasons(settings.reasons)
        except Exception:  # requests still compute reasons themselves
            log.exception("could not precompute the snapshot's reasons; computing them per request")
            return
        if not service.retired.is_set():
            _freeze()

    threading.Thread(target=warm, name="churnml-warm-reasons", daemon=True).start()


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


def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with each error's ``loc``, ``msg`` and ``type``, without the input FastAPI echoes by default:
    a NaN in it cannot be written as JSON (the 422 became a 500), and a large body would come back whole."""
    detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
              for e in exc.errors()]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


_UNAUTHORIZED = "missing or wrong bearer token"
_PUBLIC_PATHS = frozenset({"/health"})


class _Gate:
    """Checks the token and bounds the body size before anything reads the body (plain ASGI middleware).

    FastAPI parses a JSON body before it runs a route's dependencies, so a token
    checked there came after parsing whatever was sent: 213 MB took 12.9 s and
    620 MB of memory before the 401 (#15). Here a request without the token is
    answered 401 from its headers alone, a body announced larger than
    ``ServeSettings.body_limit`` is answered 413 unread, and a body sent without
    a length is counted as it arrives and cut off at the limit.
    """

    def __init__(self, app, settings: ServeSettings) -> None:
        self.app = app
        self.settings = settings
        self.limit = settings.body_limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.settings.api_token is not None and scope["path"] not in _PUBLIC_PATHS:
            scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not self.settings.token_matches(token.strip() or None):
                await JSONResponse({"detail": _UNAUTHORIZED}, status.HTTP_401_UNAUTHORIZED,
                                   headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > self.limit):
            code, text = ((status.HTTP_413_CONTENT_TOO_LARGE, self._too_large(int(declared)))
                          if declared.strip().isdigit() else (status.HTTP_400_BAD_REQUEST, "bad Content-Length"))
            await JSONResponse({"detail": text}, code)(scope, receive, send)
            return
        received = 0

        async def bounded():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # FastAPI passes an HTTPException raised while reading on
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, self._too_large(received, sent=True))
            return message

        await self.app(scope, bounded, send)

    def _too_large(self, size: int, sent: bool = False) -> str:
        return (f"request body of {'more than ' if sent else ''}{size:,} bytes; at most {self.limit:,} "
                "(CHURNML_SERVE_MAX_BODY_BYTES): split the batch")


def _show_log_lines() -> None:
    """Send the API's log lines (start-up progress, reloads) to stderr in uvicorn's format, unless the
    process configured logging itself: uvicorn sets up only its own loggers, so they were dropped."""
    if log.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def create_app(settings: ServeSettings | None = None, scorer: Scorer | None = None) -> FastAPI:
    """Build the API; ``settings`` default to the environment, ``scorer`` to the registry champions.

    Raises
    ------
    SystemExit
        With one line per bad setting (named as its environment variable), when
        ``settings`` come from the environment and do not validate.
    """
    if settings is None:
        # A misspelt variable would otherwise be ignored: CHURNML_SERVE_API_TOKN would serve without a token.
        lines = [f"{k}: unknown setting (known: {', '.join('CHURNML_SERVE_' + f.upper() for f in ServeSettings.model_fields)})"
                 for k in sorted(os.environ) if k.upper().startswith("CHURNML_SERVE_")
                 and k.upper().removeprefix("CHURNML_SERVE_").lower() not in ServeSettings.model_fields]
        try:
            settings = ServeSettings()
        except ValidationError as exc:
            lines += [f"CHURNML_SERVE_{'_'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}"
                      for e in exc.errors()]
        if lines:
            raise SystemExit("churnml API: bad settings\n" + "\n".join(lines)) from None

    _show_log_lines()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info("starting: lists in %s, at most %d users and %s bytes per request, token %s", settings.lists_dir,
                 settings.max_batch, f"{settings.body_limit:,}", "required" if settings.api_token else "not required")
        app.state.service = await run_in_threadpool(load_service, settings, scorer)
        _freeze()
        if settings.warm_reasons:
            _start_warming(app.state.service, settings)
        yield
        app.state.service.retired.set()
        gc.unfreeze()

    # With a token, the interactive docs and the OpenAPI schema (feature names included) are not
    # served: every route but /health needs the token, and those pages cannot send one.
    open_docs = settings.api_token is None
    app = FastAPI(title="churnml scoring API", version="1", lifespan=lifespan,
                  docs_url="/docs" if open_docs else None, redoc_url="/redoc" if open_docs else None,
                  openapi_url="/openapi.json" if open_docs else None)
    app.state.settings = settings
    app.state.reload_lock = threading.Lock()
    app.add_exception_handler(SchemaMismatchError, _unprocessable)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_middleware(_Gate, settings=settings)
    app.include_router(public)
    app.include_router(protected)
    return app
