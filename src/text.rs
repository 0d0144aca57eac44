//! Percent-encoding, shared by the database URL builder, object keys and the API's signed URLs.

/// RFC 3986 unreserved characters: letters, digits, `-`, `.`, `_`, `~`.
pub fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// Percent-encodes every byte of `s` that `keep(position, byte)` rejects.
pub fn percent_encode(s: &str, keep: impl Fn(usize, u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        if keep(i, b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
