//! What `/proc` tells about the server's memory and CPU, and this process's CPU.

/// The server's memory and the CPU of the server and of this process over one load.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// `VmHWM` at the end of setup: the peak of setup (and start-up).
    pub setup_peak_kib: Option<u64>,
    /// `VmRSS` when the load starts: what setup left resident.
    pub rss_at_load_start_kib: Option<u64>,
    /// Whether `VmHWM` could be reset at the load's start (so `load_peak_kib` is the
    /// load's own peak rather than the whole run's).
    pub hwm_reset: bool,
    /// `VmHWM` after the drain.
    pub load_peak_kib: Option<u64>,
    /// `VmRSS` after the drain.
    pub rss_at_load_end_kib: Option<u64>,
    /// The server's user+system CPU over the load, in clock ticks.
    pub server_cpu_ticks: Option<u64>,
    /// This process's user+system CPU over the load, in clock ticks.
    pub bench_cpu_ticks: Option<u64>,
    /// Clock ticks per second.
    pub clk_tck: u64,
}

impl Usage {
    /// The peak over the whole run: setup and load.
    pub fn whole_run_peak_kib(&self) -> Option<u64> {
        match (self.setup_peak_kib, self.load_peak_kib) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Measures [`Usage`] of the server `pid` from the load's start on.
#[derive(Debug)]
pub struct Meter {
    pid: u32,
    usage: Usage,
    server_cpu_start: Option<u64>,
    bench_cpu_start: Option<u64>,
}

impl Meter {
    /// Notes setup's peak and what is resident, resets the peak, starts the CPU clocks.
    pub fn start(pid: u32) -> Meter {
        let usage = Usage {
            setup_peak_kib: proc_status_kib(pid, "VmHWM:"),
            rss_at_load_start_kib: proc_status_kib(pid, "VmRSS:"),
            hwm_reset: std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok(),
            clk_tck: clock_ticks_per_second(),
            ..Usage::default()
        };
        Meter { pid, usage, server_cpu_start: cpu_ticks(pid), bench_cpu_start: cpu_ticks(std::process::id()) }
    }

    /// Stops the CPU clocks (at the end of the load, before the drain).
    pub fn load_done(&mut self) {
        let since = |now: Option<u64>, start: Option<u64>| now.zip(start).map(|(n, s)| n.saturating_sub(s));
        self.usage.server_cpu_ticks = since(cpu_ticks(self.pid), self.server_cpu_start);
        self.usage.bench_cpu_ticks = since(cpu_ticks(std::process::id()), self.bench_cpu_start);
    }

    /// Notes the peak and what is resident after the drain, and returns everything.
    pub fn finish(mut self) -> Usage {
        self.usage.load_peak_kib = proc_status_kib(self.pid, "VmHWM:");
        self.usage.rss_at_load_end_kib = proc_status_kib(self.pid, "VmRSS:");
        self.usage
    }
}

/// A `kB` field (`VmRSS:`, `VmHWM:`, ...) of `/proc/PID/status`, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces and parentheses): the
    // 3rd field of the line is the first here, so utime (14th) and stime (15th) are
    // at 11 and 12.
    let rest: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), 100 when unknown.
fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}
