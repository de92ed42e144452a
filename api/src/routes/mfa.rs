//! `/auth/mfa`: TOTP enrolment (setup, then a code confirms it), the second
//! step of a login (`mfa_token` + code), and turning it off (password +
//! code). A recovery code is accepted wherever a login or disable takes a
//! code; enrolment wants a code from the app, which it proves is set up.
//! With `MFA_ENABLED=false` these answer 404.

use axum::Json as AxumJson;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use shared::db::{self, DbError};
use shared::ids::{TokenFamilyId, UserId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::mfa::{self, MAX_FAILURES};
use crate::auth::{AuthUser, password, refresh};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::openapi::{
    BadRequest, Conflict, Invalid, Mismatch, NotFound, NotJson, RateLimited, TooLarge, Unauthorized, Unavailable,
};
use crate::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(setup)).routes(routes!(verify)).routes(routes!(disable))
}

fn sealer(state: &AppState) -> ApiResult<&mfa::Sealer> {
    state.sealer.as_deref().ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "mfa_disabled", "MFA is turned off"))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SetupIn {
    password: String,
}

/// A new secret (replacing an unconfirmed one), its `otpauth://` URI and ten
/// recovery codes; MFA is on once `verify` gets a code from it.
#[utoipa::path(post, path = "/auth/mfa/setup", operation_id = "mfa_setup", tag = "auth", request_body = SetupIn, responses(
        (status = 200, description = "The secret to enrol; MFA is on once a code from it is verified", body = SetupOut),
        BadRequest, TooLarge, NotJson, Invalid, Unauthorized, Mismatch, NotFound, Conflict, RateLimited, Unavailable), security(("bearer" = [])))]
async fn setup(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<SetupIn>,
) -> ApiResult<AxumJson<SetupOut>> {
    let sealer = sealer(&state)?;
    let stored = db::users::find(&state.db, user.id).await?.ok_or_else(|| ApiError::unauthorized("no such user"))?;
    if stored.mfa_enabled {
        return Err(ApiError::conflict("mfa_already_enabled", "MFA is already on; disable it first"));
    }
    if !password::verify(body.password, stored.password_hash).await {
        return Err(ApiError::mismatch("password: does not match"));
    }
    let secret = mfa::new_secret();
    let sealed = sealer.seal(user.id, &secret).map_err(ApiError::internal)?;
    let (base32, uri) = mfa::enrolment(&secret, &state.config.api.mfa.issuer, &stored.email)
        .map_err(|e| ApiError::invalid(format!("email: cannot be an authenticator label ({e})")))?;
    let (codes, hashes) = mfa::recovery_codes();
    let mut tx = state.db.begin().await.map_err(DbError::from)?;
    if !db::mfa::set_pending(&mut *tx, user.id, &sealed).await? {
        return Err(ApiError::conflict("mfa_already_enabled", "MFA is already on; disable it first"));
    }
    db::mfa::replace_recovery_codes(&mut tx, user.id, &hashes).await?;
    tx.commit().await.map_err(DbError::from)?;
    tracing::info!(user_id = %user.id, "MFA setup started");
    Ok(AxumJson(SetupOut { otpauth_uri: uri, secret: base32, recovery_codes: codes }))
}

/// What an authenticator app needs, and the codes for when it is lost.
#[derive(Serialize, utoipa::ToSchema)]
struct SetupOut {
    /// `otpauth://totp/...`, for a QR code.
    otpauth_uri: String,
    /// The secret in base32, for typing in.
    secret: String,
    /// Single-use codes that stand in for a TOTP code.
    recovery_codes: Vec<String>,
}

/// What a verified code gives.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum VerifyOut {
    /// With `mfa_token`: the login's tokens.
    Tokens(refresh::TokenPair),
    /// With an access token: the enrolment is confirmed.
    Enrolled(Enrolled),
}

