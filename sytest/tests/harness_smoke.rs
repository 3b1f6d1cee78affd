//! Smoke test of the harness itself: a real server starts, answers `/versions`,
//! restarts on the same port and stops gracefully.
//!
//! Needs the binary: `cargo build -p tidings` first (or set `TIDINGS_BIN`).

use tidings_sytest::{ServerOptions, TestServer};

#[tokio::test]
async fn server_starts_answers_versions_and_stops() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    assert!(hs.is_running());
    assert!(hs.config_path().is_file());

    let (status, body) = hs.client().get("/_matrix/client/versions").await;
    assert_eq!(status, 200, "{body}");
    let versions = body["versions"].as_array().unwrap_or_else(|| panic!("`versions` is not an array: {body}"));
    assert!(!versions.is_empty(), "{body}");
    assert!(versions.iter().all(|v| v.is_string()), "{body}");

    let port = hs.port();
    hs.restart().await;
    assert_eq!(hs.port(), port, "a restart keeps the port");
    let (status, body) = hs.client().get("/_matrix/client/versions").await;
    assert_eq!(status, 200, "{body}");

    let exit = hs.stop().await.expect("the server was running");
    assert!(exit.success(), "SIGTERM should shut down gracefully, got {exit}");
    assert!(!hs.is_running());
    assert!(
        hs.client()
            .try_request(tidings_sytest::Method::GET, "/_matrix/client/versions", None, None, None)
            .await
            .is_err(),
        "nothing answers after stop()"
    );
}
