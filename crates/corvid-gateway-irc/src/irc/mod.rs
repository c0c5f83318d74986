//! The IRC side: the line format, message text, and the socket.

pub mod conn;
pub mod line;
pub mod text;

/// The key under which a nick or channel name is compared: IRC names are case-insensitive,
/// with `[]\~` the upper case of `{}|^` (RFC 2812 §2.2, the `rfc1459` case mapping).
pub fn fold(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '[' => '{',
            ']' => '}',
            '\\' => '|',
            '~' => '^',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Whether `name` is a channel name (RFC 2812 §1.3) rather than a nick.
pub fn is_channel(name: &str) -> bool {
    name.starts_with(['#', '&', '+', '!'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_with_the_rfc1459_mapping() {
        assert_eq!(fold("Nick[A]\\~"), "nick{a}|^");
        assert_eq!(fold("#Chan"), fold("#chan"));
        assert!(is_channel("#a") && is_channel("&local") && !is_channel("nick"));
    }
}
