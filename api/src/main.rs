//! `api` — serve the API; `api create-admin EMAIL` (password from
//! `BOOTSTRAP_ADMIN_PASSWORD`) — create an admin; `api migrate` — apply migrations.

use shared::config::{Component, Config, Vars};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut vars = Vars::from_env();
    if let ["create-admin", email] = args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        // `create-admin EMAIL` is the bootstrap pair with the email from the command line.
        vars.set("BOOTSTRAP_ADMIN_EMAIL", email);
    }
    // Migrating needs only the database: no JWT secret, no provider keys.
    let component = if args == ["migrate"] { Component::Migrate } else { Component::Api };
    let config = match Config::from_vars(vars, component) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let _telemetry = shared::telemetry::init(component.service_name(), &config);
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] | ["serve"] => api::run(config).await,
        ["migrate"] => shared::db::migrate_command(&config.database).await,
        ["create-admin", email] => create_admin(config, email).await,
        _ => {
            eprintln!(
                "usage: api [serve | migrate | create-admin EMAIL]  (the password comes from BOOTSTRAP_ADMIN_PASSWORD)"
            );
            return std::process::ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "api stopped");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn create_admin(mut config: Config, email: &str) -> anyhow::Result<()> {
    let password = config
        .bootstrap_admin
        .take()
        .map(|admin| admin.password)
        .ok_or_else(|| anyhow::anyhow!("BOOTSTRAP_ADMIN_PASSWORD: is required by create-admin"))?;
    let api = api::Api::build(config).await?;
    if api::bootstrap_admin(&api.state, email, password).await? {
        println!("admin {email} created");
    } else {
        println!("an admin already exists; nothing created");
    }
    Ok(())
}
