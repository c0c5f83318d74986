//! One IRC protocol line (RFC 1459 §2.3.1, RFC 2812 §2.3.1), with the optional IRCv3 message
//! tags in front: parsed from what a server sent, or built and serialized for sending.
//! Parsing is pure: it never looks at a session. Every line comes from the network, so a
//! bad one is an error value, never a panic.

use thiserror::Error;

/// The most bytes of a line, CR LF included, without its tags (RFC 1459 §2.3).
pub const MAX_LINE: usize = 512;
/// The most bytes the IRCv3 tags section (`@…` and its space) may add in front.
pub const MAX_TAGS: usize = 8191;
/// RFC 1459 §2.3: at most 15 parameters.
const MAX_PARAMS: usize = 15;

/// Why a received line was dropped (or a line could not be sent).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LineError {
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("line has no command")]
    NoCommand,
    #[error("command is neither letters nor three digits")]
    BadCommand,
    #[error("more than {MAX_PARAMS} parameters")]
    TooManyParams,
    #[error("NUL, CR or LF inside the line")]
    ForbiddenChar,
    #[error("a middle parameter is empty, starts with ':' or holds a space")]
    BadParam,
}

/// Who sent a line: a server name, or `nick!user@host` for a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix {
    /// The nick, or the server name when user and host are absent.
    pub nick: String,
    pub user: Option<String>,
    pub host: Option<String>,
}

impl Prefix {
    fn parse(raw: &str) -> Prefix {
        let (rest, host) = match raw.split_once('@') {
            Some((rest, host)) => (rest, Some(host.to_string())),
            None => (raw, None),
        };
        let (nick, user) = match rest.split_once('!') {
            Some((nick, user)) => (nick, Some(user.to_string())),
            None => (rest, None),
        };
        Prefix {
            nick: nick.to_string(),
            user,
            host,
        }
    }

    /// Whether the prefix names a user rather than a server.
    pub fn is_user(&self) -> bool {
        self.user.is_some() || self.host.is_some() || !self.nick.contains('.')
    }
}

/// A parsed or buildable IRC line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// IRCv3 message tags, values unescaped.
    pub tags: Vec<(String, Option<String>)>,
    pub prefix: Option<Prefix>,
    /// Upper-case letters, or a three-digit numeric reply.
    pub command: String,
    pub params: Vec<String>,
}

impl Line {
    /// A line to send: no tags, no prefix (the server adds ours).
    pub fn new(command: &str, params: &[&str]) -> Line {
        Line {
            tags: Vec::new(),
            prefix: None,
            command: command.to_string(),
            params: params.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// The parameter at `index`, if present.
    pub fn param(&self, index: usize) -> Option<&str> {
        self.params.get(index).map(String::as_str)
    }

    /// The sender's nick (or server name).
    pub fn source(&self) -> Option<&str> {
        self.prefix.as_ref().map(|p| p.nick.as_str())
    }

    /// Parses one received line, with or without its CR LF.
    pub fn parse(raw: &str) -> Result<Line, LineError> {
        let raw = raw.strip_suffix('\n').unwrap_or(raw);
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.contains(['\0', '\r', '\n']) {
            return Err(LineError::ForbiddenChar);
        }
        let (tags, rest) = match raw.strip_prefix('@') {
            Some(tagged) => {
                let (tags, rest) = tagged.split_once(' ').ok_or(LineError::NoCommand)?;
                if tags.len() + 2 > MAX_TAGS {
                    return Err(LineError::TooLong);
                }
                (parse_tags(tags), rest)
            }
            None => (Vec::new(), raw),
        };
        if rest.len() + 2 > MAX_LINE {
            return Err(LineError::TooLong);
        }
        let mut rest = rest.trim_start_matches(' ');
        let prefix = match rest.strip_prefix(':') {
            Some(prefixed) => {
                let (prefix, after) = prefixed.split_once(' ').ok_or(LineError::NoCommand)?;
                rest = after.trim_start_matches(' ');
                Some(Prefix::parse(prefix))
            }
            None => None,
        };
        let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if command.is_empty() {
            return Err(LineError::NoCommand);
        }
        let numeric = command.len() == 3 && command.bytes().all(|b| b.is_ascii_digit());
        if !numeric && !command.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(LineError::BadCommand);
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if params.len() == MAX_PARAMS {
                return Err(LineError::TooManyParams);
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                params.push(trailing.to_string());
                break;
            }
            let (param, after) = rest.split_once(' ').unwrap_or((rest, ""));
            params.push(param.to_string());
            rest = after;
        }
        Ok(Line {
            tags,
            prefix,
            command: command.to_ascii_uppercase(),
            params,
        })
    }

    /// The line as sent, CR LF included. Only the last parameter may hold spaces or be
    /// empty; nothing may hold NUL, CR or LF; the whole must fit in [`MAX_LINE`].
    pub fn to_wire(&self) -> Result<String, LineError> {
        let mut out = String::with_capacity(64);
        if let Some(prefix) = &self.prefix {
            out.push(':');
            out.push_str(&prefix.nick);
            if let Some(user) = &prefix.user {
                out.push('!');
                out.push_str(user);
            }
            if let Some(host) = &prefix.host {
                out.push('@');
                out.push_str(host);
            }
            out.push(' ');
        }
        out.push_str(&self.command);
        let count = self.params.len();
        if count > MAX_PARAMS {
            return Err(LineError::TooManyParams);
        }
        for (i, param) in self.params.iter().enumerate() {
            if param.contains(['\0', '\r', '\n']) {
                return Err(LineError::ForbiddenChar);
            }
            out.push(' ');
            let needs_colon = param.is_empty() || param.contains(' ') || param.starts_with(':');
            if needs_colon {
                if i + 1 != count {
                    return Err(LineError::BadParam);
                }
                out.push(':');
            }
            out.push_str(param);
        }
        out.push_str("\r\n");
        if out.len() > MAX_LINE {
            return Err(LineError::TooLong);
        }
        Ok(out)
    }
}

/// IRCv3 message tags: `key[=value]` separated by `;`, values escaped.
fn parse_tags(raw: &str) -> Vec<(String, Option<String>)> {
    raw.split(';')
        .filter(|t| !t.is_empty())
        .map(|tag| match tag.split_once('=') {
            Some((key, value)) => (key.to_string(), Some(unescape_tag_value(value))),
            None => (tag.to_string(), None),
        })
        .collect()
}

fn unescape_tag_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefix_command_and_trailing() {
        let line = Line::parse(":alice!al@host.example PRIVMSG #chan :hello there\r\n").unwrap();
        let prefix = line.prefix.clone().unwrap();
        assert_eq!(prefix.nick, "alice");
        assert_eq!(prefix.user.as_deref(), Some("al"));
        assert_eq!(prefix.host.as_deref(), Some("host.example"));
        assert!(prefix.is_user());
        assert_eq!(line.command, "PRIVMSG");
        assert_eq!(line.params, ["#chan", "hello there"]);
    }

