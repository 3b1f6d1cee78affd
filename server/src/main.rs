//! `tidings`: the Tidings homeserver. `tidings serve` runs it; `tidings create-user`
//! adds an account; `tidings link-key` prints the link's public key for the peers'
//! `link_key`. See README.md and spec/ for what it does and why.

mod admin;
mod bodies;
mod config;
mod create_user;
mod link_key;
mod listener;
mod serve;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::create_user::PasswordSource;

/// mimalloc rather than glibc's malloc: argon2 allocates 19 MiB per password hash on
/// blocking-pool threads, and glibc kept those buffers, growing the server by about
/// 4 MiB per registration (4.5 GiB after 1,100 in the benchmark). mimalloc returns them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A federated presence and feed-sync homeserver for thin, costly links.
#[derive(Debug, Parser)]
#[command(name = "tidings", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the homeserver in the foreground.
    Serve {
        /// Configuration file (TOML). Default: $TIDINGS_CONFIG, else built-in defaults.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Create an account straight in the database (also while the server runs).
    CreateUser(CreateUserArgs),
    /// Print this server's link public key (creating the key as `serve` would), for
    /// the `link_key` of this server's entry in a peer's configuration.
    LinkKey {
        /// Configuration file (TOML) of the server. Default: $TIDINGS_CONFIG, else built-in defaults.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct CreateUserArgs {
    /// Configuration file (TOML) of the server. Default: $TIDINGS_CONFIG, else built-in defaults.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// The new user's localpart (the "alice" of @alice:server).
    #[arg(long, value_name = "LOCALPART")]
    user: String,
    /// The password (visible to other local users in the process list; prefer --password-file).
    #[arg(long, value_name = "PW", conflicts_with = "password_file", required_unless_present = "password_file")]
    password: Option<String>,
    /// Read the password from this file, or from standard input with "-".
    #[arg(long, value_name = "PATH")]
    password_file: Option<PathBuf>,
    /// Make the user a server admin.
    #[arg(long)]
    admin: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve { config } => Config::load(Config::resolve_path(config).as_deref()).and_then(|config| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the runtime: {e}"))?;
            runtime.block_on(serve::serve(config))
        }),
        Command::CreateUser(args) => Config::load(Config::resolve_path(args.config).as_deref()).and_then(|config| {
            let source = match (args.password, args.password_file) {
                (Some(pw), _) => PasswordSource::Literal(pw),
                (None, Some(path)) => PasswordSource::File(path),
                (None, None) => return Err("give --password or --password-file".into()),
            };
            let user = create_user::create_user(&config, &args.user, source, args.admin)?;
            println!("created {user}{}", if args.admin { " (admin)" } else { "" });
            Ok(())
        }),
        Command::LinkKey { config } => Config::load(Config::resolve_path(config).as_deref()).and_then(|config| {
            println!("{}", link_key::public_link_key(&config)?);
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("tidings: {reason}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
