//! `Authorization: X-Matrix ...`: signing outgoing federation requests and checking
//! incoming ones, as in the spec's "Request Authentication".
//!
//! The signed object is `{"method", "uri", "origin", "destination", "content"?}` in
//! canonical JSON, where `uri` is the path and query exactly as sent and `content` is
//! the JSON body (left out when there is none). `destination` is the receiver's
//! configured `server_name`, never the URL's host.

use std::fmt;

use ruma::canonical_json::try_from_json_map;
use ruma::serde::Base64;
use ruma::signatures::{to_canonical_json_string_for_signing, verify_canonical_json_bytes};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, SigningKeyAlgorithm};

use crate::keys::ServerKey;

/// The auth scheme's name (compared case-insensitively).
pub const SCHEME: &str = "X-Matrix";

/// Why a federation request was not authenticated; each means 401 `M_UNAUTHORIZED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header, or not of the `X-Matrix` scheme.
    Missing,
    /// An `X-Matrix` header that does not follow the grammar, lacks `origin`, `key` or
    /// `sig`, repeats a parameter or carries a body that is not canonical JSON.
    Malformed,
    /// The header's `destination` is not this server's name.
    WrongDestination,
    /// The origin's key with this ID is not known and could not be fetched.
    UnknownKey,
    /// The signature does not match the request.
    BadSignature,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthError::Missing => "missing X-Matrix Authorization header",
            AuthError::Malformed => "malformed X-Matrix Authorization header",
            AuthError::WrongDestination => "X-Matrix destination is not this server",
            AuthError::UnknownKey => "unknown signing key of the origin server",
            AuthError::BadSignature => "X-Matrix signature does not verify",
        })
    }
}

impl std::error::Error for AuthError {}

/// The parameters of an `X-Matrix` Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XMatrixAuth {
    /// The sending server's name.
    pub origin: String,
    /// The receiving server's name; servers older than spec v1.3 leave it out.
    pub destination: Option<String>,
    /// The signing key's ID, e.g. `ed25519:abc123`.
    pub key: String,
    /// The signature, base64 as it was sent.
    pub sig: String,
}

/// The object an X-Matrix signature covers. `content` that is not canonical JSON
/// (floats, integers beyond ±(2^53 - 1)) is an error.
pub fn request_object(
    origin: &str,
    destination: &str,
    method: &str,
    uri: &str,
    content: Option<&serde_json::Value>,
) -> Result<CanonicalJsonObject, ruma::CanonicalJsonError> {
    let mut object = CanonicalJsonObject::new();
    object.insert("method".to_owned(), CanonicalJsonValue::String(method.to_owned()));
    object.insert("uri".to_owned(), CanonicalJsonValue::String(uri.to_owned()));
    object.insert("origin".to_owned(), CanonicalJsonValue::String(origin.to_owned()));
    object.insert("destination".to_owned(), CanonicalJsonValue::String(destination.to_owned()));
    if let Some(content) = content {
        let content = match content {
            serde_json::Value::Object(map) => CanonicalJsonValue::Object(try_from_json_map(map.clone())?),
            other => CanonicalJsonValue::try_from(other.clone())?,
        };
        object.insert("content".to_owned(), content);
    }
    Ok(object)
}

/// The `Authorization` header value for a request from `origin` to `destination`:
/// `X-Matrix origin="..",destination="..",key="ed25519:..",sig=".."`.
///
/// `uri_path_and_query` is the request target exactly as it goes on the wire (e.g.
/// `/_matrix/federation/v1/send/123`), `method` upper case, `content` the JSON body.
/// Content that cannot be canonical JSON cannot be signed; see
/// [`try_authorization_header`] to learn of it. Here it is logged and the header
/// carries a signature the receiver will refuse.
pub fn authorization_header(
    key: &ServerKey,
    origin: &str,
    destination: &str,
    method: &str,
    uri_path_and_query: &str,
    content: Option<&serde_json::Value>,
) -> String {
    try_authorization_header(key, origin, destination, method, uri_path_and_query, content).unwrap_or_else(|e| {
        tracing::error!(%destination, %method, uri = %uri_path_and_query, error = %e,
            "request body is not canonical JSON; it cannot be signed");
        format_header(origin, destination, key.key_id(), "")
    })
}

