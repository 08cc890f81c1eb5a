//! `unique_name`.

use std::collections::HashSet;

use baton_test_support::unique_name;

#[test]
fn names_are_unique_and_keep_the_prefix() {
    let names: HashSet<String> = (0..10_000).map(|_| unique_name("job")).collect();
    assert_eq!(names.len(), 10_000);
    assert!(names
        .iter()
        .all(|n| n.starts_with(&format!("job-{}-", std::process::id()))));
}

#[test]
fn names_are_unique_across_threads() {
    let threads: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| (0..1000).map(|_| unique_name("t")).collect::<Vec<_>>()))
        .collect();
    let names: HashSet<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(names.len(), 4000);
}
