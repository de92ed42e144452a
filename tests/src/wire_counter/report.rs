//! Per-turn figures from two windows of counter snapshots: the measured
//! turns, and the processes idling (their timers), whose rate is taken off.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::Counts;

/// The counters at one moment; index 0 is the api, 1 the worker.
pub struct Snapshot {
    /// When.
    pub at: Instant,
    /// PostgreSQL proxies.
    pub pg: [Counts; 2],
    /// Redis proxies.
    pub redis: [Counts; 2],
    /// CPU time of the processes, in clock ticks.
    pub cpu_ticks: [u64; 2],
    /// Run time of the servers: the database's PostgreSQL backends, and
    /// Redis (a server of the bench's own), in nanoseconds (schedstat:
    /// their threads live as long as they do, and ticks are too coarse
    /// for what one delta costs Redis).
    pub server_ns: [u64; 2],
}

/// What happened between two snapshots.
struct Window {
    secs: f64,
    pg: [Counts; 2],
    redis: [Counts; 2],
    cpu_ticks: [u64; 2],
    server_ns: [u64; 2],
}

impl Window {
    fn between(a: &Snapshot, b: &Snapshot) -> Window {
        Window {
            secs: b.at.duration_since(a.at).as_secs_f64(),
            pg: [b.pg[0].since(&a.pg[0]), b.pg[1].since(&a.pg[1])],
            redis: [b.redis[0].since(&a.redis[0]), b.redis[1].since(&a.redis[1])],
            cpu_ticks: [b.cpu_ticks[0].saturating_sub(a.cpu_ticks[0]), b.cpu_ticks[1].saturating_sub(a.cpu_ticks[1])],
            server_ns: [b.server_ns[0].saturating_sub(a.server_ns[0]), b.server_ns[1].saturating_sub(a.server_ns[1])],
        }
    }
}

/// The measured window less the idle rate, per turn.
pub struct Costs {
    phase: Window,
    idle: Window,
    turns: f64,
    tick_us: f64,
}

type Metric<'a> = Box<dyn Fn(&Window, usize) -> f64 + 'a>;

impl Costs {
    /// `turns` measured between the `phase` snapshots, less the rate of the
    /// `idle` ones.
    pub fn new(idle: (&Snapshot, &Snapshot), phase: (&Snapshot, &Snapshot), turns: f64) -> Costs {
        Costs {
            phase: Window::between(phase.0, phase.1),
            idle: Window::between(idle.0, idle.1),
            turns,
            tick_us: 1e6 / clock_ticks(),
        }
    }

    /// Seconds the measured turns took.
    pub fn phase_secs(&self) -> f64 {
        self.phase.secs
    }

    /// Seconds of idleness measured.
    pub fn idle_secs(&self) -> f64 {
        self.idle.secs
    }

    fn per_turn(&self, metric: &Metric<'_>, part: usize) -> f64 {
        let idle_rate = metric(&self.idle, part) / self.idle.secs;
        ((metric(&self.phase, part) - idle_rate * self.phase.secs) / self.turns).max(0.0)
    }

    fn per_second_idle(&self, metric: &Metric<'_>, part: usize) -> f64 {
        metric(&self.idle, part) / self.idle.secs
    }

