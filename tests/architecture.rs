//! The module graph has no loops.
//!
//! Reads every `.rs` file under `src/`, finds each path that leaves its own top-level module
//! (`crate::x…`, `use crate::{x, y::z}`, or enough `super::` to climb to the crate root), and
//! builds the graph whose nodes are the top-level modules (`src/<folder>/` and `src/<file>.rs`).
//! The test fails naming a cycle when there is one, so "who may import whom" stays a tree a
//! newcomer can read bottom-up.
//!
//! The crate root and the start-up wiring (`WIRING`) may import everything; nothing may import
//! them. A plain text scan is enough because the crate has no `#[path]` attributes and no macros
//! that build `crate::` paths; comments, strings and char literals are removed first so doc
//! links and log text do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Files/folders that wire the parts together: they may use any module, none may use them.
const WIRING: &[&str] = &["lib", "main", "start"];

/// The shared vocabulary: it must import nothing from the rest of the crate.
const LEAF: &str = "contract";

type Graph = BTreeMap<String, BTreeMap<String, String>>;

#[test]
fn no_import_loops_between_top_level_modules() {
    let graph = crate_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(
        graph.len() > 5,
        "scanned too few modules; is src/ where this test thinks? {graph:?}"
    );
    // Name every loop, not just the first: remove one edge of each found loop and look again.
    let mut rest = graph.clone();
    let mut loops = Vec::new();
    while let Some(cycle) = find_cycle(&rest) {
        loops.push(describe(&rest, &cycle));
        let (from, to) = (&cycle[cycle.len() - 1], &cycle[0]);
        rest.get_mut(from).unwrap().remove(to);
    }
    assert!(
        loops.is_empty(),
        "import loops between top-level modules:\n{}",
        loops.join("\n\n")
    );
}

#[test]
fn nothing_imports_the_wiring() {
    let graph = crate_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let offenders: Vec<String> = graph
        .iter()
        .flat_map(|(from, edges)| {
            edges
                .iter()
                .filter(|(to, _)| WIRING.contains(&to.as_str()))
                .map(move |(to, at)| format!("{from} -> {to} ({at})"))
        })
        .collect();
    assert!(offenders.is_empty(), "wiring imported: {offenders:#?}");
}

#[test]
fn vocabulary_module_is_a_leaf() {
    let graph = crate_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let edges = graph
        .get(LEAF)
        .unwrap_or_else(|| panic!("no src/{LEAF} module found"));
    assert!(edges.is_empty(), "{LEAF} imports {edges:#?}");
}

