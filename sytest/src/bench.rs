//! What the benchmark binaries share: running against the release build of the
//! server, and the tokio runtime around the benchmark itself.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{Client, Session};

/// Run `bench` (named `name` in messages) against the release server: if
/// `TIDINGS_BIN` is unset, find `target/release/tidings` and run this program again
/// with it set (setting it in-process would need `unsafe`), else run `bench` on a
/// multi-threaded runtime.
pub fn run_against_release<F, Fut>(name: &str, bench: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ExitCode>,
{
    if std::env::var_os("TIDINGS_BIN").is_none() {
        return rerun_with_release_binary(name);
    }
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(bench()),
        Err(e) => {
            eprintln!("{name}: cannot start the tokio runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn rerun_with_release_binary(name: &str) -> ExitCode {
    let mut target_dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        target_dirs.push(PathBuf::from(dir));
    }
    target_dirs.extend(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().map(|d| d.join("target")));
    let Some(bin) = target_dirs.iter().map(|d| d.join("release").join("tidings")).find(|p| p.is_file()) else {
        eprintln!(
            "{name}: no release build of the server (target/release/tidings) was found.\n\
             Build it first: cargo build --release -p tidings\n\
             (or set TIDINGS_BIN to the server binary to benchmark)"
        );
        return ExitCode::FAILURE;
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("{name}: cannot find my own executable to re-run it: {e}");
            return ExitCode::FAILURE;
        }
    };
    match std::process::Command::new(exe).args(std::env::args_os().skip(1)).env("TIDINGS_BIN", &bin).status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1)),
        Err(e) => {
            eprintln!("{name}: cannot re-run myself with TIDINGS_BIN={}: {e}", bin.display());
            ExitCode::FAILURE
        }
    }
}

/// Runs `job(0..count)` with at most `width` in flight; the results in index order.
pub async fn concurrently<T, F, Fut>(count: usize, width: usize, job: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..width.min(count) {
        let (job, next) = (Arc::clone(&job), Arc::clone(&next));
        set.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return done;
                }
                done.push((i, job(i).await));
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(done) => all.extend(done),
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("a setup task was cancelled: {e}"),
            },
        }
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

/// Register `names` with `password` over HTTP, `width` at a time; sessions in order.
pub async fn register_all(client: Client, names: Vec<String>, password: &str, width: usize) -> Vec<Session> {
    let names = Arc::new(names);
    let password = Arc::<str>::from(password);
    concurrently(names.len(), width, move |i| {
        let (client, names, password) = (client.clone(), Arc::clone(&names), Arc::clone(&password));
        async move { client.register(&names[i], &password).await }
    })
    .await
}
