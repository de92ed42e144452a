"""The seed's stack doing our work: POST /api/v1/sessions/{id}/turns in
FastAPI + asyncpg + redis-py, the peer of issue 15's answer benchmark
(tests/src/bin/bench_answer.rs starts it under uvicorn).

Per request it does what our API does: verifies the HS256 access token
(typ at+jwt, iss, aud, exp, nbf) with JWT_SECRET_KEY, spends one request of
the user's RATE_LIMIT_PER_MINUTE on the same sliding-window log in Redis,
checks the login is not revoked nor the account disabled (one PostgreSQL
read), then BEGIN; submit_answer(...) (migration 0007); PUBLISH turn.queued
on {prefix}:events:{session}; COMMIT; pushes the turn job onto the
apalis-redis `turns` queue with the same Redis commands apalis-redis 1.0
issues, and wakes the workers as shared/src/queue.rs does.

What it leaves out: Prometheus series and the request log line (ours keeps
them; at LOG_LEVEL=WARNING ours writes no line either), OpenTelemetry, and
the visibility check that gives a non-candidate a 404 rather than a 403.
"""

import json
import logging
import math
import os
import secrets
import time
import uuid
from contextlib import asynccontextmanager

import asyncpg
import jwt
import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

PREFIX = os.environ["REDIS_KEY_PREFIX"]
API_PREFIX = os.environ.get("API_PREFIX", "/api/v1")
JWT_SECRET = os.environ["JWT_SECRET_KEY"]
RATE_PER_MINUTE = int(os.environ.get("RATE_LIMIT_PER_MINUTE", "60"))
ANSWER_MAX_CHARS = int(os.environ.get("ANSWER_MAX_CHARS", "8000"))
# Ours opens up to DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW connections in
# one process, as they are needed; uvicorn's WEB_CONCURRENCY workers share
# as many.
WORKERS = int(os.environ.get("WEB_CONCURRENCY", "1"))
POOL_MAX = math.ceil(
    (int(os.environ.get("DATABASE_POOL_SIZE", "20")) + int(os.environ.get("DATABASE_MAX_OVERFLOW", "10"))) / WORKERS
)
WINDOW_MS = 60_000
TURNS_QUEUE = f"{PREFIX}-turns"
MAX_ATTEMPTS = 25  # apalis's default for a task that sets none, as ours

# The request budget's sliding-window log, as shared/src/provider_state/
# rate_limit.rs keeps it for the API (no tokens, nothing in flight): expire
# what left the window, then grant a slot or say how long until one frees.
RATE_LIMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local cutoff = now - window
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
if #expired > 0 then
  local freed = 0
  for i = 1, #expired, 1000 do
    local chunk = {unpack(expired, i, math.min(i + 999, #expired))}
    for _, n in ipairs(redis.call('HMGET', KEYS[2], unpack(chunk))) do freed = freed + (tonumber(n) or 0) end
    redis.call('HDEL', KEYS[2], unpack(chunk))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
  redis.call('DECRBY', KEYS[3], freed)
end
local count = redis.call('ZCARD', KEYS[1])
redis.call('GET', KEYS[3])
if count >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local wait = window
  if oldest[2] then wait = tonumber(oldest[2]) + window - now end
  return {0, math.max(wait, 1), count}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], 0)
redis.call('INCRBY', KEYS[3], 0)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], window + 1000, 'GT'); redis.call('PEXPIRE', KEYS[i], window + 1000, 'NX') end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {1, count + 1, tonumber(oldest[2]) + window - now}
"""

# One task pushed the way apalis-redis 1.0's push script stores it (no
# idempotency key): its payload, its metadata hash, and the scheduled set
# scored by the second it is due. A task without a run time is due the
# current second there; the workers' fetch promotes it to the pending list.
PUSH_TASK = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HMSET', KEYS[2] .. ':' .. ARGV[1], 'attempts', 0, 'max_attempts', tonumber(ARGV[3]),
    'status', 'Pending', 'idempotency_key', '')
  redis.call('ZADD', KEYS[3], tonumber(ARGV[4]), ARGV[1])
  return 1
end
return 0
"""

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_job_id() -> str:
    """A ULID, as shared::queue::new_job_id makes them."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def new_turn_id() -> uuid.UUID:
    """A time-ordered UUIDv7, as our ids are."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 4122 variant
    return uuid.UUID(int=value)


