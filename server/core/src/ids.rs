//! User IDs: parsing what clients send and checking localparts we create.

use ruma::{OwnedUserId, UserId};

use crate::error::{Error, ErrorKind, Result};

/// Parse a full user ID (`@name:server`), answering `M_INVALID_PARAM` if it is not one.
pub fn parse_user_id(raw: &str) -> Result<OwnedUserId> {
    UserId::parse(raw).map_err(|e| Error::invalid_param(format!("'{raw}' is not a valid user ID: {e}")))
}

/// Turn what a client typed at login (a localpart or a full ID) into a user ID on `server_name`.
pub fn user_id_from_login(raw: &str, server_name: &str) -> Result<OwnedUserId> {
    if raw.starts_with('@') {
        return parse_user_id(raw);
    }
    parse_user_id(&format!("@{}:{server_name}", raw.to_lowercase()))
}

/// Check a localpart for a new account: the spec's historical grammar, lower case only.
pub fn check_new_localpart(localpart: &str) -> Result<()> {
    let ok_char = |c: char| matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-' | '/' | '+');
    if localpart.is_empty() || localpart.len() > 200 || !localpart.chars().all(ok_char) {
        return Err(Error::new(
            ErrorKind::InvalidUsername,
            "user names may contain only a-z, 0-9, '.', '_', '=', '-', '/' and '+'",
        ));
    }
    Ok(())
}

/// Whether `user` belongs to this server.
pub fn is_local(user: &UserId, server_name: &str) -> bool {
    user.server_name().as_str() == server_name
}

/// Lower-case hex of `bytes`, without a `format!` per byte: token hashes are
/// computed on every authenticated request.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localparts() {
        assert!(check_new_localpart("alice.b-1").is_ok());
        assert_eq!(check_new_localpart("Alice").unwrap_err().kind(), ErrorKind::InvalidUsername);
        assert!(check_new_localpart("").is_err());
        assert!(check_new_localpart("a b").is_err());
    }

    #[test]
    fn login_names() {
        let id = user_id_from_login("Bob", "hs.test").expect("valid");
        assert_eq!(id.as_str(), "@bob:hs.test");
        let id = user_id_from_login("@bob:other.test", "hs.test").expect("valid");
        assert_eq!(id.as_str(), "@bob:other.test");
        assert!(user_id_from_login("@nocolon", "hs.test").is_err());
    }

    #[test]
    fn hex_is_lower_case_and_two_digits_a_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(super::hex(&[]), "");
    }
}
