//! The responder's side of the handshake on arbitrary first messages, and the
//! initiator's on arbitrary answers: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_federation::link::LinkKey;
use tidings_federation::link::noise::{self, Initiator, MSG1_LEN, MSG2_LEN};

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
});
