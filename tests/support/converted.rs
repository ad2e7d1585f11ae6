//! The line format `tests/vectors/convert.py` writes for the Wycheproof
//! files: `count N`, then `group k=v ...` and `test k=v ...` lines. Shared by
//! crypto/tests/primitive_vectors.rs and tests/fs_vectors.rs, which add their own
//! accessors (hex fields, verdicts) in their own `impl Record` blocks.

use std::collections::HashMap;

pub struct Record<'a> {
    pub kind: &'a str,
    pub fields: HashMap<&'a str, &'a str>,
}

impl<'a> Record<'a> {
    pub fn get(&self, key: &str) -> &'a str {
        self.fields
            .get(key)
            .copied()
            .unwrap_or_else(|| panic!("record lacks field {key}"))
    }

    pub fn num(&self, key: &str) -> usize {
        self.get(key).parse().expect("decimal field")
    }

    pub fn tc(&self) -> &'a str {
        self.get("tc")
    }
}

/// Parses the converted file. Returns the declared `count` (Wycheproof's
/// numberOfTests) and the records in order.
pub fn parse_converted(text: &str) -> (usize, Vec<Record<'_>>) {
    let mut count = None;
    let mut records = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let kind = words.next().expect("non-empty line");
        if kind == "count" {
            assert!(count.is_none(), "two count lines");
            count = Some(words.next().expect("count value").parse().unwrap());
            continue;
        }
        assert!(kind == "group" || kind == "test", "unknown record {kind}");
        let fields = words
            .map(|w| w.split_once('=').expect("key=value"))
            .collect();
        records.push(Record { kind, fields });
    }
    (count.expect("file has a count line"), records)
}
