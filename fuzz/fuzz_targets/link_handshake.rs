//! The responder's side of the handshake on arbitrary first messages (full and
//! resumed), and the initiator's on arbitrary answers: errors, never panics.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tidings_federation::link::LinkKey;
use tidings_federation::link::noise::{self, Initiator, MSG1_LEN, MSG2_LEN};
use tidings_federation::link::resume::{Hello, RESUME_LEN, Secret, Tickets};

fuzz_target!(|data: &[u8]| {
    let responder = LinkKey::from_secret([7; 32]);
    let initiator = LinkKey::from_secret([9; 32]);
    if data.len() >= MSG1_LEN {
        let mut msg1 = [0u8; MSG1_LEN];
        msg1.copy_from_slice(&data[..MSG1_LEN]);
        let _ = noise::respond(&responder, &[*initiator.public()], &msg1);
    }
    if data.len() >= MSG2_LEN
        && let Ok((init, _)) = Initiator::start(&initiator, responder.public())
    {
        let mut msg2 = [0u8; MSG2_LEN];
        msg2.copy_from_slice(&data[..MSG2_LEN]);
        let _ = init.finish(&msg2);
    }
    // A resume message against a responder that holds a ticket of the initiator's:
    // the input as it comes, and with the real ticket id in it (so the tag check runs).
    if let Some(&first) = data.first()
        && Hello::of(first) == Some(Hello::Resume)
        && data.len() >= RESUME_LEN
    {
        let now = Instant::now();
        let secret = Secret::from_handshake(&[1; 32], &[2; 32], &[3; 32]);
        let tickets = Tickets::new(*responder.public(), 86_400_000);
        let key_of = |_: &str| Some(*initiator.public());
        let mut msg = [0u8; RESUME_LEN];
        msg.copy_from_slice(&data[..RESUME_LEN]);
        tickets.store("initiator", *initiator.public(), secret.clone(), Duration::ZERO, now);
        let _ = tickets.accept(&msg, key_of, now);
        tickets.store("initiator", *initiator.public(), secret.clone(), Duration::ZERO, now);
        msg[1..9].copy_from_slice(&secret.id());
        let _ = tickets.accept(&msg, key_of, now);
    }
});
