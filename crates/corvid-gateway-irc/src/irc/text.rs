//! Message text between IRC and XMPP: IRC has bytes of no declared encoding and inline
//! formatting codes, XMPP has UTF-8 XML text that may span lines. IRC → XMPP decodes
//! (UTF-8, else Latin-1), strips formatting and anything XML 1.0 cannot carry; XMPP → IRC
//! cuts a body into lines that each fit in one IRC line, at character boundaries.

/// Decodes one received line: UTF-8 when it is valid, else Latin-1 (every byte one
/// character), which is what most IRC clients fall back to.
pub fn decode(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// The text of an IRC message as plain text for an XMPP body: mIRC formatting codes
/// (bold, colours, italic, underline, strike-through, monospace, reverse, reset) removed,
/// as well as every other control character XML 1.0 §2.2 forbids.
pub fn strip_formatting(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // Colour: ^C[fg[,bg]] with one or two decimal digits each.
            '\x03' => {
                if skip_digits(&mut chars, 2, |c| c.is_ascii_digit()) > 0 {
                    skip_background(&mut chars, 2, |c| c.is_ascii_digit());
                }
            }
            // Hex colour: ^D[RRGGBB[,RRGGBB]].
            '\x04' => {
                if skip_digits(&mut chars, 6, |c| c.is_ascii_hexdigit()) > 0 {
                    skip_background(&mut chars, 6, |c| c.is_ascii_hexdigit());
                }
            }
            '\t' | '\n' => out.push(c),
            c if is_xml_forbidden(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// Characters XML 1.0 §2.2 does not allow (the C0 controls but tab, LF and CR, and the
/// two non-characters U+FFFE and U+FFFF); CR is dropped too, it only ends IRC lines.
fn is_xml_forbidden(c: char) -> bool {
    (c < ' ' && c != '\t' && c != '\n') || c == '\u{7f}' || c == '\u{fffe}' || c == '\u{ffff}'
}

fn skip_digits(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    max: usize,
    digit: impl Fn(char) -> bool,
) -> usize {
    let mut skipped = 0;
    while skipped < max && chars.peek().is_some_and(|&c| digit(c)) {
        chars.next();
        skipped += 1;
    }
    skipped
}

/// A `,bg` after a foreground colour; the comma is text when no digit follows it.
fn skip_background(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    max: usize,
    digit: impl Fn(char) -> bool + Copy,
) {
    let mut ahead = chars.clone();
    if ahead.next() == Some(',') && ahead.peek().is_some_and(|&c| digit(c)) {
        chars.next();
        skip_digits(chars, max, digit);
    }
}

/// The text of a CTCP ACTION (`\x01ACTION waves\x01`, what `/me waves` sends), if it is one.
pub fn ctcp_action(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('\x01')?;
    let inner = inner.strip_suffix('\x01').unwrap_or(inner);
    inner
        .strip_prefix("ACTION ")
        .or_else(|| (inner == "ACTION").then_some(""))
}

/// Whether a message is a CTCP request or reply other than ACTION (VERSION, PING…), which
/// the gateway does not forward.
pub fn is_other_ctcp(text: &str) -> bool {
    text.starts_with('\x01') && ctcp_action(text).is_none()
}

/// An XMPP body as IRC message texts: one per line of the body (empty lines left out),
/// each cut at character boundaries to at most `max_bytes` bytes. Control characters
/// (which could forge CTCP or end the IRC line) are removed; a body starting with `/me `
/// becomes a CTCP ACTION.
pub fn irc_lines(body: &str, max_bytes: usize) -> Vec<String> {
    let max_bytes = max_bytes.max(4);
    let mut out = Vec::new();
    for line in body.split('\n') {
        let clean: String = line
            .chars()
            .filter(|&c| !(c < ' ' && c != '\t') && c != '\u{7f}')
            .collect();
        if clean.trim().is_empty() {
            continue;
        }
        if let Some(action) = clean.strip_prefix("/me ") {
            // The action markers take 9 bytes of the line.
            for part in split_at_char_boundaries(action, max_bytes.saturating_sub(9).max(4)) {
                out.push(format!("\x01ACTION {part}\x01"));
            }
            continue;
        }
        out.extend(split_at_char_boundaries(&clean, max_bytes).map(str::to_string));
    }
    out
}

/// Cuts `text` into pieces of at most `max_bytes` bytes without splitting a character.
pub fn split_at_char_boundaries(text: &str, max_bytes: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(max_bytes.max(1));
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        if end == 0 {
            // A character longer than max_bytes (only when max_bytes < 4): send it whole.
            end = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (piece, after) = rest.split_at(end);
        rest = after;
        Some(piece)
    })
}

/// The bytes left for message text in `PRIVMSG target :text`, once the server has put
/// our `:nick!user@host ` prefix in front when relaying it. User (≤ 10, plus a `~`) and
/// host (≤ 63) are not known to us, so their longest values are assumed.
pub fn privmsg_budget(command: &str, nick: &str, target: &str) -> usize {
    let prefix = 1 + nick.len() + 1 + 11 + 1 + 63 + 1;
    let fixed = command.len() + 1 + target.len() + 2 + 2;
    super::line::MAX_LINE.saturating_sub(prefix + fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_utf8_and_falls_back_to_latin1() {
        assert_eq!(decode("héllo ☃".as_bytes()), "héllo ☃");
        assert_eq!(decode(b"caf\xe9"), "café");
    }

    #[test]
    fn strips_formatting_codes() {
        assert_eq!(
            strip_formatting("\x02bold\x02 \x1ditalic\x1d \x1funder\x1f \x16rev\x0f end"),
            "bold italic under rev end"
        );
        assert_eq!(
            strip_formatting("\x0304red\x03 \x0304,12both\x03"),
            "red both"
        );
        assert_eq!(strip_formatting("\x031,2,3"), ",3");
        assert_eq!(strip_formatting("\x0399 bottles"), " bottles");
        assert_eq!(strip_formatting("\x03,5 comma"), ",5 comma");
        assert_eq!(strip_formatting("\x04FF0000,00ff00hex"), "hex");
        assert_eq!(strip_formatting("\x1estrike\x11mono"), "strikemono");
    }

    #[test]
    fn strips_what_xml_cannot_carry() {
        assert_eq!(strip_formatting("a\x00b\x07c\rd\u{ffff}e\tf"), "abcde\tf");
        assert_eq!(strip_formatting("\x03"), "");
    }

    #[test]
    fn recognizes_actions_and_other_ctcp() {
        assert_eq!(ctcp_action("\x01ACTION waves\x01"), Some("waves"));
        assert_eq!(ctcp_action("\x01ACTION waves"), Some("waves"));
        assert_eq!(ctcp_action("ACTION waves"), None);
        assert!(is_other_ctcp("\x01VERSION\x01"));
        assert!(!is_other_ctcp("\x01ACTION x\x01"));
        assert!(!is_other_ctcp("hello"));
    }

    #[test]
    fn splits_bodies_into_lines() {
        assert_eq!(
            irc_lines("one\r\ntwo\n\n  \nthree", 100),
            ["one", "two", "three"]
        );
        assert_eq!(irc_lines("/me waves", 100), ["\x01ACTION waves\x01"]);
        assert_eq!(irc_lines("a\x01VERSION\x01", 100), ["aVERSION"]);
        assert!(irc_lines("", 100).is_empty());
    }

    #[test]
    fn splits_long_lines_at_character_boundaries() {
        let text = "é".repeat(10); // 20 bytes
        let parts: Vec<_> = split_at_char_boundaries(&text, 5).collect();
        assert_eq!(parts, ["éé", "éé", "éé", "éé", "éé"]);
        let mixed = "a€b€c"; // € is 3 bytes
        let parts: Vec<_> = split_at_char_boundaries(mixed, 4).collect();
        assert_eq!(parts, ["a€", "b€", "c"]);
        assert_eq!(parts.concat(), mixed);
        let tiny: Vec<_> = split_at_char_boundaries("€€", 1).collect();
        assert_eq!(tiny, ["€", "€"]);
    }

    #[test]
    fn every_piece_fits_the_budget() {
        let budget = privmsg_budget("PRIVMSG", "nick", "#channel");
        let body = "ü".repeat(1000);
        let lines = irc_lines(&body, budget);
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.len() <= budget));
        assert_eq!(lines.concat(), body);
        for line in lines {
            let wire = super::super::line::Line::new("PRIVMSG", &["#channel", &line]);
            let full = format!(
                ":nick!{}@{} {}",
                "u".repeat(11),
                "h".repeat(63),
                wire.to_wire().unwrap()
            );
            assert!(full.len() <= super::super::line::MAX_LINE);
        }
    }
}
