//! Reading record files: every line that is not a whole record is skipped
//! and counted, never fatal. Only a file that cannot be opened or read is
//! an error.

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::record::Record;

/// A line longer than this is corrupt by definition (records are < 3 KiB);
/// it is skipped without being held in memory.
pub const MAX_LINE: usize = 64 * 1024;
/// How many skipped lines are listed by position (all are counted).
pub const MAX_LISTED: usize = 20;

/// One line that was not a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub file: String,
    /// 1-based line number.
    pub line: u64,
    pub reason: String,
}

/// One record with its time in seconds since the epoch.
#[derive(Clone, Debug)]
pub struct Entry {
    pub rec: Record,
    pub at: i64,
}

/// Everything read from the files, records sorted by time (stable: equal
/// times keep file order, the oldest rotated file first).
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub files: Vec<String>,
    pub entries: Vec<Entry>,
    pub skipped_count: u64,
    /// The first [`MAX_LISTED`] skipped lines.
    pub skipped: Vec<Skipped>,
}

impl Loaded {
    fn skip(&mut self, file: &str, line: u64, reason: String) {
        self.skipped_count += 1;
        if self.skipped.len() < MAX_LISTED {
            self.skipped.push(Skipped {
                file: file.to_string(),
                line,
                reason,
            });
        }
    }

    /// Parses one file's bytes (any bytes at all) into this set.
    pub fn add_reader(&mut self, name: &str, r: impl Read) -> io::Result<()> {
        let mut r = BufReader::with_capacity(64 * 1024, r);
        let mut lineno = 0u64;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let (len, ended, too_long) = read_line_capped(&mut r, &mut buf)?;
            if len == 0 {
                break;
            }
            lineno += 1;
            if too_long {
                self.skip(name, lineno, format!("line longer than {MAX_LINE} bytes"));
                continue;
            }
            let text = match std::str::from_utf8(&buf) {
                Ok(t) => t,
                Err(_) => {
                    self.skip(name, lineno, "not UTF-8".into());
                    continue;
                }
            };
            if text.trim().is_empty() {
                continue;
            }
            match Record::parse(text) {
                Ok((rec, at)) => self.entries.push(Entry { rec, at }),
                Err(e) if !ended => self.skip(
                    name,
                    lineno,
                    format!("truncated line (no newline at end of file): {e}"),
                ),
                Err(e) => self.skip(name, lineno, e),
            }
        }
        Ok(())
    }

    /// Sorts the records by time, keeping the reading order for equal times.
    pub fn sort(&mut self) {
        self.entries.sort_by_key(|e| e.at);
    }
}

/// Reads one line into `buf` (without its newline), keeping at most
/// [`MAX_LINE`] bytes. Returns (bytes consumed, ended with a newline, too long).
fn read_line_capped(r: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<(usize, bool, bool)> {
    let mut consumed = 0;
    let mut too_long = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok((consumed, false, too_long));
        }
        let (chunk, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (&avail[..i], Some(i + 1)),
            None => (avail, None),
        };
        if !too_long {
            if buf.len() + chunk.len() > MAX_LINE {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let used = done.unwrap_or(avail.len());
        r.consume(used);
        consumed += used;
        if done.is_some() {
            return Ok((consumed, true, too_long));
        }
    }
}

/// Orders the files so that rotated ones come oldest first: `x.5` … `x.1`,
/// then `x`. Files given twice (by any name) are read once.
pub fn order_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let key = |p: &PathBuf| -> (String, std::cmp::Reverse<u32>) {
        let s = p.to_string_lossy().into_owned();
        if let Some((base, n)) = s.rsplit_once('.') {
            if !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()) {
                return (base.to_string(), std::cmp::Reverse(n.parse().unwrap_or(0)));
            }
        }
        (s, std::cmp::Reverse(0))
    };
    let mut v: Vec<PathBuf> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for p in paths {
        let canon = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        if !seen.contains(&canon) {
            seen.push(canon);
            v.push(p.clone());
        }
    }
    v.sort_by_key(key);
    v
}

/// Reads the given files (rotated ones too) in [`order_files`] order.
/// An unreadable file is an error naming it; bad lines are not. An empty
/// `*.lock` file (the rotation lock, which a glob picks up) is passed over.
pub fn read_files(paths: &[PathBuf]) -> Result<Loaded, (PathBuf, io::Error)> {
    let mut loaded = Loaded::default();
    for p in order_files(paths) {
        let name = p.display().to_string();
        let f = std::fs::File::open(&p).map_err(|e| (p.clone(), e))?;
        // `sessions.jsonl*` also matches the (empty) rotation lock file.
        if name.ends_with(".lock") && f.metadata().is_ok_and(|m| m.len() == 0) {
            continue;
        }
        if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err((
                p.clone(),
                io::Error::new(io::ErrorKind::InvalidInput, "is a directory"),
            ));
        }
        loaded.add_reader(&name, f).map_err(|e| (p.clone(), e))?;
        loaded.files.push(name);
    }
    loaded.sort();
    Ok(loaded)
}

/// Convenience for one file.
pub fn read_file(path: &Path) -> Result<Loaded, (PathBuf, io::Error)> {
    read_files(&[path.to_path_buf()])
}