    /// Every figure; those indented are parts of the one above, shown
    /// where they are not zero.
    fn rows(&self) -> Vec<(String, Metric<'_>)> {
        let mut rows: Vec<(String, Metric<'_>)> = vec![
            (
                "PostgreSQL round trips (ReadyForQuery)".into(),
                Box::new(|w: &Window, p| w.pg[p].received("ReadyForQuery") as f64),
            ),
            (
                "PostgreSQL statements run (CommandComplete)".into(),
                Box::new(|w: &Window, p| w.pg[p].received("CommandComplete") as f64),
            ),
        ];
        for name in self.names(|w, p| &w.pg[p].sent) {
            let key = name.clone();
            rows.push((format!("· PostgreSQL {name} sent"), Box::new(move |w: &Window, p| w.pg[p].sent(&key) as f64)));
        }
        let fixed: [(&str, Metric<'_>); 6] = [
            ("PostgreSQL rows received (DataRow)", Box::new(|w: &Window, p| w.pg[p].received("DataRow") as f64)),
            ("PostgreSQL errors (ErrorResponse)", Box::new(|w: &Window, p| w.pg[p].received("ErrorResponse") as f64)),
            ("PostgreSQL bytes sent", Box::new(|w: &Window, p| w.pg[p].to_server as f64)),
            ("PostgreSQL bytes received", Box::new(|w: &Window, p| w.pg[p].to_client as f64)),
            ("PostgreSQL connections opened", Box::new(|w: &Window, p| w.pg[p].connections as f64)),
            ("Redis commands", Box::new(|w: &Window, p| w.redis[p].sent.values().sum::<u64>() as f64)),
        ];
        rows.extend(fixed.into_iter().map(|(l, m)| (l.to_owned(), m)));
        for name in self.names(|w, p| &w.redis[p].sent) {
            let key = name.clone();
            rows.push((format!("· Redis {name}"), Box::new(move |w: &Window, p| w.redis[p].sent(&key) as f64)));
        }
        let fixed: [(&str, Metric<'_>); 4] = [
            ("Redis bytes sent", Box::new(|w: &Window, p| w.redis[p].to_server as f64)),
            ("Redis bytes received", Box::new(|w: &Window, p| w.redis[p].to_client as f64)),
            ("Redis pub/sub messages received", Box::new(|w: &Window, p| w.redis[p].received("pubsub message") as f64)),
            ("CPU µs (utime + stime)", Box::new(|w: &Window, p| w.cpu_ticks[p] as f64 * self.tick_us)),
        ];
        rows.extend(fixed.into_iter().map(|(l, m)| (l.to_owned(), m)));
        rows
    }

    /// The names seen in either window, either process.
    fn names(&self, of: impl Fn(&Window, usize) -> &BTreeMap<String, u64>) -> BTreeSet<String> {
        [&self.phase, &self.idle]
            .iter()
            .flat_map(|w| [0, 1].into_iter().flat_map(|p| of(w, p).keys().cloned()).collect::<Vec<_>>())
            .collect()
    }

    /// Prints what `self` costs more than `fewer` per delta, `deltas`
    /// being how many more deltas a turn of `self` streamed.
    pub fn print_marginal(&self, fewer: &Costs, deltas: f64) {
        let marginal =
            |metric: &Metric<'_>, part| (self.per_turn(metric, part) - fewer.per_turn(metric, part)) / deltas;
        println!("| per delta | api | worker |\n|---|---:|---:|");
        let wanted = ["Redis commands", "Redis bytes sent", "Redis bytes received", "Redis pub/sub messages received"];
        for (label, metric) in self.rows().iter().filter(|(l, _)| wanted.contains(&l.as_str()) || l.starts_with("CPU"))
        {
            println!("| {label} | {} | {} |", show(marginal(metric, 0)), show(marginal(metric, 1)));
        }
        let servers: Metric<'_> = Box::new(|w: &Window, p| w.server_ns[p] as f64 / 1000.0);
        let (pg, redis) = (marginal(&servers, 0), marginal(&servers, 1));
        println!("\nPer delta, the servers' CPU: PostgreSQL {} µs, Redis {} µs.", show(pg), show(redis));
    }

    /// Prints the per-turn table and the idle rates (markdown).
    pub fn print_table(&self) {
        let rows = self.rows();
        println!("| per turn | api | worker | both |\n|---|---:|---:|---:|");
        for (label, metric) in &rows {
            let (api, worker) = (self.per_turn(metric, 0), self.per_turn(metric, 1));
            // What neither process did (no errors, say) goes unsaid.
            if api.abs() + worker.abs() < 0.05 {
                continue;
            }
            println!("| {label} | {} | {} | {} |", show(api), show(worker), show(api + worker));
        }
        println!("\nIdle, per second ({:.0} s measured; what is taken off above):\n", self.idle.secs);
        println!("| idle, per second | api | worker |\n|---|---:|---:|");
        for (label, metric) in rows.iter().filter(|(l, _)| !l.starts_with("· ")) {
            let (api, worker) = (self.per_second_idle(metric, 0), self.per_second_idle(metric, 1));
            if api + worker >= 0.05 {
                println!("| {label} | {} | {} |", show(api), show(worker));
            }
        }
        let servers: Metric<'_> = Box::new(|w: &Window, p| w.server_ns[p] as f64 / 1000.0);
        println!("\nThe servers' CPU (PostgreSQL: the backends of the test database; Redis: a server of its own):\n");
        println!("| CPU µs (run time) | PostgreSQL | Redis |\n|---|---:|---:|");
        let (pg, redis) = (self.per_turn(&servers, 0), self.per_turn(&servers, 1));
        println!("| per turn | {} | {} |", show(pg), show(redis));
        let (pg, redis) = (self.per_second_idle(&servers, 0), self.per_second_idle(&servers, 1));
        println!("| idle, per second | {} | {} |", show(pg), show(redis));
    }
}

/// A figure with as many decimals as it needs.
pub fn show(v: f64) -> String {
    match v.abs() {
        a if a < 0.05 => "0.0".into(),
        a if a >= 100.0 => format!("{v:.0}"),
        _ => format!("{v:.1}"),
    }
}

/// utime + stime of a process, in clock ticks (its threads', dead ones too).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// Run time of the PostgreSQL backends connected to `database`, in
/// nanoseconds (found by their process titles).
pub fn backend_run_ns(database: &str) -> u64 {
    let needle = format!(" {database} ");
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let title = String::from_utf8_lossy(&title).replace('\0', " ");
            title.starts_with("postgres:") && title.contains(&needle)
        })
        .map(run_ns)
        .sum()
}

/// Run time of a process's live threads, in nanoseconds.
pub fn run_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}