/// The checker itself: a known loop is found and named, a tree passes, and each path form
/// (grouped `use`, `super::` climbing out, inline `mod tests`) is recognised.
#[test]
fn checker_finds_loops_in_every_path_form() {
    let dir = scratch_dir();
    let src = dir.join("src");
    write(
        &src,
        "lib.rs",
        "pub mod a; pub mod b; pub mod c; use crate::a::X;",
    );
    write(&src, "a/mod.rs", "mod inner; use crate::{b::Y, c};");
    // `super::super` from a/inner.rs's test module is still inside `a`, from a/mod.rs's
    // tests it is not: only the latter is an edge.
    write(
        &src,
        "a/inner.rs",
        "// crate::c::Z in a comment\nconst S: &str = \"crate::c\";\n#[cfg(test)] mod tests { use super::super::X; }",
    );
    write(&src, "b/mod.rs", "pub fn f() { super::c::g() }");
    write(&src, "c.rs", "pub fn g() {}");
    let graph = crate_graph(&src);
    let edges = |m: &str| graph[m].keys().cloned().collect::<Vec<_>>();
    assert_eq!(edges("a"), ["b", "c"]);
    assert_eq!(edges("b"), ["c"]);
    assert!(edges("c").is_empty());
    assert!(!graph.contains_key("lib"), "the root is not a node");
    assert_eq!(find_cycle(&graph), None);

    write(
        &src,
        "c.rs",
        "#[cfg(test)] mod tests { fn t() { super::super::a::h() } }",
    );
    let graph = crate_graph(&src);
    let cycle = find_cycle(&graph).expect("a -> c -> a is a loop");
    let text = describe(&graph, &cycle);
    assert!(text.contains("c -> a (src/c.rs:1)"), "{text}");
    fs::remove_dir_all(&dir).unwrap();
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("harp-architecture-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn write(src: &Path, rel: &str, text: &str) {
    let path = src.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// Edges between top-level modules, each with one `file:line` that proves it.
fn crate_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_path(src, f)[0].clone())
        .collect();
    let mut graph = Graph::new();
    for file in &files {
        let path = module_path(src, file);
        let from = path[0].clone();
        if WIRING.contains(&from.as_str()) {
            continue;
        }
        let edges = graph.entry(from.clone()).or_default();
        let text = fs::read_to_string(file).unwrap();
        for (line, target) in outgoing(&strip(&text), &path) {
            if target == from {
                continue;
            }
            // A name that is not a module lives in the crate root, i.e. in the wiring.
            let node = if modules.contains(&target) && !WIRING.contains(&target.as_str()) {
                target
            } else {
                "lib".to_string()
            };
            let rel = file.strip_prefix(src).unwrap().display();
            edges.entry(node).or_insert(format!("src/{rel}:{line}"));
        }
    }
    graph
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b/mod.rs` → `[a, b]`; `src/a/c.rs` → `[a, c]`; `src/lib.rs` → `[lib]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.len() > 1 && parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Source text with comments, string and char literals blanked (newlines kept for line numbers).
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let skip = if rest.starts_with(b"//") {
            rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            block_comment_len(rest)
        } else if rest[0] == b'"' {
            quoted_len(rest)
        } else if rest[0] == b'\'' {
            char_literal_len(rest).unwrap_or(0)
        } else if rest[0].is_ascii_alphanumeric() || rest[0] == b'_' {
            let word = rest
                .iter()
                .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))
                .unwrap_or(rest.len());
            // A literal's prefix (`r"…"`, `br#"…"#`, `b"…"`, `b'x'`) comes glued to its quote.
            let literal = match (&rest[..word], rest.get(word)) {
                (b"r" | b"br" | b"cr", Some(b'"' | b'#')) => raw_string_len(&rest[word..]),
                (b"b" | b"c", Some(b'"')) => Some(quoted_len(&rest[word..])),
                (b"b", Some(b'\'')) => char_literal_len(&rest[word..]),
                _ => None,
            };
            match literal {
                Some(len) => word + len,
                None => {
                    out.push_str(&text[i..i + word]);
                    i += word;
                    continue;
                }
            }
        } else {
            0
        };
        if skip == 0 {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        } else {
            for &c in &rest[..skip] {
                out.push(if c == b'\n' { '\n' } else { ' ' });
            }
            i += skip;
        }
    }
    out
}

/// Length of a (nested) block comment starting at `s`.
fn block_comment_len(s: &[u8]) -> usize {
    let (mut depth, mut j) = (0usize, 0);
    while j < s.len() {
        if s[j..].starts_with(b"/*") {
            depth += 1;
            j += 2;
        } else if s[j..].starts_with(b"*/") {
            depth -= 1;
            j += 2;
            if depth == 0 {
                break;
            }
        } else {
            j += 1;
        }
    }
    j
}

/// Length of a `"…"` literal (with escapes) starting at `s`.
fn quoted_len(s: &[u8]) -> usize {
    let mut j = 1;
    while j < s.len() && s[j] != b'"' {
        j += if s[j] == b'\\' { 2 } else { 1 };
    }
    (j + 1).min(s.len())
}

/// Length of a raw string's `#…"…"#…` part starting at `s`, if it is one.
fn raw_string_len(s: &[u8]) -> Option<usize> {
    let hashes = s.iter().take_while(|&&c| c == b'#').count();
    if s.get(hashes) != Some(&b'"') {
        return None;
    }
    let close = format!("\"{}", "#".repeat(hashes));
    let body = &s[hashes + 1..];
    let end = body
        .windows(close.len())
        .position(|w| w == close.as_bytes())?;
    Some(hashes + 1 + end + close.len())
}

/// Length of a char literal (`'a'`, `'\n'`, `'\u{1F600}'`) at `s`; `None` for a lifetime.
fn char_literal_len(s: &[u8]) -> Option<usize> {
    if s.get(1) == Some(&b'\\') {
        let end = s[2..].iter().position(|&c| c == b'\'')?;
        return Some(2 + end + 1);
    }
    let width = match *s.get(1)? {
        c if c < 0x80 => 1,
        c if c >= 0xF0 => 4,
        c if c >= 0xE0 => 3,
        _ => 2,
    };
    (s.get(1 + width) == Some(&b'\'')).then_some(width + 2)
}

