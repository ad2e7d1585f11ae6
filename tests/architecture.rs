//! docs/ARCHITECTURE.md promises that imports between the library's modules
//! run one way only: no cycles, and nothing below the sessions imports a
//! session. This reads the sources and checks both, so the promise breaks a
//! test, not just a document, when someone adds an arrow the wrong way.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The sessions: only the binaries may import them.
const SESSIONS: [&str; 3] = ["inbound", "outbound", "pipe_client"];

/// Every `.rs` file under `dir`, with its path relative to src/.
fn sources(dir: &Path, rel: &str, out: &mut Vec<(String, String)>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if e.file_type().unwrap().is_dir() {
            sources(&e.path(), &rel, out);
        } else if name.ends_with(".rs") {
            out.push((rel, fs::read_to_string(e.path()).unwrap()));
        }
    }
}

/// The module a file belongs to at `depth` (1: top level, 2: inside a directory).
fn module_of(rel: &str, depth: usize) -> Option<String> {
    let parts: Vec<&str> = rel.trim_end_matches(".rs").split('/').collect();
    if parts[0] == "bin" || parts == ["lib"] {
        return None;
    }
    let parts: Vec<&str> = parts.into_iter().filter(|p| *p != "mod").collect();
    (parts.len() >= depth).then(|| parts[..depth].join("::"))
}

/// Names used after `prefix` in code (comments skipped), e.g. `crate::X`.
fn targets(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap();
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            rest = &rest[i + prefix.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name.clone());
            }
            if let Some(r) = rest.strip_prefix(&format!("{name}::{{")) {
                // `crate::{a, b}` or `super::{a, b}`: every name in the group.
                let group = r.split('}').next().unwrap();
                for n in group.split(',') {
                    let n = n.trim().split("::").next().unwrap().trim();
                    if !n.is_empty() && n != "self" {
                        out.insert(n.to_string());
                    }
                }
            }
        }
        if let Some(r) = code.split("crate::{").nth(1) {
            for n in r.split('}').next().unwrap().split(',') {
                let n = n.trim().split("::").next().unwrap().trim();
                if !n.is_empty() {
                    out.insert(n.to_string());
                }
            }
        }
    }
    out
}

type Graph = BTreeMap<String, BTreeSet<String>>;

fn graph() -> (Graph, Graph) {
    let mut files = Vec::new();
    sources(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
        "",
        &mut files,
    );
    let top: BTreeSet<String> = files.iter().filter_map(|(r, _)| module_of(r, 1)).collect();
    let seconds: BTreeSet<String> = files.iter().filter_map(|(r, _)| module_of(r, 2)).collect();
    let (mut g1, mut g2) = (Graph::new(), Graph::new());
    for (rel, text) in &files {
        let Some(m) = module_of(rel, 1) else { continue };
        let edges = g1.entry(m.clone()).or_default();
        for t in targets(text, "crate::") {
            // The crate root re-exports the error type.
            let t = match t.as_str() {
                "Error" | "Result" => "error".to_string(),
                _ => t,
            };
            if top.contains(&t) && t != m {
                edges.insert(t);
            }
        }
        // Inside a directory: `super::x` or `crate::<dir>::x` between sibling files.
        if let Some(sub) = module_of(rel, 2) {
            let e = g2.entry(sub.clone()).or_default();
            let names = targets(text, "super::");
            for t in names
                .into_iter()
                .chain(targets(text, &format!("crate::{m}::")))
            {
                let sib = format!("{m}::{t}");
                if sib != sub && seconds.contains(&sib) {
                    e.insert(sib);
                }
            }
        }
    }
    (g1, g2)
}

/// A cycle in `g`, if there is one, as the list of modules around it.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &Graph,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for t in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(t, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(n, g, &mut Vec::new(), &mut done))
}

#[test]
fn no_import_cycles_between_modules() {
    let (top, inner) = graph();
    assert!(
        top.len() > 10,
        "the source walk found the modules: {:?}",
        top.keys()
    );
    if let Some(c) = find_cycle(&top) {
        panic!("import cycle between modules: {}", c.join(" -> "));
    }
    if let Some(c) = find_cycle(&inner) {
        panic!("import cycle inside a module: {}", c.join(" -> "));
    }
}

#[test]
fn nothing_below_the_sessions_imports_a_session() {
    let (top, _) = graph();
    for (m, edges) in &top {
        if SESSIONS.contains(&m.as_str()) {
            continue;
        }
        for s in SESSIONS {
            assert!(!edges.contains(s), "{m} imports the session module {s}");
        }
    }
}

/// The workspace's other crates (crypto/, wire/, dns/, noise/, report/) sit below or beside
/// the core: none may depend on it, so none can import from it.
#[test]
fn member_crates_do_not_depend_on_the_core() {
    for member in ["crypto", "wire", "dns", "noise", "report"] {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(member)
            .join("Cargo.toml");
        let text = fs::read_to_string(&manifest).unwrap();
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let dep = line.split('=').next().unwrap().trim();
            assert!(
                dep != "blackpony" && !line.contains("path = \"..\""),
                "{member}/Cargo.toml depends on the core: {line}"
            );
        }
    }
}

/// Inside each member crate the files import one another one way only, as
/// the files of one directory of src/ must (dns: wire -> resolver -> mx).
#[test]
fn no_import_cycles_inside_member_crates() {
    for member in ["crypto", "wire", "dns", "noise"] {
        let mut files = Vec::new();
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(member)
            .join("src");
        sources(&src, "", &mut files);
        let name = |rel: &str| rel.trim_end_matches(".rs").to_string();
        let names: BTreeSet<String> = files.iter().map(|(r, _)| name(r)).collect();
        assert!(
            names.contains("lib"),
            "{member}: the source walk found {names:?}"
        );
        let mut g = Graph::new();
        for (rel, text) in &files {
            let edges = g.entry(name(rel)).or_default();
            for t in targets(text, "crate::") {
                if names.contains(&t) && t != name(rel) {
                    edges.insert(t);
                }
            }
        }
        if let Some(c) = find_cycle(&g) {
            panic!("import cycle inside {member}: {}", c.join(" -> "));
        }
    }
}

#[test]
fn the_checker_sees_a_cycle_when_there_is_one() {
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "a"]);
    assert_eq!(
        targets(
            "use crate::{error::Error, limits};\nlet x = crate::clock::now(); // crate::no",
            "crate::"
        ),
        ["clock", "error", "limits"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}
