//! Percent-encoding for the URLs Drover builds: the one place a job, node, allocation or
//! task name is put into a path segment or a query value.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - _ . ~`).
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s` percent-encoded (UTF-8 bytes, upper-case hex), safe as one URL path segment or
/// one query value: `/`, `?`, `&`, `=`, `#`, `%` and spaces are all escaped.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, RESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn only_unreserved_characters_are_left_as_they_are() {
        assert_eq!(encode("web-1_a.b~"), "web-1_a.b~");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(encode("x?y&z=1#f%"), "x%3Fy%26z%3D1%23f%25");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(encode(""), "");
    }
}
