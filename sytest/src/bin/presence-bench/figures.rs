//! The figures of one run, reduced from what the load saw, and the side-by-side table.

use std::collections::HashMap;
use std::process::ExitStatus;
use std::time::Duration;

use crate::contender::Kind;
use crate::load::{PutRecord, Raw};
use crate::procfs::Usage;
use crate::{TARGETS, WATCHERS};

/// The figures of one server's run.
#[derive(Debug)]
pub struct Figures {
    /// Which server.
    pub kind: Kind,
    /// Setup's length.
    pub setup: Duration,
    /// PUT workers.
    pub concurrency: usize,
    /// From the first PUT to the last answer.
    pub load: Duration,
    /// PUTs answered 200 `{}`.
    pub accepted: u64,
    /// PUTs that were not.
    pub put_errors: u64,
    /// The first of those.
    pub first_put_error: Option<String>,
    /// Sorted latencies of the accepted PUTs.
    pub put_latencies: Vec<Duration>,
    /// 10 × accepted: what the watchers would see without coalescing.
    pub expected: u64,
    /// Sorted PUT-to-`/sync` delays of every (watcher, N) first seen.
    pub delays: Vec<Duration>,
    /// The same N seen again by a watcher.
    pub repeats: u64,
    /// An older N after a newer one.
    pub out_of_order: u64,
    /// An N that no PUT to that watcher's target sent, or a status that is no `seq N`.
    pub unknown_seq: u64,
    /// Presence of a user the watcher does not watch.
    pub foreign: u64,
    /// `/sync` answers per second of load.
    pub syncs_per_s: f64,
    /// Failed `/sync` requests.
    pub sync_errors: u64,
    /// The first of them.
    pub first_sync_error: Option<String>,
    /// The drain's length.
    pub drain: Duration,
    /// Watchers short of their target's last change after the drain.
    pub watchers_behind: usize,
    /// Memory and CPU.
    pub usage: Usage,
    /// Warnings and errors in the server's log.
    pub log_problems: Vec<String>,
    /// How the server exited when stopped.
    pub exit: Option<ExitStatus>,
}

impl Figures {
    /// Reduces a run.
    pub fn new(kind: Kind, setup: Duration, concurrency: usize, raw: Raw) -> Figures {
        let ok: Vec<&PutRecord> = raw.puts.iter().filter(|p| p.error.is_none()).collect();
        let mut put_latencies: Vec<Duration> = ok.iter().map(|p| p.latency).collect();
        put_latencies.sort_unstable();
        let mut accepted_per_target = [0u64; TARGETS];
        for p in &ok {
            accepted_per_target[p.target] += 1;
        }
        let mut figures = Figures {
            kind,
            setup,
            concurrency,
            load: raw.load_elapsed,
            accepted: ok.len() as u64,
            put_errors: (raw.puts.len() - ok.len()) as u64,
            first_put_error: raw.puts.iter().find_map(|p| p.error.clone()),
            put_latencies,
            expected: (0..WATCHERS).map(|i| accepted_per_target[i % TARGETS]).sum(),
            delays: Vec::new(),
            repeats: 0,
            out_of_order: 0,
            unknown_seq: 0,
            foreign: 0,
            syncs_per_s: raw.syncs_during_load as f64 / raw.load_elapsed.as_secs_f64(),
            sync_errors: raw.sync_errors,
            first_sync_error: raw.first_sync_error.clone(),
            drain: raw.drain,
            watchers_behind: raw.watchers_behind,
            usage: raw.usage,
            log_problems: Vec::new(),
            exit: None,
        };
        figures.count_deliveries(&raw);
        figures
    }

    /// Delays and correctness counters from every watcher's log.
    fn count_deliveries(&mut self, raw: &Raw) {
        let by_seq: HashMap<u64, &PutRecord> = raw.puts.iter().map(|p| (p.seq, p)).collect();
        for log in &raw.logs {
            self.foreign += log.foreign_events;
            self.unknown_seq += log.unparsed_status;
            let mut highest: Option<u64> = None;
            for s in &log.seen {
                let Some(put) = by_seq.get(&s.seq).filter(|p| p.target == log.index % TARGETS) else {
                    self.unknown_seq += 1;
                    continue;
                };
                match highest {
                    Some(h) if s.seq == h => self.repeats += 1,
                    Some(h) if s.seq < h => self.out_of_order += 1,
                    _ => {
                        highest = Some(s.seq);
                        if put.error.is_none() {
                            self.delays.push(s.at.saturating_duration_since(put.sent));
                        }
                    }
                }
            }
        }
        self.delays.sort_unstable();
    }