/// MFA is on.
#[derive(Serialize, utoipa::ToSchema)]
struct Enrolled {
    /// Always true.
    mfa_enabled: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyIn {
    code: String,
    mfa_token: Option<String>,
}

/// With `mfa_token`: completes a login (answers like login). Without, with
/// an access token: confirms the enrolment.
#[utoipa::path(post, path = "/auth/mfa/verify", operation_id = "mfa_verify", tag = "auth", request_body = VerifyIn, responses(
        (status = 200, description = "With `mfa_token`: the login's token pair; with an access token: `{\"mfa_enabled\": true}`", body = VerifyOut),
        BadRequest, TooLarge, NotJson, Invalid, Unauthorized, Mismatch, NotFound, Conflict, RateLimited, Unavailable), security(("bearer" = [])))]
async fn verify(
    State(state): State<AppState>,
    user: Option<AuthUser>,
    Json(body): Json<VerifyIn>,
) -> ApiResult<AxumJson<VerifyOut>> {
    sealer(&state)?;
    let verified = match (body.mfa_token, user) {
        (Some(token), _) => complete_login(&state, &token, &body.code).await?,
        (None, Some(user)) => confirm(&state, user, &body.code).await?,
        (None, None) => return Err(ApiError::unauthorized("mfa_token or an access token is required")),
    };
    Ok(AxumJson(verified))
}

async fn confirm(state: &AppState, user: AuthUser, code: &str) -> ApiResult<VerifyOut> {
    let totp = db::mfa::totp(&state.db, user.id).await?.ok_or_else(|| ApiError::unauthorized("no such user"))?;
    if totp.enabled {
        return Err(ApiError::conflict("mfa_already_enabled", "MFA is already on"));
    }
    let sealed = totp.sealed.ok_or_else(|| ApiError::conflict("mfa_not_set_up", "call /auth/mfa/setup first"))?;
    let secret = sealer(state)?.open(user.id, &sealed).map_err(ApiError::internal)?;
    let code = mfa::normalize(code);
    let step = mfa::is_totp_code(&code).then(|| mfa::matching_step(&secret, &code, now())).flatten();
    let Some(step) = step else {
        state.metrics.mfa("enrolment_wrong_code");
        return Err(ApiError::mismatch("code: does not match the authenticator's current code"));
    };
    if !db::mfa::confirm(&state.db, user.id, &sealed, step).await? {
        return Err(ApiError::conflict("mfa_not_set_up", "the setup was replaced; scan the new code"));
    }
    state.metrics.mfa("enrolled");
    tracing::info!(user_id = %user.id, "MFA enabled");
    Ok(VerifyOut::Enrolled(Enrolled { mfa_enabled: true }))
}

async fn complete_login(state: &AppState, token: &str, code: &str) -> ApiResult<VerifyOut> {
    let claims =
        state.jwt.verify_mfa(token, now_secs()).map_err(|e| ApiError::unauthorized(format!("mfa_token: {e}")))?;
    let challenge = db::mfa::challenge(&state.db, claims.jti).await?;
    let void = |why: &str| ApiError::unauthorized(format!("mfa_token: {why}; log in again"));
    let challenge = challenge.filter(|c| c.user_id == claims.sub).ok_or_else(|| void("unknown"))?;
    if challenge.completed {
        return Err(void("already used"));
    }
    if challenge.expired {
        return Err(void("expired"));
    }
    if challenge.failures >= MAX_FAILURES {
        state.metrics.mfa("void");
        return Err(void("void after too many wrong codes"));
    }
    match check_code(state, claims.sub, code).await? {
        Checked::Accepted(how) => {
            if !db::mfa::complete_challenge(&state.db, claims.jti, MAX_FAILURES).await? {
                return Err(void("already used"));
            }
            let user = db::users::find(&state.db, claims.sub).await?.ok_or_else(|| void("unknown"))?;
            if user.disabled_at.is_some() {
                return Err(ApiError::new(StatusCode::FORBIDDEN, "account_disabled", "this account is disabled"));
            }
            state.metrics.mfa(how);
            state.metrics.login("success");
            tracing::info!(outcome = "success", user_id = %user.id, second_factor = how, "login");
            let pair = refresh::issue(state, &state.db, &user, TokenFamilyId::new()).await?;
            Ok(VerifyOut::Tokens(pair))
        }
        Checked::Refused(why) => {
            let failures = db::mfa::fail_challenge(&state.db, claims.jti).await?;
            state.metrics.mfa(why);
            let left = MAX_FAILURES.saturating_sub(failures).max(0);
            Err(ApiError::unauthorized(format!("code: {}; {left} attempts left", refused_text(why))))
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DisableIn {
    password: String,
    code: String,
}

/// Turns MFA off; the password and a current code (or a recovery code).
#[utoipa::path(post, path = "/auth/mfa/disable", operation_id = "mfa_disable", tag = "auth", request_body = DisableIn, responses(
        (status = 204, description = "MFA off"),
        BadRequest, TooLarge, NotJson, Invalid, Unauthorized, Mismatch, NotFound, Conflict, RateLimited, Unavailable), security(("bearer" = [])))]