class Refusal(Exception):
    """A request answered with an error body."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class AnswerIn(BaseModel):
    text: str


@asynccontextmanager
async def lifespan(app: FastAPI):
    dsn = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    app.state.db = await asyncpg.create_pool(dsn, min_size=0, max_size=POOL_MAX)
    app.state.redis = aioredis.from_url(
        os.environ["REDIS_URL"], max_connections=int(os.environ.get("REDIS_MAX_CONNECTIONS", "50"))
    )
    app.state.rate_limit = app.state.redis.register_script(RATE_LIMIT)
    app.state.push_task = app.state.redis.register_script(PUSH_TASK)
    yield
    await app.state.db.close()
    await app.state.redis.aclose()


app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)


@app.get(API_PREFIX + "/health/live")
async def live() -> dict:
    """For the bench to wait on, as it waits on ours."""
    return {"status": "ok"}


@app.exception_handler(Refusal)
async def refused(_request: Request, e: Refusal) -> JSONResponse:
    body = {"error": {"code": e.code, "message": e.message}}
    return JSONResponse(body, status_code=e.status, headers=e.headers)


def claims_of(authorization: str | None) -> dict:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Refusal(401, "unauthorized", "missing bearer token")
    try:
        if jwt.get_unverified_header(token).get("typ") != "at+jwt":
            raise Refusal(401, "unauthorized", "not an access token")
        return jwt.decode(
            token.strip(),
            JWT_SECRET,
            algorithms=["HS256"],
            audience="ai-interviewer-api",
            issuer="ai-interviewer",
            options={"require": ["iss", "aud", "exp", "nbf", "sub"]},
        )
    except jwt.PyJWTError as e:
        raise Refusal(401, "unauthorized", str(e)) from e


async def spend_request(state, user: str) -> dict:
    """One request of `user`'s budget: the rate-limit headers, or a 429."""
    base = f"{PREFIX}:limit:rate:user:{user}"
    granted, count, wait_ms = await state.rate_limit(
        keys=[f"{base}:rate", f"{base}:rate:tokens", f"{base}:rate:sum"],
        args=[WINDOW_MS, RATE_PER_MINUTE, uuid.uuid4().hex],
    )
    reset = max(1, math.ceil(int(wait_ms) / 1000))
    if not granted:
        message = f"more than {RATE_PER_MINUTE} requests in a minute; retry after {reset} s"
        raise Refusal(429, "rate_limited", message, {"retry-after": str(reset)})
    return {
        "ratelimit-policy": f'"per-minute";q={RATE_PER_MINUTE};w=60',
        "ratelimit": f'"per-minute";r={max(0, RATE_PER_MINUTE - int(count))};t={reset}',
    }


async def candidate(request: Request, authorization: str | None = Header(default=None)) -> str:
    """The calling candidate's id, once the token, the rate limit and the
    login's revocation are checked (ours: limits.rs, auth/mod.rs)."""
    claims = claims_of(authorization)
    state = request.app.state
    request.state.ratelimit = await spend_request(state, claims["sub"]) if RATE_PER_MINUTE else None
    row = await state.db.fetchrow(
        """SELECT role, disabled_at IS NOT NULL AS disabled,
                  EXISTS (SELECT 1 FROM refresh_tokens WHERE family_id = $2 AND user_id = $1 AND revoked_at IS NULL)
                  AS live
           FROM users WHERE id = $1""",
        claims["sub"],
        claims["sid"],
    )
    if row is None:
        raise Refusal(401, "unauthorized", "token revoked: no such user")
    if row["disabled"]:
        raise Refusal(401, "unauthorized", "account disabled")
    if not row["live"]:
        raise Refusal(401, "unauthorized", "token revoked: this login was ended")
    if row["role"] != "candidate":
        raise Refusal(403, "forbidden", "you may not access this resource")
    return claims["sub"]


