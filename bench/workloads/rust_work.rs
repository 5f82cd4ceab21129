// A Rust program: strings, vectors, hash maps and boxed trees.
// usage: rust_work ROUNDS
use std::collections::HashMap;

enum Tree { Leaf(u64), Node(Box<Tree>, Box<Tree>) }

fn build(d: u32, k: u64) -> Tree {
    if d == 0 { Tree::Leaf(k) } else { Tree::Node(Box::new(build(d - 1, k * 2)), Box::new(build(d - 1, k * 2 + 1))) }
}

fn sum(t: &Tree) -> u64 {
    match t { Tree::Leaf(k) => *k, Tree::Node(a, b) => sum(a) + sum(b) }
}

fn main() {
    let rounds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(100);
    let mut total = 0u64;
    for r in 0..rounds {
        let mut m: HashMap<String, Vec<u64>> = HashMap::new();
        for i in 0..2000u64 {
            m.entry(format!("key{}", i % 300)).or_default().push(i + r);
        }
        total += m.values().map(|v| v.len() as u64).sum::<u64>();
        total += sum(&build(10, r));
    }
    std::process::exit(if total == 0 { 1 } else { 0 });
}