/// Every top-level module a stripped file refers to, with the line of the reference.
/// `path` is the file's module path; inline `mod x { … }` blocks extend it while open.
fn outgoing(code: &str, path: &[String]) -> Vec<(usize, String)> {
    let tokens = tokenize(code);
    let mut out = Vec::new();
    // Depth of the module path at each open brace that started an inline module.
    let mut inline_mods: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let (line, ref tok) = tokens[i];
        match tok.as_str() {
            "{" => braces += 1,
            "}" => {
                braces = braces.saturating_sub(1);
                if inline_mods.last() == Some(&braces) {
                    inline_mods.pop();
                }
            }
            "mod" if tokens.get(i + 2).is_some_and(|t| t.1 == "{") => {
                inline_mods.push(braces);
            }
            "crate" if tokens.get(i + 1).is_some_and(|t| t.1 == "::") => {
                // Not `$crate` from a macro in another crate; `pub(crate)` has no `::`.
                for first in path_heads(&tokens, i + 2) {
                    out.push((line, first));
                }
            }
            "super" if i == 0 || tokens[i - 1].1 != "::" => {
                let mut supers = 0;
                let mut j = i;
                while tokens.get(j).is_some_and(|t| t.1 == "super")
                    && tokens.get(j + 1).is_some_and(|t| t.1 == "::")
                {
                    supers += 1;
                    j += 2;
                }
                let depth = path.len() + inline_mods.len();
                // Only a climb past every level (file path and open inline modules) reaches
                // the root and so names another top-level module.
                if supers >= depth {
                    for first in path_heads(&tokens, j) {
                        out.push((line, first));
                    }
                }
                // `pub(super)` has no `::` after it: step over the word itself.
                i = j.max(i + 1);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The first segment of each path starting at token `at`: `x::…` → `[x]`, `{x::a, y}` → `[x, y]`.
fn path_heads(tokens: &[(usize, String)], at: usize) -> Vec<String> {
    let is_ident = |t: &str| {
        t.chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
    };
    match tokens.get(at).map(|t| t.1.as_str()) {
        Some("{") => {
            let mut heads = Vec::new();
            let mut depth = 0usize;
            let mut expect_head = true;
            for (_, t) in &tokens[at + 1..] {
                match t.as_str() {
                    "{" => depth += 1,
                    "}" if depth == 0 => break,
                    "}" => depth -= 1,
                    "," if depth == 0 => expect_head = true,
                    t if expect_head && depth == 0 && is_ident(t) => {
                        if t != "self" {
                            heads.push(t.to_string());
                        }
                        expect_head = false;
                    }
                    _ => {}
                }
            }
            heads
        }
        Some(t) if is_ident(t) => vec![t.to_string()],
        _ => Vec::new(),
    }
}

/// Identifiers, `::`, and single punctuation characters, each with its 1-based line.
fn tokenize(code: &str) -> Vec<(usize, String)> {
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut chars = code.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c == '\n' {
            line += 1;
        } else if c.is_whitespace() {
        } else if c.is_alphanumeric() || c == '_' {
            let mut end = start + c.len_utf8();
            while let Some(&(k, d)) = chars.peek() {
                if !(d.is_alphanumeric() || d == '_') {
                    break;
                }
                end = k + d.len_utf8();
                chars.next();
            }
            tokens.push((line, code[start..end].to_string()));
        } else if c == ':' && chars.peek().is_some_and(|&(_, d)| d == ':') {
            chars.next();
            tokens.push((line, "::".to_string()));
        } else if c == '$' {
            // `$crate::…` is a macro's path to its own crate, written by the macro's author.
            tokens.push((line, "$".to_string()));
            if chars.peek().is_some_and(|&(_, d)| d == 'c') {
                while chars.peek().is_some_and(|&(_, d)| d.is_alphanumeric()) {
                    chars.next();
                }
            }
        } else {
            tokens.push((line, c.to_string()));
        }
    }
    tokens
}

/// One cycle in the graph, as its list of nodes, or `None`.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = stack.iter().position(|n| n == node).unwrap();
                return Some(stack[start..].to_vec());
            }
            None => {}
        }
        marks.insert(node.to_string(), Mark::Open);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|e| e.keys()) {
            if let Some(cycle) = visit(next, graph, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut marks, &mut Vec::new()))
}

/// `a -> b (src/a/x.rs:3)` for each edge of the cycle, closing back to its first node.
fn describe(graph: &Graph, cycle: &[String]) -> String {
    let mut lines = Vec::new();
    for (k, from) in cycle.iter().enumerate() {
        let to = &cycle[(k + 1) % cycle.len()];
        lines.push(format!("  {from} -> {to} ({})", graph[from][to]));
    }
    lines.join("\n")
}