REFUSALS = {
    "not_found": (404, "not_found", "session not found"),
    # Another candidate's session: outsiders learn nothing about it.
    "forbidden": (404, "not_found", "session not found"),
    "end_requested": (409, "session_not_active", "the session is completed"),
    "expired": (409, "session_expired", "the session's time is over"),
    "key_reused": (422, "idempotency_key_reused", "this Idempotency-Key was already used for a different answer"),
}


async def quietly(command) -> None:
    """A publish or push after the turn is stored: as ours, a failure is
    logged and left to the reconciler, not answered."""
    try:
        await command
    except aioredis.RedisError as e:
        logging.warning("redis: %s", e)


def refusal(row) -> Refusal:
    outcome = row["outcome"]
    if outcome == "not_active":
        return Refusal(409, "session_not_active", f"the session is {row['session_status']}")
    if outcome == "in_progress":
        return Refusal(409, "turn_in_progress",
                       f"the interviewer is still answering turn {row['turn_number']}; wait for turn.completed")
    return Refusal(*REFUSALS[outcome])


@app.post(API_PREFIX + "/sessions/{session_id}/turns", status_code=202)
async def submit(
    session_id: uuid.UUID,
    body: AnswerIn,
    request: Request,
    user: str = Depends(candidate),
    idempotency_key: str | None = Header(default=None),
) -> JSONResponse:
    if idempotency_key is not None and not (
        0 < len(idempotency_key) <= 200 and all(0x21 <= ord(c) <= 0x7E for c in idempotency_key)
    ):
        raise Refusal(400, "invalid_header", "Idempotency-Key: must be 1 to 200 visible ASCII characters")
    if not body.text.strip():
        raise Refusal(422, "validation_error", "text: must not be empty")
    if len(body.text) > ANSWER_MAX_CHARS:
        raise Refusal(422, "validation_error", f"text: must be at most {ANSWER_MAX_CHARS} characters")
    state = request.app.state
    request_id = f"req_{secrets.token_hex(16)}"
    turn_id, job_id = new_turn_id(), new_job_id()
    async with state.db.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            row = await conn.fetchrow(
                "SELECT outcome, session_status, turn_id, turn_number, turn_status, event::text AS event "
                "FROM submit_answer($1, $2, $3, $4, $5, $6, $7)",
                session_id, user, body.text, idempotency_key, request_id, job_id, turn_id,
            )
            if row["outcome"] == "created":
                # Before the commit, the session row still locked: events leave in seq order.
                await quietly(state.redis.publish(f"{PREFIX}:events:{session_id}", row["event"]))
        except BaseException:
            await tx.rollback()
            raise
        # Anything but a new turn rolls back (the session's touch with it).
        if row["outcome"] == "created":
            await tx.commit()
        else:
            await tx.rollback()
    if row["outcome"] not in ("created", "replayed"):
        raise refusal(row)
    if row["outcome"] == "created":
        job = json.dumps(
            {"turn_id": str(turn_id), "session_id": str(session_id), "request_id": request_id}, separators=(",", ":")
        )
        await quietly(state.push_task(
            keys=[f"{TURNS_QUEUE}:data", f"{TURNS_QUEUE}:meta", f"{TURNS_QUEUE}:scheduled"],
            args=[job_id, job, MAX_ATTEMPTS, int(time.time())],
        ))
        await quietly(state.redis.publish(f"{TURNS_QUEUE}:notify", 1))
    return JSONResponse(
        {"turn_id": str(row["turn_id"]), "number": row["turn_number"], "status": row["turn_status"]},
        status_code=202,
        headers={
            "idempotent-replayed": "false" if row["outcome"] == "created" else "true",
            "x-request-id": request_id,
            **(request.state.ratelimit or {}),
        },
    )
