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
//!   robin over their rooms, for `--seconds` (default 30; in 10 s each of Synapse's
//!   senders finishes one message, too few for a rate), as a rotating member of the
//!   room. The instant each send starts is recorded.
//! * Drain: until every member saw the last accepted message of its room (10 s on
//!   Tidings, 30 s on Synapse).
//! * Order: Synapse first, then Tidings under the same load, then Tidings again with
//!   fresh users and rooms, *paced*: each sender keeps to a schedule so that the
//!   whole offered rate is 100 times Synapse's measured messages per second (or
//!   `--rate N`). The first run gives the ratio of what each server accepts flat
//!   out; the paced one the delivery delay at that rate, which is what the aim
//!   (p99 under 50 ms at 100 times Synapse's rate) is about: flat out, with 100
//!   sends always in flight, a send's own wait is 100 / (messages per second).
//! * Clients keep their connections open between requests, as real clients do.
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
    /// The paced run's messages per second, if set (else 100 times Synapse's).
    pub rate: Option<f64>,
    synapse: bool,
}

const USAGE: &str = "usage: room-bench [--synapse | --only-tidings] [--seconds N] [--concurrency N] [--rate N]\n\
    \n  --only-tidings   measure Tidings alone (no paced run unless --rate is given)\
    \n  --seconds N      how long each load runs (default 30)\
    \n  --concurrency N  sends in flight at once, 1..=100 (default 100)\
    \n  --rate N         the paced run's messages per second (default: 100 times Synapse's)\
    \n\nTIDINGS_SYNAPSE_PYTHON names a Python with Synapse installed; unset, sytest/synapse/install.sh makes one.";

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args = Args { seconds: 30, concurrency: 100, rate: None, synapse: true };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = |name: &str| -> Result<u64, String> {
                let raw = it.next().ok_or_else(|| format!("{name} needs a value"))?;
                raw.parse().map_err(|_| format!("{name}: not a whole number: {raw}"))
            };
            match arg.as_str() {
                "--seconds" => args.seconds = value("--seconds")?.max(1),
                "--concurrency" => args.concurrency = usize::try_from(value("--concurrency")?).unwrap_or(1),
                "--rate" => args.rate = Some(value("--rate")?.max(1) as f64),
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
    // Synapse first: its rate sets the paced run's (100 times it).
    let theirs = if args.synapse {
        match synapse_figures(args).await {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("room-bench: Synapse: {e} (--only-tidings measures Tidings alone)");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let paced_rate = args.rate.or_else(|| theirs.as_ref().map(|t| t.msgs_per_s() * 100.0));
    let (ours, paced) = match tidings_figures(args, paced_rate).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("room-bench: Tidings: {e}");
            return ExitCode::FAILURE;
        }
    };
    ours.print("Tidings");
    if let Some(paced) = &paced {
        paced.print("Tidings paced");
    }
    if let Some(theirs) = &theirs {
        theirs.print("Synapse");
        load::Figures::compare(&ours, theirs);
    }
    if let (Some(paced), Some(rate)) = (&paced, paced_rate) {
        load::Figures::paced_summary(paced, rate);
    }
    let clean = ours.clean() && paced.as_ref().is_none_or(load::Figures::clean);
    if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Synapse under the saturating load.
async fn synapse_figures(args: Args) -> Result<load::Figures, String> {
    let python = tidings_sytest::synapse::install().await.map_err(|e| format!("cannot install Synapse: {e}"))?;
    let mut synapse =
        SynapseServer::start(&python, "localhost").await.map_err(|e| format!("cannot start Synapse: {e}"))?;
    let pid = synapse.pid().ok_or("Synapse has no pid")?;
    let theirs = load::measure("Synapse", synapse.client().keep_alive(), pid, args, None, true).await;
    synapse.stop().await;
    theirs
}

/// Tidings under the saturating load, then (with fresh users and rooms on the same
/// server) paced at `paced_rate` messages per second, if given.
async fn tidings_figures(
    args: Args,
    paced_rate: Option<f64>,
) -> Result<(load::Figures, Option<load::Figures>), String> {
    let opts =
        ServerOptions { rate_limits: false, rust_log: Some("warn".into()), ..ServerOptions::named("bench.test") }
            .with_key("", "max_connections", "4096");
    let mut tidings = TestServer::try_start(opts).await.map_err(|e| format!("cannot start Tidings: {e}"))?;
    let pid = tidings.pid().ok_or("Tidings has no pid")?;
    let client = tidings.client().keep_alive();
    let ours = load::measure("Tidings", client.clone(), pid, args, None, false).await;
    let paced = match (&ours, paced_rate) {
        (Ok(_), Some(rate)) => Some(load::measure("Tidings paced", client, pid, args, Some(rate), false).await),
        _ => None,
    };
    tidings.stop().await;
    Ok((ours?, paced.transpose()?))
}
