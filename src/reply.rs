//! An SMTP reply as a value: its code and its raw lines. A leaf module, so
//! that [`crate::error`] can say which reply each failure turns into without
//! importing the SMTP reader (which itself reports errors).

/// One reply: its code and its raw lines, each with its line terminator.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<Vec<u8>>,
}

impl Reply {
    /// A one-line reply of our own: `text` starts with the enhanced status code.
    pub fn new(code: u16, text: &str) -> Reply {
        Reply {
            code,
            lines: vec![format!("{code} {text}\r\n").into_bytes()],
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.lines.concat()
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// The text of each line after "ddd-" or "ddd ", without the terminator.
    pub fn texts(&self) -> impl Iterator<Item = &[u8]> {
        self.lines
            .iter()
            .map(|l| trim_eol(l).get(4..).unwrap_or(&[]))
    }

    /// The first line's text, lossily decoded, for logs.
    pub fn summary(&self) -> String {
        let first = self.lines.first().map(|l| trim_eol(l)).unwrap_or(&[]);
        String::from_utf8_lossy(first).into_owned()
    }
}

/// A line without its CRLF (or bare LF).
pub fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}
