//! `token_cleanup`: expired refresh tokens, revoked ones older than
//! `TOKEN_CLEANUP_REVOKED_DAYS`, and expired MFA login challenges are
//! deleted.

use serde_json::{Value, json};
use shared::db;

use super::{BatchError, Context};

/// Deletes them; counts each kind.
pub async fn clean(ctx: &Context) -> Result<Value, BatchError> {
    let (expired, revoked) = db::tokens::delete_stale(&ctx.core.db, ctx.config.batches.revoked_token_retention).await?;
    let challenges = db::mfa::delete_stale_challenges(&ctx.core.db).await?;
    Ok(json!({ "deleted_expired": expired, "deleted_revoked": revoked, "deleted_mfa_challenges": challenges }))
}
