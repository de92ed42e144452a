//! TOTP MFA: `MFA_ENABLED`, `MFA_ISSUER`, `TOTP_SECRET_KEY`,
//! `MFA_REQUIRED_ROLES`.

use super::{Secret, Vars};
use crate::domain::Role;

/// Second factors.
#[derive(Debug, Clone)]
pub struct MfaConfig {
    /// `MFA_ENABLED`: the `/auth/mfa/*` endpoints, and the second step of a
    /// login for users who enrolled.
    pub enabled: bool,
    /// `MFA_ISSUER`: the issuer authenticator apps show.
    pub issuer: String,
    /// `TOTP_SECRET_KEY`: the key TOTP secrets are sealed with at rest
    /// (required with MFA on; at least 32 characters).
    pub secret_key: Option<Secret>,
    /// `MFA_REQUIRED_ROLES`: roles that must enrol before using anything
    /// else (e.g. `admin,recruiter`).
    pub required_roles: Vec<Role>,
}

pub(super) fn read(v: &mut Vars, required: bool) -> MfaConfig {
    let enabled = v.flag("MFA_ENABLED", true);
    let issuer = v.string("MFA_ISSUER", "AI Interview System");
    if issuer.contains(':') {
        v.problem("MFA_ISSUER", "must not contain ':' (it is part of the otpauth:// label)");
    }
    let secret_key = v.get("TOTP_SECRET_KEY").filter(|k| !k.is_empty()).map(|k| Secret(k.to_owned()));
    match &secret_key {
        None if enabled && required => {
            v.problem("TOTP_SECRET_KEY", "is required when MFA_ENABLED is true (at least 32 characters)")
        }
        Some(key) if key.0.len() < 32 => v.problem("TOTP_SECRET_KEY", "must be at least 32 characters"),
        _ => {}
    }
    let mut required_roles = Vec::new();
    for role in v.list("MFA_REQUIRED_ROLES") {
        match role.parse::<Role>() {
            Ok(role) => required_roles.push(role),
            Err(e) => v.problem("MFA_REQUIRED_ROLES", e),
        }
    }
    if !enabled && !required_roles.is_empty() {
        v.problem("MFA_REQUIRED_ROLES", "needs MFA_ENABLED=true");
    }
    MfaConfig { enabled, issuer, secret_key, required_roles }
}
