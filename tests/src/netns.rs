//! A Redis that is not on the loopback interface, as a Redis in another
//! host is: a network namespace of the test's own, joined to this one by a
//! veth pair with addresses of a benchmarking range (198.18.0.0/15, RFC
//! 2544) that only these two ends hold. Needs root (CI and the
//! development machines run as root); removed when dropped.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::RngExt;

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// A `redis-server` in its own network namespace, reached over a veth pair.
pub struct RemoteRedis {
    /// `redis://{address}:6379/0`.
    pub url: String,
    namespace: String,
    host_link: String,
    process: std::process::Child,
}

impl RemoteRedis {
    /// Starts `redis-server` with `args` in a new namespace, listening on
    /// its end of the pair only.
    pub async fn start(args: &[&str]) -> anyhow::Result<RemoteRedis> {
        let id: u16 = rand::rng().random();
        let (namespace, host_link, ns_link) =
            (format!("aivns{id:04x}"), format!("aivh{id:04x}"), format!("aivn{id:04x}"));
        // A /30 of 198.18.0.0/15 of its own: 198.18.x.y with y a multiple of 4.
        let (third, fourth) = (id >> 6 & 0xff, (id & 0x3f) * 4);
        let (here, there) = (format!("198.18.{third}.{}", fourth + 1), format!("198.18.{third}.{}", fourth + 2));
        ip(&["netns", "add", &namespace])?;
        let mut redis = RemoteRedis { url: format!("redis://{there}:6379/0"), namespace, host_link, process: dummy()? };
        ip(&["link", "add", &redis.host_link, "type", "veth", "peer", "name", &ns_link])?;
        ip(&["link", "set", &ns_link, "netns", &redis.namespace])?;
        ip(&["addr", "add", &format!("{here}/30"), "dev", &redis.host_link])?;
        ip(&["link", "set", &redis.host_link, "up"])?;
        ip(&["netns", "exec", &redis.namespace, "ip", "addr", "add", &format!("{there}/30"), "dev", &ns_link])?;
        ip(&["netns", "exec", &redis.namespace, "ip", "link", "set", &ns_link, "up"])?;
        redis.process = std::process::Command::new("ip")
            .args(["netns", "exec", &redis.namespace, "redis-server", "--bind", &there, "--port", "6379"])
            .args(["--save", "", "--appendonly", "no"])
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .context("starting redis-server in the namespace")?;
        let address = format!("{there}:6379");
        crate::eventually(Duration::from_secs(10), || {
            let address = address.clone();
            async move { Ok(tokio::net::TcpStream::connect(address).await.ok().map(|_| ())) }
        })
        .await
        .context("the namespaced redis-server did not come up")?;
        Ok(redis)
    }
}

/// A placeholder child until the server is started (`true` exits at once).
fn dummy() -> anyhow::Result<std::process::Child> {
    Ok(std::process::Command::new("true").spawn()?)
}

impl Drop for RemoteRedis {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = ip(&["netns", "del", &self.namespace]);
        let _ = ip(&["link", "del", &self.host_link]);
    }
}