    #[test]
    fn parses_numerics_server_prefix_and_empty_trailing() {
        let line = Line::parse(":irc.example.net 332 me #chan :").unwrap();
        assert_eq!(line.source(), Some("irc.example.net"));
        assert!(!line.prefix.unwrap().is_user());
        assert_eq!(line.command, "332");
        assert_eq!(line.params, ["me", "#chan", ""]);
    }

    #[test]
    fn parses_lines_without_prefix_and_with_extra_spaces() {
        let line = Line::parse("PING  :token 1").unwrap();
        assert_eq!(line.prefix, None);
        assert_eq!(line.params, ["token 1"]);
        let line = Line::parse("ping a  b").unwrap();
        assert_eq!(line.command, "PING");
        assert_eq!(line.params, ["a", "b"]);
    }

    #[test]
    fn parses_tags() {
        let line =
            Line::parse("@time=2024-01-01T00:00:00Z;msgid=a\\sb\\:c;flag :n!u@h NOTICE me :x")
                .unwrap();
        assert_eq!(
            line.tags,
            [
                ("time".into(), Some("2024-01-01T00:00:00Z".into())),
                ("msgid".into(), Some("a b;c".into())),
                ("flag".into(), None),
            ]
        );
        assert_eq!(line.command, "NOTICE");
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Line::parse(""), Err(LineError::NoCommand));
        assert_eq!(Line::parse(":prefix-only"), Err(LineError::NoCommand));
        assert_eq!(Line::parse("@tags-only"), Err(LineError::NoCommand));
        assert_eq!(Line::parse("PRIV-MSG x"), Err(LineError::BadCommand));
        assert_eq!(Line::parse("1234 x"), Err(LineError::BadCommand));
        assert_eq!(Line::parse("A\0B"), Err(LineError::ForbiddenChar));
        let sixteen = format!("CMD{}", " p".repeat(16));
        assert_eq!(Line::parse(&sixteen), Err(LineError::TooManyParams));
    }

    #[test]
    fn rejects_lines_over_512_bytes_but_not_their_tags() {
        let body = format!("PRIVMSG #c :{}", "x".repeat(510 - 12));
        assert_eq!(body.len(), 510);
        assert!(Line::parse(&body).is_ok());
        assert_eq!(Line::parse(&format!("{body}x")), Err(LineError::TooLong));
        let tagged = format!("@k={} {body}", "v".repeat(1000));
        assert!(Line::parse(&tagged).is_ok());
    }

    #[test]
    fn serializes_with_a_colon_only_where_needed() {
        let line = Line::new("PRIVMSG", &["#chan", "hello world"]);
        assert_eq!(line.to_wire().unwrap(), "PRIVMSG #chan :hello world\r\n");
        assert_eq!(
            Line::new("NICK", &["bob"]).to_wire().unwrap(),
            "NICK bob\r\n"
        );
        assert_eq!(
            Line::new("TOPIC", &["#c", ""]).to_wire().unwrap(),
            "TOPIC #c :\r\n"
        );
        assert_eq!(
            Line::new("PRIVMSG", &["#c", ":)"]).to_wire().unwrap(),
            "PRIVMSG #c ::)\r\n"
        );
    }

    #[test]
    fn refuses_to_serialize_injections_and_overlong_lines() {
        let injected = Line::new("PRIVMSG", &["#c", "hi\r\nQUIT"]);
        assert_eq!(injected.to_wire(), Err(LineError::ForbiddenChar));
        let spaced_middle = Line::new("JOIN", &["#a b", "key"]);
        assert_eq!(spaced_middle.to_wire(), Err(LineError::BadParam));
        let long = Line::new("PRIVMSG", &["#c", &"x".repeat(600)]);
        assert_eq!(long.to_wire(), Err(LineError::TooLong));
    }

    #[test]
    fn round_trips() {
        let wire = ":n!u@h PRIVMSG #chan :two words\r\n";
        assert_eq!(Line::parse(wire).unwrap().to_wire().unwrap(), wire);
    }
}
