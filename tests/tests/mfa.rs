//! TOTP MFA end to end (issue 13), with codes computed here by an
//! implementation of RFC 6238 of the test's own (HMAC-SHA1 from RustCrypto),
//! not the service's `totp-rs`.

use anyhow::Context;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha1::Sha1;
use tests::openapi::documented;
use tests::{Client, TestEnv, USER_PASSWORD};

/// RFC 4226 HOTP of `step`, six digits.
fn code_at(secret: &[u8], step: u64) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret).expect("any key length");
    mac.update(&step.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = usize::from(hash[19] & 0x0f);
    let binary = u32::from_be_bytes([hash[offset] & 0x7f, hash[offset + 1], hash[offset + 2], hash[offset + 3]]);
    format!("{:06}", binary % 1_000_000)
}

/// RFC 4648 base32 without padding.
fn base32(text: &str) -> Vec<u8> {
    let (mut bits, mut value, mut out) = (0u32, 0u32, Vec::new());
    for c in text.trim_end_matches('=').bytes() {
        let digit = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {text}"),
        };
        value = (value << 5) | u32::from(digit);
        bits += 5;
        if bits >= 8 {
            out.push((value >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

fn step_now() -> u64 {
    (chrono::Utc::now().timestamp() / 30) as u64
}

#[test]
fn the_test_s_own_totp_matches_rfc_6238() {
    assert_eq!(code_at(b"12345678901234567890", 59 / 30), "287082");
    assert_eq!(code_at(b"12345678901234567890", 1_111_111_109 / 30), "081804");
    assert_eq!(base32("GEZDGNBVGY3TQOJQ"), b"1234567890");
}

async fn login(anon: &Client) -> anyhow::Result<Value> {
    let r = anon.post("/auth/login", json!({ "email": "c@example.com", "password": USER_PASSWORD })).await?;
    anyhow::ensure!(r.status == 200, "{r:?}");
    Ok(r.body)
}

/// Enrols `user` in MFA (setup, then the authenticator's current code).
async fn enrol(user: &Client) -> anyhow::Result<()> {
    let setup = user.post("/auth/mfa/setup", json!({ "password": USER_PASSWORD })).await?;
    anyhow::ensure!(setup.status == 200, "{setup:?}");
    let secret = base32(setup.body["secret"].as_str().context("a secret")?);
    let confirmed = user.post("/auth/mfa/verify", json!({ "code": code_at(&secret, step_now()) })).await?;
    anyhow::ensure!(confirmed.status == 200, "{confirmed:?}");
    Ok(())
}

async fn mfa_token(anon: &Client) -> anyhow::Result<String> {
    let body = login(anon).await?;
    anyhow::ensure!(body["mfa_required"] == true, "{body}");
    Ok(body["mfa_token"].as_str().context("mfa_token")?.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enrol_log_in_with_a_code_once_void_after_five_wrong_recover_and_disable() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let anon = api.client();
    let user = anon.user("c@example.com", "candidate").await?;
    let document = anon.get("/openapi.json").await?.body;

    let wrong = user.post("/auth/mfa/setup", json!({ "password": "not-it-at-all" })).await?;
    assert_eq!(wrong.status, 403, "{wrong:?}");
    let setup = user.post("/auth/mfa/setup", json!({ "password": USER_PASSWORD })).await?;
    assert_eq!(setup.status, 200, "{setup:?}");
    documented(&document, "post", "/auth/mfa/setup", &setup)?;
    let uri = setup.body["otpauth_uri"].as_str().unwrap_or_default();
    assert!(uri.starts_with("otpauth://totp/AI%20Interview%20System:c%40example.com?"), "{uri}");
    let secret_b32 = setup.body["secret"].as_str().context("secret")?;
    assert!(uri.contains(&format!("secret={secret_b32}")), "{uri}");
    let secret = base32(secret_b32);
    let recovery: Vec<String> =
        serde_json::from_value(setup.body["recovery_codes"].clone()).context("recovery codes")?;
    assert_eq!(recovery.len(), 10);
    // Not on until a code confirms it.
    assert!(login(&anon).await?["access_token"].is_string());

    let step = step_now();
    let bad = user.post("/auth/mfa/verify", json!({ "code": code_at(&secret, step + 5) })).await?;
    assert_eq!(bad.status, 403, "{bad:?}");
    let confirmed = user.post("/auth/mfa/verify", json!({ "code": code_at(&secret, step) })).await?;
    assert_eq!((confirmed.status, &confirmed.body["mfa_enabled"]), (200, &json!(true)), "{confirmed:?}");
    documented(&document, "post", "/auth/mfa/verify", &confirmed)?;
    assert_eq!(user.post("/auth/mfa/setup", json!({ "password": USER_PASSWORD })).await?.status, 409);
    assert_eq!(user.send("POST", "/auth/logout", None, &[]).await?.status, 204);

    // Log in: the second step. The MFA token is no access token.
    let challenge = anon.post("/auth/login", json!({ "email": "c@example.com", "password": USER_PASSWORD })).await?;
    documented(&document, "post", "/auth/login", &challenge)?;
    let token = mfa_token(&anon).await?;
    assert_eq!(anon.with_token(&token).get("/interviews").await?.status, 401);
    // The enrolment's code cannot be the first login code.
    let reused = anon.post("/auth/mfa/verify", json!({ "mfa_token": token, "code": code_at(&secret, step) })).await?;
    assert_eq!(reused.status, 401, "{reused:?}");
    assert!(reused.body["error"]["message"].as_str().is_some_and(|m| m.contains("already used")), "{reused:?}");
    let next = code_at(&secret, step + 1);
    let done = anon.post("/auth/mfa/verify", json!({ "mfa_token": token, "code": next })).await?;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.body["token_type"], "Bearer");
    documented(&document, "post", "/auth/mfa/verify", &done)?;
    let signed_in = anon.with_token(done.body["access_token"].as_str().unwrap_or_default());
    assert_eq!(signed_in.get("/interviews").await?.status, 403, "a candidate, authenticated");
    // The spent token cannot be used again, and the same code not on another.
    let again = anon.post("/auth/mfa/verify", json!({ "mfa_token": token, "code": next })).await?;
    assert_eq!(again.status, 401);
    let other = mfa_token(&anon).await?;
    let replayed = anon.post("/auth/mfa/verify", json!({ "mfa_token": other, "code": next })).await?;
    assert_eq!(replayed.status, 401, "{replayed:?}");

    // Five wrong codes void a token: the sixth attempt fails even with a good code.
    let token = mfa_token(&anon).await?;
    let good = code_at(&secret, step + 2);
    let wrong_code = (0..).map(|n| format!("{n:06}")).find(|c| (0..5).all(|s| *c != code_at(&secret, step + s - 1)));
    for attempt in 1..=5 {
        let r = anon.post("/auth/mfa/verify", json!({ "mfa_token": token, "code": wrong_code })).await?;
        assert_eq!(r.status, 401, "attempt {attempt}: {r:?}");
    }
    let sixth = anon.post("/auth/mfa/verify", json!({ "mfa_token": token, "code": good })).await?;
    assert_eq!(sixth.status, 401);
    assert!(sixth.body["error"]["message"].as_str().is_some_and(|m| m.contains("void")), "{sixth:?}");

    // A recovery code works once.
    let token = mfa_token(&anon).await?;
    let r = anon.post("/auth/mfa/verify", json!({ "mfa_token": token, "code": recovery[0].to_lowercase() })).await?;
    assert_eq!(r.status, 200, "{r:?}");
    let token = mfa_token(&anon).await?;
    let r = anon.post("/auth/mfa/verify", json!({ "mfa_token": token, "code": recovery[0] })).await?;
    assert_eq!(r.status, 401, "{r:?}");

    // Disabling takes the password and a code (the first MFA login's token).
    let holder = signed_in;
    let no_code = holder.post("/auth/mfa/disable", json!({ "password": USER_PASSWORD, "code": wrong_code })).await?;
    assert_eq!(no_code.status, 403, "{no_code:?}");
    let no_password =
        holder.post("/auth/mfa/disable", json!({ "password": "nope-nope-nope", "code": recovery[1] })).await?;
    assert_eq!(no_password.status, 403, "{no_password:?}");
    let off = holder.post("/auth/mfa/disable", json!({ "password": USER_PASSWORD, "code": recovery[1] })).await?;
    assert_eq!(off.status, 204, "{off:?}");
    assert!(login(&anon).await?["access_token"].is_string(), "no second step any more");

    let metrics = reqwest::get(format!("http://{}/metrics", api.addr)).await?.text().await?;
    for outcome in ["success", "recovery_code", "wrong_code", "replayed", "void", "enrolled"] {
        let line = format!("auth_mfa_verification_count{{outcome=\"{outcome}\"}}");
        assert!(metrics.contains(&line), "{line} missing");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn required_roles_enrol_first_and_mfa_off_turns_the_endpoints_off() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    env.set("MFA_REQUIRED_ROLES", "recruiter");
    let api = env.start_api().await?;
    let recruiter = api.client().user("r@example.com", "recruiter").await?;
    let blocked = recruiter.get("/interviews").await?;
    assert_eq!((blocked.status, blocked.body["error"]["code"].as_str()), (403, Some("mfa_enrolment_required")));
    enrol(&recruiter).await?;
    assert_eq!(recruiter.get("/interviews").await?.status, 200);
    // Other roles are not held back.
    let candidate = api.client().user("c@example.com", "candidate").await?;
    assert_eq!(candidate.get("/interviews").await?.status, 403);

    let mut off = TestEnv::new().await?;
    off.set("MFA_ENABLED", "false");
    let api = off.start_api().await?;
    let user = api.client().user("c@example.com", "candidate").await?;
    let r = user.post("/auth/mfa/setup", json!({ "password": USER_PASSWORD })).await?;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (404, Some("mfa_disabled")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_role_that_must_enrol_opens_no_websocket_until_it_has() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    env.set("MFA_REQUIRED_ROLES", "recruiter");
    let api = env.start_api().await?;
    let recruiter = api.client().user("r@example.com", "recruiter").await?;
    // The recruiter may not create it before enrolling: the admin does, and hands it over.
    let interview = api.admin().await?.interview("en", 5).await?;
    sqlx::query("UPDATE interviews SET owner_id = (SELECT id FROM users WHERE email = 'r@example.com')")
        .execute(&env.db().await?)
        .await?;
    let candidate = api.client().user("c@example.com", "candidate").await?;
    let session = candidate.start_session(&interview).await?;
    candidate.ws(&session, None).await.context("the candidate's own socket")?;

    // The owner may watch the session, but not before enrolling: neither with
    // the bearer token on the handshake nor through a ticket.
    let refused = recruiter.ws(&session, None).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(refused.contains("403"), "the handshake must be refused with 403: {refused:?}");
    let ticket = recruiter.post("/ws/tickets", json!({ "session_id": session })).await?;
    assert_eq!((ticket.status, ticket.body["error"]["code"].as_str()), (403, Some("mfa_enrolment_required")));

    enrol(&recruiter).await?;
    recruiter.ws(&session, None).await.context("the enrolled recruiter's socket")?;
    let ticket = recruiter.post("/ws/tickets", json!({ "session_id": session })).await?;
    assert_eq!(ticket.status, 200, "{ticket:?}");
    Ok(())
}
