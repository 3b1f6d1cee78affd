//! `tidings link-key`: print this server's link public key, for the `link_key` of
//! this server's entry in a peer's `[[federation.peers]]`. A site whose only path to
//! its peer is the line cannot fetch the peer's key document, so each operator copies
//! this value to the other site.
//!
//! It reads `<data_dir>/link.key`, the file `tidings serve` uses, and creates it when
//! it is missing, exactly as `serve` would (as `serve` also creates the signing key
//! on first start): the keys can then be exchanged before either server first runs
//! with its peers configured. An unreadable or malformed file is an error, never
//! replaced.

use tidings_federation::link::LinkKey;

use crate::config::Config;

/// The server's link public key in the encoding the key document publishes
/// (`tidings.link_key`: unpadded standard base64 of 32 bytes).
pub fn public_link_key(config: &Config) -> Result<String, String> {
    crate::config::create_data_dir(&config.data_dir)?;
    Ok(LinkKey::load_or_create(&config.data_dir)?.public_base64())
}
