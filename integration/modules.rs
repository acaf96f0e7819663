//! No module cycles: the library's files form a directed acyclic graph.
//!
//! The graph is built at file level from the sources (see `source/`): an edge A -> B when a
//! non-test item of file A names an item that lives in file B, through a `use` line, a
//! `crate::`/`self::`/`super::` path or a child module's path; names re-exported by a
//! `mod.rs` are followed to the file that defines them. Not edges: a parent's `mod x;`, a
//! module file's own `pub use` re-exports (its interface, like `mod x;`), `#[cfg(test)]`
//! items and test-only files, and `src/main.rs` (the binary, a crate of its own).
//!
//! Nor is a child's use of its ancestors' items (`nfs/ops/io.rs` naming `nfs::ops::Ctx`,
//! `cli/local.rs` implementing `cli::Backend`): a module's `mod.rs` is the vocabulary its
//! children share, and a parent dispatching to its children is the module's own structure,
//! not a dependency between peers. Cycles between siblings (`pool/layers` <->
//! `pool/replication`), between cousins, and through other modules (`config` ->
//! `nfs/serve` -> `pool/facts` -> `pool/serve` -> `config`) are what this test forbids.
//!
//! On failure the test prints every elementary cycle as a path of files, each edge with the
//! line and the path that makes it.

mod source;

use source::{module_of, src_dir, Import, Tree};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Why A depends on B: the first line of A that names something in B.
type Edges = BTreeMap<String, BTreeMap<String, (usize, String)>>;

/// Most cycles listed (a large strongly connected component has very many).
const MAX_CYCLES: usize = 200;

/// Whether `file` is compiled outside tests: its parent declares it with a `mod` that is not
/// under `#[cfg(test)]`.
fn compiled(tree: &Tree, file: &str) -> bool {
    let module = module_of(file);
    let Some((name, parent)) = module.split_last() else {
        return true; // lib.rs
    };
    let Some(parent_file) = tree.modules.get(parent) else {
        return false;
    };
    let text = std::fs::read_to_string(tree.src.join(parent_file)).expect("read source");
    let toks = source::without_tests(source::tokenize(&text));
    toks.windows(2).any(|w| {
        matches!((&w[0].0, &w[1].0), (source::Tok::Ident(m), source::Tok::Ident(n))
            if m == "mod" && n == name)
    })
}

fn build_graph(tree: &Tree) -> Edges {
    let mut edges = Edges::new();
    let mut files: Vec<&String> = tree.modules.values().collect();
    files.sort();
    for file in files {
        if !compiled(tree, file) {
            continue;
        }
        let me = module_of(file);
        let module_file = file.ends_with("mod.rs") || file == "lib.rs";
        let (imports, paths) = tree.parse(file);
        let out = edges.entry(file.clone()).or_default();
        let mut add = |crate_path: Vec<String>, line: usize| {
            let (target, item) = tree.locate(&crate_path);
            let ancestor = {
                let t = module_of(&target);
                t.len() < me.len() && me.starts_with(&t)
            };
            if target != *file && !ancestor {
                out.entry(target)
                    .or_insert((line, format!("crate::{}", item.join("::"))));
            }
        };
        let aliases: HashMap<&str, &Import> = imports
            .iter()
            .filter_map(|i| Some((i.name.as_deref()?, i)))
            .collect();
        for imp in &imports {
            if imp.public && module_file {
                continue;
            }
            if let Some(p) = tree.resolve(&me, &imp.path) {
                add(p, imp.line);
            }
        }
        for p in paths.iter().filter(|p| !p.method) {
            let full = match aliases.get(p.segs[0].as_str()) {
                Some(imp) => {
                    let mut full = imp.path.clone();
                    full.extend(p.segs[1..].iter().cloned());
                    full
                }
                None => p.segs.clone(),
            };
            if let Some(c) = tree.resolve(&me, &full) {
                add(c, p.line);
            }
        }
    }
    edges
}

