//! `presence-bench`: how fast a server fans presence changes out to long-polling
//! watchers, and what that costs it: Tidings, and Synapse under the same load in the
//! same run.
//!
//! Run it against the release build:
//!
//! ```text
//! cargo build --release -p tidings -p tidings-sytest && cargo run --release -p tidings-sytest --bin presence-bench [-- --only-tidings --seconds N --concurrency N]
//! ```
//!
//! By default it measures Tidings, then Synapse (installed from PyPI by
//! `sytest/synapse/install.sh` into `target/bench-synapse-venv` on first use), one after
//! the other so they never share the machine, and ends with a side-by-side table
//! (`figure | Tidings | Synapse | ratio`). `--only-tidings` skips Synapse (its setup
//! alone takes minutes).
//!
//! # The load
//!
//! One server on loopback with rate limits off and registration open. Tidings: presence
//! timers long enough that nothing goes idle or offline during the run,
//! `RUST_LOG=warn`. Synapse: see `tidings_sytest::synapse` (SQLite, every rate limit
//! raised out of reach, `bcrypt_rounds: 4` so that setup does not take an hour).
//!
//! * Setup: 100 *targets* and 1,000 *watchers* register over HTTP, 16 at a time (each
//!   registration costs the server a password hash). Then watcher `i` is let to see
//!   target `i % 100`: on Tidings it asks to watch it
//!   (`POST /_tidings/client/v1/presence/list/{watcher}`) and the target allows it
//!   (`POST /_tidings/client/v1/presence/requests/{watcher}`); Synapse shows presence
//!   only to users who share a room, so each target creates a private room inviting
//!   its 10 watchers, who join it. Either way: 10 watchers per target, one target per
//!   watcher. Last, every watcher runs its initial `/sync`, 16 at a time.
//! * Watchers: each of the 1,000 syncs once more without waiting, then long-polls
//!   `/sync?since=...&timeout=30000` in a loop over one shared HTTP client with a
//!   connection pool large enough for all of them. When a `/sync` returns, the watcher
//!   notes the instant and the `status_msg` (`"seq N"`) of every presence event of its
//!   target in the answer. On Synapse every watcher `/sync` also sends
//!   `set_presence=offline` (so watchers do not go online and show up in each other's
//!   rooms) and a filter leaving rooms out (they exist only for visibility).
//! * Load: `--concurrency` workers (default 48) PUT
//!   `/_matrix/client/v3/presence/{target}/status` with
//!   `{"presence":"online","status_msg":"seq N"}` (N is unique, so every PUT is a real
//!   change) back to back for `--seconds` (default 10). Each worker owns a fixed share of
//!   the targets, so the PUTs to one target never overlap and its sequence numbers
//!   rise. The instant each PUT is sent is recorded under its N. A PUT times out after
//!   30 s, which bounds how long a slow server can stretch the load.
//! * Drain: once the load stops, the watchers keep syncing until each has seen the last
//!   accepted change of its target (at most 10 s on Tidings, 30 s on Synapse); then
//!   everything is stopped.
//!
//! # Reading the figures
//!
//! * `updates_per_s`: PUTs answered 200 per second of load; `put_latency_*`: send to
//!   answer of those PUTs. The load generator is closed-loop, so this is what the server
//!   sustains at that concurrency, not an offered rate.
//! * `delivery_delay_*`: for every (watcher, N) a watcher saw for the first time, the
//!   instant its `/sync` returned minus the instant PUT N was sent; it includes the
//!   PUT's own latency and the watcher's HTTP round trip.
//! * Changes coalesce: a watcher whose `/sync` is not parked when several changes land
//!   sees only the newest on its next `/sync`. `watcher_updates_expected` is 10 × the
//!   accepted PUTs, `events_delivered` the distinct (watcher, N) pairs seen, and
//!   `updates_coalesced` the difference. Coalescing is correct behaviour; a watcher that
//!   never reaches its target's last change (`watchers_behind_after_drain`) is not.
//! * Correctness counters that must be 0 on Tidings, or the run fails: `foreign_events`
//!   (presence of a user the watcher does not watch), `out_of_order_events` (an older N
//!   after a newer one), `unknown_seq_events`, `put_errors`, `sync_errors`,
//!   `watchers_behind_after_drain`. Synapse's are printed but do not fail the run: it is
//!   the yardstick, and slow is what it is expected to be.
//! * `server_peak_rss_*`: the server's `VmHWM`; the `_load` figure is taken after the
//!   peak was reset at the end of setup (`/proc/PID/clear_refs`), so the password
//!   hashes of registration do not hide what the load costs; compare it with
//!   `server_rss_at_load_start_mib`, which is what setup left resident (with glibc's
//!   malloc, argon2's 19 MiB blocks freed on the blocking pool's threads are largely
//!   kept, so this can be gigabytes). `server_cpu_per_s`: the server's user+system CPU
//!   seconds per second of load (2.0 = two cores busy).
//! * Everything runs on one machine: the server, the load generator and the 1,000
//!   watchers share its cores (`bench_cpu_per_s` is this process's share), so the
//!   figures are a floor for what the server does on a machine of its own.

mod contender;
mod figures;
mod load;
mod procfs;
mod setup;

use std::process::ExitCode;

use contender::Server;
use figures::Figures;

