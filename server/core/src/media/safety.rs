//! How a stored file is served without letting it run as part of the server's
//! origin: only the spec's inline-safe types are served `inline`, everything else as
//! an `attachment`, with a file name that cannot break out of its header.

/// The content types the Matrix spec (v1.12, "serving inline content") lists as safe
/// to show inline.
const INLINE_SAFE: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// Whether `content_type` (parameters ignored) may be shown inline.
pub fn is_inline_safe(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    INLINE_SAFE.contains(&essence.as_str())
}

/// The `Content-Disposition` for a file of `content_type` named `filename`.
pub fn content_disposition(content_type: &str, filename: Option<&str>) -> String {
    let kind = if is_inline_safe(content_type) { "inline" } else { "attachment" };
    match filename.filter(|f| !f.is_empty()) {
        Some(name) => {
            let mut encoded = String::with_capacity(name.len());
            for b in name.bytes() {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    encoded.push(b as char);
                } else {
                    encoded.push_str(&format!("%{b:02X}"));
                }
            }
            format!("{kind}; filename*=utf-8''{encoded}")
        }
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_types_go_inline_and_names_are_encoded() {
        assert!(is_inline_safe("image/png"));
        assert!(is_inline_safe("text/plain; charset=utf-8"));
        assert!(!is_inline_safe("text/html"));
        assert!(!is_inline_safe("image/svg+xml"));
        assert_eq!(content_disposition("text/html", Some("a\"b.html")), "attachment; filename*=utf-8''a%22b.html");
        assert_eq!(content_disposition("image/png", None), "inline");
    }
}