/// Strongly connected components with more than one file (Tarjan), each sorted.
fn components(edges: &Edges) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a Edges,
        index: HashMap<&'a str, usize>,
        low: HashMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flat_map(|m| m.keys()) {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let lw = s.low[w.as_str()];
                let lv = s.low[v];
                s.low.insert(v, lv.min(lw));
            } else if s.on_stack.contains(w.as_str()) {
                let iw = s.index[w.as_str()];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// Every elementary cycle inside `comp`, each starting at its smallest file (at most
/// [`MAX_CYCLES`] in all).
fn cycles(edges: &Edges, comp: &[String], found: &mut Vec<Vec<String>>) {
    fn walk(
        edges: &Edges,
        allowed: &BTreeSet<&str>,
        start: &str,
        path: &mut Vec<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        let last = path.last().expect("path starts with start").clone();
        for next in edges.get(&last).into_iter().flat_map(|m| m.keys()) {
            if found.len() >= MAX_CYCLES {
                return;
            }
            if next == start {
                found.push(path.clone());
            } else if allowed.contains(next.as_str())
                && next.as_str() > start
                && !path.contains(next)
            {
                path.push(next.clone());
                walk(edges, allowed, start, path, found);
                path.pop();
            }
        }
    }
    let allowed: BTreeSet<&str> = comp.iter().map(String::as_str).collect();
    for start in comp {
        walk(edges, &allowed, start, &mut vec![start.clone()], found);
    }
}

fn report(edges: &Edges) -> Option<String> {
    let comps = components(edges);
    if comps.is_empty() {
        return None;
    }
    let mut found = Vec::new();
    for comp in &comps {
        cycles(edges, comp, &mut found);
    }
    let mut out = format!(
        "{} module cycle(s){} in {} group(s) of files that depend on each other:\n",
        found.len(),
        if found.len() >= MAX_CYCLES {
            " (list cut)"
        } else {
            ""
        },
        comps.len()
    );
    for comp in &comps {
        out += &format!("  group: {}\n", comp.join(", "));
    }
    for (n, cycle) in found.iter().enumerate() {
        out += &format!(
            "\ncycle {}: {} -> {}\n",
            n + 1,
            cycle.join(" -> "),
            cycle[0]
        );
        for (i, from) in cycle.iter().enumerate() {
            let to = &cycle[(i + 1) % cycle.len()];
            let (line, what) = &edges[from][to];
            out += &format!("  src/{from}:{line} names {what} (in src/{to})\n");
        }
    }
    Some(out)
}

#[test]
fn modules_have_no_cycles() {
    let tree = Tree::load(&src_dir());
    let edges = build_graph(&tree);
    assert!(
        edges.len() > 50,
        "expected the library's files, found {}",
        edges.len()
    );
    if let Some(r) = report(&edges) {
        panic!("{r}");
    }
}

#[test]
fn a_planted_cycle_is_reported_with_its_edges() {
    let mut edges = Edges::new();
    let mut edge = |a: &str, b: &str| {
        edges
            .entry(a.into())
            .or_default()
            .insert(b.into(), (1, format!("crate::{b}")));
    };
    edge("a.rs", "b.rs");
    edge("b.rs", "c.rs");
    edge("c.rs", "a.rs");
    edge("c.rs", "d.rs");
    edge("d.rs", "c.rs");
    edge("e.rs", "a.rs");
    let r = report(&edges).expect("cycles");
    assert!(r.contains("cycle 1: a.rs -> b.rs -> c.rs -> a.rs"), "{r}");
    assert!(r.contains("cycle 2: c.rs -> d.rs -> c.rs"), "{r}");
    assert!(
        r.contains("src/b.rs:1 names crate::c.rs (in src/c.rs)"),
        "{r}"
    );
    assert!(!r.contains("cycle 3"), "{r}");
    assert!(!r.contains("e.rs"), "{r}");
}