/// Like [`authorization_header`], but says when `content` is not canonical JSON.
pub fn try_authorization_header(
    key: &ServerKey,
    origin: &str,
    destination: &str,
    method: &str,
    uri_path_and_query: &str,
    content: Option<&serde_json::Value>,
) -> Result<String, ruma::CanonicalJsonError> {
    let object = request_object(origin, destination, method, uri_path_and_query, content)?;
    let canonical = to_canonical_json_string_for_signing(&object).map_err(|e| match e {
        ruma::signatures::JsonError::Serde(e) => ruma::CanonicalJsonError::InvalidRawValue(e),
        other => ruma::CanonicalJsonError::Other(other.to_string()),
    })?;
    let sig = key.sign_bytes_base64(canonical.as_bytes());
    Ok(format_header(origin, destination, key.key_id(), &sig))
}

fn format_header(origin: &str, destination: &str, key_id: &str, sig: &str) -> String {
    format!(
        "{SCHEME} origin={},destination={},key={},sig={}",
        quote(origin),
        quote(destination),
        quote(key_id),
        quote(sig)
    )
}

/// A quoted-string: `"` and `\` escaped with `\`.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Parse an `Authorization` header value of the `X-Matrix` scheme.
///
/// Follows RFC 9110's `credentials = auth-scheme 1*SP #auth-param` with
/// `auth-param = token BWS "=" BWS ( token / quoted-string )`: parameter names are
/// case-insensitive, values quoted or not, any order, spaces around `=` and `,`,
/// empty list elements and unknown parameters ignored. Unquoted values are read
/// up to the next `,` or space, so an unquoted `key=ed25519:abc` or a base64 `sig`
/// with `/` passes too. `destination` is optional (older servers); a repeated
/// parameter is malformed.
pub fn parse_authorization(header_value: &str) -> Result<XMatrixAuth, AuthError> {
    let value = header_value.trim_matches(is_ows);
    if value.is_empty() {
        return Err(AuthError::Missing);
    }
    let scheme_end = value.find(is_ows).unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return Err(AuthError::Missing);
    }
    let params = parse_params(rest).map_err(|e| {
        tracing::debug!(error = e, "malformed X-Matrix header");
        AuthError::Malformed
    })?;

    let (mut origin, mut destination, mut key, mut sig) = (None, None, None, None);
    for (name, value) in params {
        let slot = match name.to_ascii_lowercase().as_str() {
            "origin" => &mut origin,
            "destination" => &mut destination,
            "key" => &mut key,
            "sig" => &mut sig,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            tracing::debug!(parameter = %name, "X-Matrix parameter given twice");
            return Err(AuthError::Malformed);
        }
    }
    let (Some(origin), Some(key), Some(sig)) = (origin, key, sig) else {
        tracing::debug!("X-Matrix header lacks origin, key or sig");
        return Err(AuthError::Malformed);
    };
    if ruma::ServerName::parse(&origin).is_err() || destination.as_deref().is_some_and(|d| d.is_empty()) {
        return Err(AuthError::Malformed);
    }
    if key.split_once(':').is_none_or(|(algorithm, version)| algorithm.is_empty() || version.is_empty()) {
        return Err(AuthError::Malformed);
    }
    if sig.is_empty() || Base64::<ruma::serde::base64::Standard>::parse(&sig).is_err() {
        return Err(AuthError::Malformed);
    }
    Ok(XMatrixAuth { origin, destination, key, sig })
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `#auth-param` after the scheme: a comma-separated list with optional whitespace.
fn parse_params(input: &str) -> Result<Vec<(String, String)>, &'static str> {
    let mut params = Vec::new();
    let mut rest = input;
    loop {
        rest = rest.trim_start_matches(|c| is_ows(c) || c == ',');
        if rest.is_empty() {
            return Ok(params);
        }
        let name_end = rest.find(|c: char| !is_tchar(c)).unwrap_or(rest.len());
        if name_end == 0 {
            return Err("expected a parameter name");
        }
        let name = &rest[..name_end];
        rest = rest[name_end..].trim_start_matches(is_ows);
        rest = rest.strip_prefix('=').ok_or("expected '=' after a parameter name")?;
        rest = rest.trim_start_matches(is_ows);
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut unescaped = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    '\\' => unescaped.push(chars.next().ok_or("unterminated quoted-string")?.1),
                    c if c.is_control() && c != '\t' => return Err("control character in a quoted-string"),
                    c => unescaped.push(c),
                }
            }
            rest = &quoted[end.ok_or("unterminated quoted-string")?..];
            value = unescaped;
        } else {
            let end = rest.find(|c: char| c == ',' || is_ows(c)).unwrap_or(rest.len());
            let raw = &rest[..end];
            if raw.is_empty() || raw.contains(|c: char| c == '"' || c.is_control()) {
                return Err("bad unquoted value");
            }
            value = raw.to_owned();
            rest = &rest[end..];
        }
        params.push((name.to_owned(), value));
        rest = rest.trim_start_matches(is_ows);
        if !rest.is_empty() && !rest.starts_with(',') {
            return Err("expected ',' between parameters");
        }
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Check a parsed header against the request it came with.
///
/// `expected_destination` is this server's `server_name`; `method` and `uri` (path
/// and query as received, not decoded) and `content` (the JSON body, `None` when
/// empty) are the request's; `public_key_b64` is the origin's key `auth.key`.
pub fn verify_request(
    auth: &XMatrixAuth,
    expected_destination: &str,
    method: &str,
    uri: &str,
    content: Option<&serde_json::Value>,
    public_key_b64: &str,
) -> Result<(), AuthError> {
    if auth.destination.as_deref().is_some_and(|d| d != expected_destination) {
        return Err(AuthError::WrongDestination);
    }
    let Some(("ed25519", _)) = auth.key.split_once(':') else {
        return Err(AuthError::UnknownKey);
    };
    let public_key =
        Base64::<ruma::serde::base64::Standard>::parse(public_key_b64).map_err(|_| AuthError::UnknownKey)?;
    let sig = Base64::<ruma::serde::base64::Standard>::parse(&auth.sig).map_err(|_| AuthError::Malformed)?;
    let object = request_object(&auth.origin, expected_destination, method, uri, content).map_err(|e| {
        tracing::debug!(error = %e, "request body is not canonical JSON");
        AuthError::Malformed
    })?;
    let canonical = to_canonical_json_string_for_signing(&object).map_err(|_| AuthError::Malformed)?;
    verify_canonical_json_bytes(
        &SigningKeyAlgorithm::Ed25519,
        public_key.as_bytes(),
        sig.as_bytes(),
        canonical.as_bytes(),
    )
    .map_err(|e| {
        tracing::debug!(origin = %auth.origin, key = %auth.key, error = %e, "X-Matrix signature does not verify");
        AuthError::BadSignature
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> ServerKey {
        ServerKey::from_seed(&[9u8; 32], "abc123".to_owned()).expect("key")
    }

    const URI: &str = "/_matrix/federation/v1/send/17?x=1";

    #[test]
    fn header_round_trips_and_verifies() {
        let key = key();
        let body = json!({"edus": [{"edu_type": "m.presence", "content": {"push": []}}], "origin": "alpha.test"});
        let header = authorization_header(&key, "alpha.test", "beta.test:8448", "PUT", URI, Some(&body));
        assert!(header.starts_with(
            "X-Matrix origin=\"alpha.test\",destination=\"beta.test:8448\",key=\"ed25519:abc123\",sig=\""
        ));
        let auth = parse_authorization(&header).expect("parse");
        assert_eq!(auth.origin, "alpha.test");
        assert_eq!(auth.destination.as_deref(), Some("beta.test:8448"));
        assert_eq!(auth.key, "ed25519:abc123");
        let pk = key.public_key_base64();
        assert_eq!(verify_request(&auth, "beta.test:8448", "PUT", URI, Some(&body), pk), Ok(()));

        assert_eq!(verify_request(&auth, "gamma.test", "PUT", URI, Some(&body), pk), Err(AuthError::WrongDestination));
        assert_eq!(verify_request(&auth, "beta.test:8448", "POST", URI, Some(&body), pk), Err(AuthError::BadSignature));
        assert_eq!(
            verify_request(&auth, "beta.test:8448", "PUT", "/_matrix/federation/v1/send/18?x=1", Some(&body), pk),
            Err(AuthError::BadSignature)
        );
        let other_body = json!({"edus": [], "origin": "alpha.test"});
        assert_eq!(
            verify_request(&auth, "beta.test:8448", "PUT", URI, Some(&other_body), pk),
            Err(AuthError::BadSignature)
        );
        assert_eq!(verify_request(&auth, "beta.test:8448", "PUT", URI, None, pk), Err(AuthError::BadSignature));
        let other_key = ServerKey::from_seed(&[8u8; 32], "abc123".to_owned()).expect("key");
        assert_eq!(
            verify_request(&auth, "beta.test:8448", "PUT", URI, Some(&body), other_key.public_key_base64()),
            Err(AuthError::BadSignature)
        );
        // A forged origin: same signature, other claimed sender.
        let forged = XMatrixAuth { origin: "mallory.test".to_owned(), ..auth.clone() };
        assert_eq!(
            verify_request(&forged, "beta.test:8448", "PUT", URI, Some(&body), pk),
            Err(AuthError::BadSignature)
        );
        // A header without destination is still bound to ours through the signature.
        let no_dest = XMatrixAuth { destination: None, ..auth.clone() };
        assert_eq!(verify_request(&no_dest, "beta.test:8448", "PUT", URI, Some(&body), pk), Ok(()));
        assert_eq!(verify_request(&no_dest, "gamma.test", "PUT", URI, Some(&body), pk), Err(AuthError::BadSignature));
        let bad_key = XMatrixAuth { key: "curve25519:abc123".to_owned(), ..auth.clone() };
        assert_eq!(verify_request(&bad_key, "beta.test:8448", "PUT", URI, Some(&body), pk), Err(AuthError::UnknownKey));
    }

    #[test]
    fn get_without_body_verifies() {
        let key = key();
        let header =
            authorization_header(&key, "alpha.test", "beta.test", "GET", "/_matrix/federation/v1/version", None);
        let auth = parse_authorization(&header).expect("parse");
        let pk = key.public_key_base64();
        assert_eq!(verify_request(&auth, "beta.test", "GET", "/_matrix/federation/v1/version", None, pk), Ok(()));
        assert_eq!(
            verify_request(&auth, "beta.test", "GET", "/_matrix/federation/v1/version", Some(&json!({})), pk),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn signature_covers_the_spec_object() {
        // The spec's object, in canonical JSON, signed directly.
        let key = key();
        let header = authorization_header(&key, "a.test", "b.test", "PUT", "/p", Some(&json!({"b": 1, "a": "é"})));
        let canonical =
            r#"{"content":{"a":"é","b":1},"destination":"b.test","method":"PUT","origin":"a.test","uri":"/p"}"#;
        let auth = parse_authorization(&header).expect("parse");
        assert_eq!(auth.sig, key.sign_bytes_base64(canonical.as_bytes()));
    }

    #[test]
    fn floats_cannot_be_signed() {
        let key = key();
        let body = json!({"a": 1.5});
        assert!(try_authorization_header(&key, "a.test", "b.test", "PUT", "/p", Some(&body)).is_err());
        let header = authorization_header(&key, "a.test", "b.test", "PUT", "/p", Some(&body));
        assert_eq!(parse_authorization(&header), Err(AuthError::Malformed));
    }

    #[test]
    fn parser_edge_cases() {
        let sig = "dGVzdA";
        let expect = XMatrixAuth {
            origin: "origin.example.com".to_owned(),
            destination: Some("dest.example.com".to_owned()),
            key: "ed25519:key1".to_owned(),
            sig: sig.to_owned(),
        };
        for header in [
            r#"X-Matrix origin="origin.example.com",destination="dest.example.com",key="ed25519:key1",sig="dGVzdA""#,
            r#"X-Matrix origin=origin.example.com,destination=dest.example.com,key=ed25519:key1,sig=dGVzdA"#,
            r#"x-matrix sig="dGVzdA",key="ed25519:key1",destination="dest.example.com",origin="origin.example.com""#,
            "X-Matrix   origin = \"origin.example.com\" ,\tdestination=\"dest.example.com\" ,, key=\"ed25519:key1\", sig=dGVzdA,",
            r#"X-Matrix ORIGIN="origin.example.com",Destination="dest.example.com",KEY="ed25519:key1",Sig="dGVzdA",extra="x, y""#,
            r#"  X-Matrix origin="origin\.example.com",destination="dest.example.com",key="ed25519:key1",sig="dGVzdA"  "#,
        ] {
            assert_eq!(parse_authorization(header).as_ref(), Ok(&expect), "{header}");
        }
        // Padded signatures and '/' or '+' unquoted are read whole.
        let auth = parse_authorization("X-Matrix origin=a.test,key=ed25519:k,sig=ab+/cd==").expect("parse");
        assert_eq!(auth.sig, "ab+/cd==");
        assert_eq!(auth.destination, None);
        // Ports need quoting in the grammar but are read either way.
        let auth = parse_authorization(r#"X-Matrix origin="a.test:8448",key="ed25519:k",sig="dGVzdA""#).expect("parse");
        assert_eq!(auth.origin, "a.test:8448");

        assert_eq!(parse_authorization(""), Err(AuthError::Missing));
        assert_eq!(parse_authorization("   "), Err(AuthError::Missing));
        assert_eq!(parse_authorization("Bearer abc"), Err(AuthError::Missing));
        assert_eq!(parse_authorization("X-Matrixorigin=a"), Err(AuthError::Missing));
        for bad in [
            "X-Matrix",
            "X-Matrix origin=a.test,key=ed25519:k",
            "X-Matrix origin=a.test,sig=dGVzdA",
            "X-Matrix key=ed25519:k,sig=dGVzdA",
            "X-Matrix origin=a.test,origin=b.test,key=ed25519:k,sig=dGVzdA",
            r#"X-Matrix origin="a.test,key=ed25519:k,sig=dGVzdA"#,
            "X-Matrix origin a.test,key=ed25519:k,sig=dGVzdA",
            "X-Matrix origin=a.test key=ed25519:k,sig=dGVzdA",
            "X-Matrix origin=,key=ed25519:k,sig=dGVzdA",
            "X-Matrix origin=a.test,key=nocolon,sig=dGVzdA",
            "X-Matrix origin=a.test,key=ed25519:k,sig=!!!",
            "X-Matrix origin=not a server,key=ed25519:k,sig=dGVzdA",
            "X-Matrix origin=a.test,destination=\"\",key=ed25519:k,sig=dGVzdA",
            "X-Matrix =a.test",
        ] {
            assert_eq!(parse_authorization(bad), Err(AuthError::Malformed), "{bad}");
        }
    }

    #[test]
    fn errors_display() {
        for e in [
            AuthError::Missing,
            AuthError::Malformed,
            AuthError::WrongDestination,
            AuthError::UnknownKey,
            AuthError::BadSignature,
        ] {
            assert!(!e.to_string().is_empty());
        }
    }
}
