//! `room-bench`: how many room messages per second a server takes while every member
//! of every room long-polls `/sync`, and how soon each member sees each message:
//! Tidings, then Synapse under the same load in the same run, and the ratio.
//!
//! ```text
//! cargo build --release -p tidings -p tidings-sytest && cargo run --release -p tidings-sytest --bin room-bench [-- --only-tidings --seconds N --concurrency N]
//! ```
//!
//! # The load
//!
//! * Setup: 1,000 users register (16 at a time); 100 rooms of 10 members each: the
//!   first member creates a private room inviting the other 9, who join. Every member
//!   runs an initial `/sync`.
//! * Members: all 1,000 long-poll `/sync?since=...&timeout=30000` with a filter that
//!   keeps only `m.room.message` in a timeline of at most 100 events (and, on Synapse,
//!   `set_presence=offline`). When a `/sync` returns, the member notes the instant
//!   against every message it carries (`body: "seq N"`).
//! * Senders: `--concurrency` workers (default 100), each owning a fixed share of the
//!   rooms, send `PUT /rooms/{roomId}/send/m.room.message/{txnId}` back to back, round
//!   robin over their rooms, for `--seconds` (default 10), as a rotating member of the
//!   room. The instant each send starts is recorded.
//! * Drain: until every member saw the last accepted message of its room (10 s on
//!   Tidings, 30 s on Synapse).
//!
//! # Figures
//!
//! `msgs_per_s` (sends answered 200 per second of load), `send_latency_*`,
//! `delivery_*` (for each (member, message): the member's `/sync` return minus the
//! send's start; it includes the send itself), `deliveries` / `expected`, `missing`
//! (messages a member never saw), `duplicates` (seen twice), `limited` (timelines cut
//! by the limit; the message then counts as missing), and the server's peak RSS
//! (`VmHWM`) over the load. Everything shares one machine's cores.

mod load;
// Shared with presence-bench, which reads all of what it measures; this bench reads less.
#[allow(dead_code)]
#[path = "../presence-bench/procfs.rs"]
mod procfs;

use std::process::ExitCode;

use tidings_sytest::synapse::SynapseServer;
use tidings_sytest::{ServerOptions, TestServer};

/// Rooms.
pub const ROOMS: usize = 100;
/// Members per room.
pub const MEMBERS: usize = 10;

/// Command-line options.
#[derive(Debug, Clone, Copy)]
pub struct Args {
    /// How long the load runs.
    pub seconds: u64,
    /// Sends in flight at once.
    pub concurrency: usize,
    synapse: bool,
}

const USAGE: &str = "usage: room-bench [--synapse | --only-tidings] [--seconds N] [--concurrency N]\n\
    \n  --only-tidings   measure Tidings alone\
    \n  --seconds N      how long the load runs (default 10)\
    \n  --concurrency N  sends in flight at once, 1..=100 (default 100)\
    \n\nTIDINGS_SYNAPSE_PYTHON names a Python with Synapse installed; unset, sytest/synapse/install.sh makes one.";

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args = Args { seconds: 10, concurrency: 100, synapse: true };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = |name: &str| -> Result<u64, String> {
                let raw = it.next().ok_or_else(|| format!("{name} needs a value"))?;
                raw.parse().map_err(|_| format!("{name}: not a whole number: {raw}"))
            };
            match arg.as_str() {
                "--seconds" => args.seconds = value("--seconds")?.max(1),
                "--concurrency" => args.concurrency = usize::try_from(value("--concurrency")?).unwrap_or(1),
                "--synapse" => args.synapse = true,
                "--only-tidings" => args.synapse = false,
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        if !(1..=ROOMS).contains(&args.concurrency) {
            return Err(format!("--concurrency must be 1..={ROOMS}"));
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
            eprintln!("room-bench: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tidings_sytest::bench::run_against_release("room-bench", || run(args))
}

async fn run(args: Args) -> ExitCode {
    println!(
        "room-bench: {ROOMS} rooms x {MEMBERS} members, all long-polling; {} s of sends, {} in flight; \
         {} cores shared by server and load",
        args.seconds,
        args.concurrency,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let python = if args.synapse {
        match tidings_sytest::synapse::install().await {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("room-bench: cannot install Synapse: {e} (--only-tidings measures Tidings alone)");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let opts =
        ServerOptions { rate_limits: false, rust_log: Some("warn".into()), ..ServerOptions::named("bench.test") }
            .with_key("", "max_connections", "4096");
    let mut tidings = match TestServer::try_start(opts).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("room-bench: cannot start Tidings: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(pid) = tidings.pid() else { return ExitCode::FAILURE };
    let ours = load::measure("Tidings", tidings.client(), pid, args, false).await;
    tidings.stop().await;
    let ours = match ours {
        Ok(f) => f,
        Err(e) => {
            eprintln!("room-bench: Tidings: {e}");
            return ExitCode::FAILURE;
        }
    };
    ours.print("Tidings");
    let clean = ours.clean();
    let Some(python) = python else {
        return if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    };
    let mut synapse = match SynapseServer::start(&python, "localhost").await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("room-bench: cannot start Synapse: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(pid) = synapse.pid() else { return ExitCode::FAILURE };
    let theirs = load::measure("Synapse", synapse.client(), pid, args, true).await;
    synapse.stop().await;
    match theirs {
        Ok(theirs) => {
            theirs.print("Synapse");
            load::Figures::compare(&ours, &theirs);
        }
        Err(e) => {
            eprintln!("room-bench: Synapse: {e}");
            return ExitCode::FAILURE;
        }
    }
    if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