    /// Accepted updates per second of load.
    pub fn updates_per_s(&self) -> f64 {
        self.accepted as f64 / self.load.as_secs_f64()
    }

    /// Events a watcher saw for the first time.
    pub fn delivered(&self) -> u64 {
        self.delays.len() as u64
    }

    /// Whether every correctness counter is 0 and the server exited cleanly.
    pub fn clean(&self) -> bool {
        self.put_errors == 0
            && self.sync_errors == 0
            && self.watchers_behind == 0
            && self.foreign == 0
            && self.out_of_order == 0
            && self.unknown_seq == 0
            && self.exit.is_some_and(|s| s.success())
    }

    /// Prints the figures as `key: value` lines (the keys Tidings' runs always had).
    pub fn print(&self) {
        let name = self.kind.name();
        if let Some(e) = &self.first_put_error {
            println!("[{name}] first PUT error: {e}");
        }
        if let Some(e) = &self.first_sync_error {
            println!("[{name}] first /sync error: {e}");
        }
        for line in self.log_problems.iter().take(10) {
            println!("[{name}] server log: {line}");
        }
        let secs = self.load.as_secs_f64();
        let coalesced = self.expected.saturating_sub(self.delivered());
        let u = &self.usage;
        println!();
        println!("===== presence-bench results: {name} =====");
        println!("users: {TARGETS} targets, {WATCHERS} watchers, {WATCHERS} watch edges");
        println!("setup_s: {:.1}", self.setup.as_secs_f64());
        println!("put_concurrency: {}", self.concurrency);
        println!("load_s: {secs:.2}");
        println!("updates_accepted: {}", self.accepted);
        println!("updates_per_s: {}", rate(self.updates_per_s()));
        println!("put_errors: {}", self.put_errors);
        println!("put_latency_p50_ms: {}", ms(percentile(&self.put_latencies, 0.50)));
        println!("put_latency_p99_ms: {}", ms(percentile(&self.put_latencies, 0.99)));
        println!("put_latency_max_ms: {}", ms(self.put_latencies.last().copied()));
        println!("watcher_updates_expected: {}", self.expected);
        println!("events_delivered: {}", self.delivered());
        println!("updates_coalesced: {coalesced} ({:.1}% of expected)", percent(coalesced, self.expected));
        println!("repeat_deliveries: {}", self.repeats);
        println!("delivery_delay_p50_ms: {}", ms(percentile(&self.delays, 0.50)));
        println!("delivery_delay_p99_ms: {}", ms(percentile(&self.delays, 0.99)));
        println!("delivery_delay_max_ms: {}", ms(self.delays.last().copied()));
        println!("syncs_per_s: {}", rate(self.syncs_per_s));
        println!("sync_errors: {}", self.sync_errors);
        println!("drain_ms: {}", self.drain.as_millis());
        println!("watchers_behind_after_drain: {}", self.watchers_behind);
        println!("foreign_events: {}", self.foreign);
        println!("out_of_order_events: {}", self.out_of_order);
        println!("unknown_seq_events: {}", self.unknown_seq);
        println!("server_peak_rss_setup_mib: {}", mib(u.setup_peak_kib));
        if u.hwm_reset {
            println!("server_peak_rss_load_mib: {}", mib(u.load_peak_kib));
        } else {
            println!("server_peak_rss_total_mib: {} (could not reset VmHWM after setup)", mib(u.load_peak_kib));
        }
        println!("server_rss_at_load_start_mib: {}", mib(u.rss_at_load_start_kib));
        println!("server_rss_at_load_end_mib: {}", mib(u.rss_at_load_end_kib));
        println!(
            "server_cpu_per_s: {}",
            cpu_per_s(u.server_cpu_ticks, u.clk_tck, secs).map_or("n/a".into(), |c| format!("{c:.2} cpu-s/s"))
        );
        println!(
            "bench_cpu_per_s: {}",
            cpu_per_s(u.bench_cpu_ticks, u.clk_tck, secs).map_or("n/a".into(), |c| format!("{c:.2} cpu-s/s"))
        );
        println!("server_log_warnings: {}", self.log_problems.len());
        println!("server_exit: {}", self.exit.map_or_else(|| "not running".to_owned(), |s| s.to_string()));
    }

