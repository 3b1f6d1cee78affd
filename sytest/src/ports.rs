//! Free loopback ports.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

/// Ports already handed out by this process; never handed out twice.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A currently free TCP port on 127.0.0.1.
///
/// Binds `127.0.0.1:0`, reads the port the OS chose and drops the listener. Within one
/// test process no port is returned twice, so parallel tests do not collide with each
/// other; another process may still take the port before the server binds it, which
/// [`crate::TestServer::start`] copes with by retrying on a new port.
///
/// # Panics
///
/// When no loopback port can be bound at all.
pub fn free_port() -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding 127.0.0.1:0 to find a free port");
        let port = listener.local_addr().expect("local address of a bound listener").port();
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("no free loopback port found that this process has not used already");
}
