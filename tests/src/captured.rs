//! Processes whose every output line is kept, for tests that look at what
//! a process writes (no secret in any line).

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::binary_path;

/// Every line the processes wrote: (who, line).
pub type Lines = Arc<Mutex<Vec<(String, String)>>>;

/// Starts `binary` with `vars` only, its stdout and stderr read into `lines`.
pub fn spawn_captured(
    binary: &str,
    args: &[&str],
    vars: &HashMap<String, String>,
    lines: &Lines,
) -> anyhow::Result<(tokio::process::Child, Vec<tokio::task::JoinHandle<()>>)> {
    let mut child = tokio::process::Command::new(binary_path(binary)?)
        .args(args)
        .env_clear()
        .envs(vars)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {binary}"))?;
    let who = format!("{binary} {}", args.join(" "));
    let mut readers = Vec::new();
    let stdout = child.stdout.take().context("stdout")?;
    let stderr = child.stderr.take().context("stderr")?;
    for (stream, reader) in
        [("stdout", Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Send + Unpin>), ("stderr", Box::new(stderr))]
    {
        let (lines, who) = (lines.clone(), format!("{} ({stream})", who.trim_end()));
        readers.push(tokio::spawn(async move {
            let mut reader = BufReader::new(reader).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                lines.lock().unwrap_or_else(|p| p.into_inner()).push((who.clone(), line));
            }
        }));
    }
    Ok((child, readers))
}

/// Runs a CLI to completion with `vars`; its exit status, its lines in `lines`.
pub async fn run_captured(
    limit: Duration,
    binary: &str,
    args: &[&str],
    vars: &HashMap<String, String>,
    lines: &Lines,
) -> anyhow::Result<std::process::ExitStatus> {
    let (mut child, readers) = spawn_captured(binary, args, vars, lines)?;
    let status = tokio::time::timeout(limit, child.wait()).await.context("CLI did not finish")??;
    for reader in readers {
        reader.await?;
    }
    Ok(status)
}
