//! The one error type of Tidings. Every failure a client can see is one of these
//! kinds; the HTTP layer maps it to the Matrix error body in a single place.

use std::fmt;

/// The Matrix error codes Tidings answers with. Their names are the spec's
/// `errcode`s without the `M_` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No access token was supplied.
    MissingToken,
    /// The access token is not known (logged out or never issued).
    UnknownToken,
    /// The caller may not do this.
    Forbidden,
    /// The thing asked for does not exist.
    NotFound,
    /// The body is not JSON at all.
    NotJson,
    /// The body is JSON but not of the expected shape.
    BadJson,
    /// A parameter (path, query or body field) has a bad value.
    InvalidParam,
    /// A required parameter is missing.
    MissingParam,
    /// The user ID is taken.
    UserInUse,
    /// The user name is not a valid localpart.
    InvalidUsername,
    /// The request body is larger than `max_request_bytes`.
    TooLarge,
    /// Rate limited; carries how long to wait.
    LimitExceeded {
        /// Milliseconds until the request would be accepted.
        retry_after_ms: u64,
    },
    /// No such endpoint or method.
    Unrecognized {
        /// 404 for an unknown path, 405 for a known path with the wrong method.
        status: u16,
    },
    /// Federation request without valid X-Matrix authentication.
    Unauthorized,
    /// User-interactive authentication is needed (registration's first step).
    UserInteractiveAuth,
    /// A request the server cannot serve for another reason (`M_UNKNOWN`, 400),
    /// such as an unsupported login type.
    BadRequest,
    /// The room alias is taken (`M_ROOM_IN_USE`, 400).
    RoomInUse,
    /// The server does not support the room version asked for (`M_UNSUPPORTED_ROOM_VERSION`, 400).
    UnsupportedRoomVersion,
    /// A signature does not verify (`M_INVALID_SIGNATURE`, 400).
    InvalidSignature,
    /// Something went wrong on our side; the detail is logged, not shown.
    Unknown,
}

impl ErrorKind {
    /// The Matrix `errcode` string.
    pub fn errcode(&self) -> &'static str {
        match self {
            ErrorKind::MissingToken => "M_MISSING_TOKEN",
            ErrorKind::UnknownToken => "M_UNKNOWN_TOKEN",
            ErrorKind::Forbidden => "M_FORBIDDEN",
            ErrorKind::NotFound => "M_NOT_FOUND",
            ErrorKind::NotJson => "M_NOT_JSON",
            ErrorKind::BadJson => "M_BAD_JSON",
            ErrorKind::InvalidParam => "M_INVALID_PARAM",
            ErrorKind::MissingParam => "M_MISSING_PARAM",
            ErrorKind::UserInUse => "M_USER_IN_USE",
            ErrorKind::InvalidUsername => "M_INVALID_USERNAME",
            ErrorKind::TooLarge => "M_TOO_LARGE",
            ErrorKind::LimitExceeded { .. } => "M_LIMIT_EXCEEDED",
            ErrorKind::Unrecognized { .. } => "M_UNRECOGNIZED",
            ErrorKind::Unauthorized => "M_UNAUTHORIZED",
            ErrorKind::UserInteractiveAuth => "M_FORBIDDEN",
            ErrorKind::RoomInUse => "M_ROOM_IN_USE",
            ErrorKind::UnsupportedRoomVersion => "M_UNSUPPORTED_ROOM_VERSION",
            ErrorKind::InvalidSignature => "M_INVALID_SIGNATURE",
            ErrorKind::BadRequest | ErrorKind::Unknown => "M_UNKNOWN",
        }
    }

    /// The HTTP status the spec pairs with this code.
    pub fn status_code(&self) -> u16 {
        match self {
            ErrorKind::MissingToken | ErrorKind::UnknownToken | ErrorKind::Unauthorized => 401,
            ErrorKind::UserInteractiveAuth => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::NotJson
            | ErrorKind::BadJson
            | ErrorKind::InvalidParam
            | ErrorKind::MissingParam
            | ErrorKind::UserInUse
            | ErrorKind::InvalidUsername
            | ErrorKind::BadRequest
            | ErrorKind::RoomInUse
            | ErrorKind::UnsupportedRoomVersion
            | ErrorKind::InvalidSignature => 400,
            ErrorKind::TooLarge => 413,
            ErrorKind::LimitExceeded { .. } => 429,
            ErrorKind::Unrecognized { status } => *status,
            ErrorKind::Unknown => 500,
        }
    }
}

/// An error with its Matrix kind and a human-readable message.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// For internal errors: the cause, for logs and the command line, never for clients.
    detail: Option<String>,
}

impl Error {
    /// An error of `kind` with `message` for the client.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), detail: None }
    }

    /// An internal failure: the cause goes to the log, the client sees a generic text.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self { detail: Some(cause.to_string()), ..Self::new(ErrorKind::Unknown, "internal server error") }
    }

    /// `M_FORBIDDEN` with a message.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    /// `M_NOT_FOUND` with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// `M_INVALID_PARAM` with a message.
    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParam, message)
    }

    /// The Matrix kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message shown to the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status for this error.
    pub fn status_code(&self) -> u16 {
        self.kind.status_code()
    }

    /// The Matrix error body, `{"errcode", "error"}` (and `retry_after_ms` when rate
    /// limited): the one place it is written, for every API that answers errors.
    pub fn to_matrix_body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "errcode": self.kind.errcode(), "error": self.message });
        if let ErrorKind::LimitExceeded { retry_after_ms } = self.kind {
            body["retry_after_ms"] = serde_json::json!(retry_after_ms);
        }
        body
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(detail) => write!(f, "{detail}"),
            None => write!(f, "{}: {}", self.kind.errcode(), self.message),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::internal(format_args!("database: {e}"))
    }
}

/// Result with Tidings' error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