/// Users whose presence changes.
const TARGETS: usize = 100;
/// Users who watch one target each (so each target has `WATCHERS / TARGETS` watchers).
const WATCHERS: usize = 1_000;
/// Setup requests (registrations, visibility, initial syncs) in flight at once.
const SETUP_CONCURRENCY: usize = 16;
/// Password of every benchmark user.
const PASSWORD: &str = "presence-bench-password";

/// Command-line options.
#[derive(Debug, Clone, Copy)]
struct Args {
    seconds: u64,
    concurrency: usize,
    /// Whether Synapse is measured too.
    synapse: bool,
}

const USAGE: &str = "usage: presence-bench [--synapse | --only-tidings] [--seconds N] [--concurrency N]\n\
    \n  --synapse        measure Tidings, then Synapse, and compare them (the default)\
    \n  --only-tidings   measure Tidings alone (Synapse's setup takes minutes)\
    \n  --seconds N      how long the load runs (default 10)\
    \n  --concurrency N  PUTs in flight at once, 1..=100 (default 48)\
    \n\nTIDINGS_BIN names the server binary; unset, target/release/tidings is used.\
    \nTIDINGS_SYNAPSE_PYTHON names a Python with Synapse installed; unset, \
    sytest/synapse/install.sh makes target/bench-synapse-venv.";

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args = Args { seconds: 10, concurrency: 48, synapse: true };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = |name: &str| -> Result<u64, String> {
                let raw = it.next().ok_or_else(|| format!("{name} needs a value"))?;
                raw.parse().map_err(|_| format!("{name}: not a whole number: {raw}"))
            };
            match arg.as_str() {
                "--seconds" => args.seconds = value("--seconds")?,
                "--concurrency" => {
                    args.concurrency = usize::try_from(value("--concurrency")?).map_err(|e| e.to_string())?
                }
                "--synapse" => args.synapse = true,
                "--only-tidings" => args.synapse = false,
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        if args.seconds == 0 {
            return Err("--seconds must be at least 1".to_owned());
        }
        if !(1..=TARGETS).contains(&args.concurrency) {
            return Err(format!("--concurrency must be 1..={TARGETS} (each worker owns its own targets)"));
        }
        Ok(args)
    }
}

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("presence-bench: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tidings_sytest::bench::run_against_release("presence-bench", || run(args))
}

async fn run(args: Args) -> ExitCode {
    print_banner(args);
    // Install Synapse first: a failure to do so should not wait for Tidings' run.
    let python = if args.synapse {
        match tidings_sytest::synapse::install().await {
            Ok(python) => Some(python),
            Err(e) => {
                eprintln!("presence-bench: cannot install Synapse: {e}\n(--only-tidings measures Tidings alone)");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let tidings = match measure(Server::start_tidings().await, args).await {
        Ok(figures) => figures,
        Err(e) => {
            eprintln!("presence-bench: Tidings: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tidings_clean = tidings.clean();
    if !tidings_clean {
        println!("RESULT: problems seen on Tidings (see its counters above)");
    }
    let Some(python) = python else {
        return if tidings_clean { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    };
    match measure(Server::start_synapse(&python).await, args).await {
        Ok(synapse) => figures::print_comparison(&tidings, &synapse),
        Err(e) => {
            eprintln!("presence-bench: Synapse: {e}");
            return ExitCode::FAILURE;
        }
    }
    if tidings_clean { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn print_banner(args: Args) {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let bin = tidings_sytest::tidings_bin();
    println!("presence-bench: {TARGETS} targets, {WATCHERS} watchers ({} per target)", WATCHERS / TARGETS);
    println!("Tidings binary: {}", bin.display());
    if !bin.to_string_lossy().contains("release") {
        println!("WARNING: TIDINGS_BIN does not look like a release build; figures will be off");
    }
    println!(
        "machine: {cores} cores, shared by the server, the load generator and all {WATCHERS} watchers \
         (this is not the server alone)"
    );
    if args.synapse {
        println!(
            "servers: Tidings, then Synapse under the same load (Synapse's setup takes several minutes; \
             --only-tidings skips it)"
        );
    }
}

/// Sets up `server`, runs the load against it, stops it and prints its figures.
async fn measure(server: Result<Server, String>, args: Args) -> Result<Figures, String> {
    let mut server = server?;
    let kind = server.kind();
    let name = kind.name();
    let pid = server.pid().ok_or_else(|| "the server has no pid".to_owned())?;
    println!("[{name}] server: {} (pid {pid})", server.base_url());
    let pop = setup::populate(&server).await;
    let plan = load::Plan {
        seconds: args.seconds,
        concurrency: args.concurrency,
        tolerances: kind.tolerances(),
        sync_query: kind.sync_query(),
    };
    let raw = load::run(&server.base_url(), pid, &pop, &plan, name).await;
    let exit = server.stop().await;
    let mut figures = Figures::new(kind, pop.took, args.concurrency, raw?);
    figures.exit = exit;
    figures.log_problems = server.log_problems();
    figures.print();
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use crate::contender::Kind;

    #[test]
    fn only_synapse_watchers_add_to_their_sync() {
        assert!(Kind::Tidings.sync_query().is_empty());
        assert!(Kind::Synapse.sync_query().contains("set_presence=offline"));
    }
}