    /// The rows of the side-by-side table: name, value, and whether higher is better.
    fn rows(&self) -> Vec<(&'static str, Option<f64>, Unit)> {
        let u = &self.usage;
        let as_ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        let as_mib = |k: Option<u64>| k.map(|k| k as f64 / 1024.0);
        let secs = self.load.as_secs_f64();
        vec![
            ("presence updates accepted /s", Some(self.updates_per_s()), Unit::Rate),
            ("PUT latency p50 (ms)", as_ms(percentile(&self.put_latencies, 0.50)), Unit::Ms),
            ("PUT latency p99 (ms)", as_ms(percentile(&self.put_latencies, 0.99)), Unit::Ms),
            ("delivery delay p50 (ms)", as_ms(percentile(&self.delays, 0.50)), Unit::Ms),
            ("delivery delay p99 (ms)", as_ms(percentile(&self.delays, 0.99)), Unit::Ms),
            ("events delivered /s", Some(self.delivered() as f64 / secs), Unit::Rate),
            ("/sync answered /s", Some(self.syncs_per_s), Unit::Rate),
            ("peak RSS under load (MiB)", as_mib(u.load_peak_kib), Unit::Mib),
            ("peak RSS, whole run (MiB)", as_mib(u.whole_run_peak_kib()), Unit::Mib),
            ("server CPU (cores)", cpu_per_s(u.server_cpu_ticks, u.clk_tck, secs), Unit::Cores),
            ("setup (s)", Some(self.setup.as_secs_f64()), Unit::Seconds),
        ]
    }
}

/// How a table value is shown.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Rate,
    Ms,
    Mib,
    Cores,
    Seconds,
}

impl Unit {
    fn show(self, v: Option<f64>) -> String {
        let Some(v) = v else { return "n/a".to_owned() };
        match self {
            Unit::Rate => rate(v),
            Unit::Ms | Unit::Mib | Unit::Seconds => format!("{v:.1}"),
            Unit::Cores => format!("{v:.2}"),
        }
    }
}

/// Prints `figure | Tidings | Synapse | ratio` as a Markdown table.
pub fn print_comparison(tidings: &Figures, synapse: &Figures) {
    println!();
    println!(
        "===== presence-bench: Tidings vs Synapse, same load ({TARGETS} targets, {WATCHERS} watchers, {} PUT workers, {:.0} s) =====",
        tidings.concurrency,
        tidings.load.as_secs_f64()
    );
    println!("| figure | Tidings | Synapse | Tidings vs Synapse |");
    println!("|---|---|---|---|");
    for ((name, t, unit), (_, s, _)) in tidings.rows().into_iter().zip(synapse.rows()) {
        println!("| {name} | {} | {} | {} |", unit.show(t), unit.show(s), ratio(t, s));
    }
    let coalesced = |f: &Figures| percent(f.expected.saturating_sub(f.delivered()), f.expected);
    println!(
        "coalesced (a watcher got a newer state instead): Tidings {:.1} %, Synapse {:.1} % of expected",
        coalesced(tidings),
        coalesced(synapse)
    );
    println!(
        "Synapse counters (reported, not judged): put_errors {}, sync_errors {}, watchers_behind_after_drain {}, \
         foreign {}, out_of_order {}, unknown_seq {}",
        synapse.put_errors,
        synapse.sync_errors,
        synapse.watchers_behind,
        synapse.foreign,
        synapse.out_of_order,
        synapse.unknown_seq
    );
}

/// `t` relative to `s`: `"250× more"`, `"3.1× less"`, or `n/a`.
fn ratio(t: Option<f64>, s: Option<f64>) -> String {
    match (t, s) {
        (Some(t), Some(s)) if t > 0.0 && s > 0.0 => {
            let (r, word) = if t >= s { (t / s, "more") } else { (s / t, "less") };
            if r >= 10.0 { format!("{r:.0}× {word}") } else { format!("{r:.2}× {word}") }
        }
        _ => "n/a".to_owned(),
    }
}

/// Nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// A per-second rate: whole numbers from 100 on, else two significant decimals.
fn rate(v: f64) -> String {
    if v >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") }
}

/// `part` as a percentage of `whole` (0 when `whole` is 0).
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { 100.0 * part as f64 / whole as f64 }
}

/// Milliseconds with one decimal, or `n/a`.
fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "n/a".to_owned(), |d| format!("{:.1}", d.as_secs_f64() * 1000.0))
}

/// KiB as MiB with one decimal, or `n/a`.
fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
}

/// CPU seconds per wall-clock second.
fn cpu_per_s(ticks: Option<u64>, clk_tck: u64, secs: f64) -> Option<f64> {
    ticks.map(|t| t as f64 / clk_tck as f64 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_say_which_way() {
        assert_eq!(ratio(Some(2000.0), Some(8.0)), "250× more");
        assert_eq!(ratio(Some(70.0), Some(220.0)), "3.14× less");
        assert_eq!(ratio(Some(1.0), None), "n/a");
        assert_eq!(ratio(Some(0.0), Some(1.0)), "n/a");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&d, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