async fn disable(State(state): State<AppState>, user: AuthUser, Json(body): Json<DisableIn>) -> ApiResult<StatusCode> {
    sealer(&state)?;
    let stored = db::users::find(&state.db, user.id).await?.ok_or_else(|| ApiError::unauthorized("no such user"))?;
    if !stored.mfa_enabled {
        return Err(ApiError::conflict("mfa_not_enabled", "MFA is not on"));
    }
    if !password::verify(body.password, stored.password_hash).await {
        return Err(ApiError::mismatch("password: does not match"));
    }
    match check_code(&state, user.id, &body.code).await? {
        Checked::Accepted(how) => state.metrics.mfa(how),
        Checked::Refused(why) => {
            state.metrics.mfa(why);
            return Err(ApiError::mismatch(format!("code: {}", refused_text(why))));
        }
    }
    let mut tx = state.db.begin().await.map_err(DbError::from)?;
    db::mfa::disable(&mut tx, user.id).await?;
    tx.commit().await.map_err(DbError::from)?;
    tracing::info!(user_id = %user.id, "MFA disabled");
    Ok(StatusCode::NO_CONTENT)
}

/// What a code turned out to be (the metric's outcome).
enum Checked {
    Accepted(&'static str),
    Refused(&'static str),
}

fn refused_text(why: &str) -> &'static str {
    match why {
        "replayed" => "already used; wait for the next code",
        _ => "does not match",
    }
}

/// Checks a TOTP code (each step accepted once, atomically) or a recovery
/// code (each once) of an enrolled user.
async fn check_code(state: &AppState, user: UserId, code: &str) -> ApiResult<Checked> {
    let code = mfa::normalize(code);
    if !mfa::is_totp_code(&code) {
        let used = db::mfa::use_recovery_code(&state.db, user, &mfa::recovery_hash(&code)).await?;
        return Ok(if used { Checked::Accepted("recovery_code") } else { Checked::Refused("wrong_code") });
    }
    let totp = db::mfa::totp(&state.db, user).await?.ok_or_else(|| ApiError::unauthorized("no such user"))?;
    let sealed =
        totp.sealed.filter(|_| totp.enabled).ok_or_else(|| ApiError::conflict("mfa_not_enabled", "MFA is not on"))?;
    let secret = sealer(state)?.open(user, &sealed).map_err(ApiError::internal)?;
    let Some(step) = mfa::matching_step(&secret, &code, now()) else {
        return Ok(Checked::Refused("wrong_code"));
    };
    Ok(if db::mfa::accept_step(&state.db, user, step).await? {
        Checked::Accepted("success")
    } else {
        Checked::Refused("replayed")
    })
}

fn now() -> u64 {
    u64::try_from(now_secs()).unwrap_or_default()
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}
