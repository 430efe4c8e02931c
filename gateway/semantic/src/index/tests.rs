use super::*;
use crate::ngram::embed;

const DIM: usize = 64;

fn id(n: u32) -> EntryId {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&n.to_le_bytes());
    id
}

fn index(per_namespace: usize, total: usize) -> SemanticIndex {
    SemanticIndex::new(IndexConfig {
        max_entries_per_namespace: per_namespace,
        max_entries: total,
        ..IndexConfig::default()
    })
    .unwrap()
}

fn put(ix: &SemanticIndex, ns: &str, n: u32, text: &str) -> Vec<Evicted> {
    ix.insert(ns, id(n), &embed(text, DIM), text).unwrap()
}

fn ids(evicted: &[Evicted]) -> Vec<(String, EntryId)> {
    evicted.iter().map(|e| (e.namespace.to_string(), e.id)).collect()
}

#[test]
fn the_index_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SemanticIndex>();
}

#[test]
fn finds_what_was_inserted_with_its_similarity() {
    let ix = index(100, 100);
    put(&ix, "t/m", 1, "What is the capital of France?");
    put(&ix, "t/m", 2, "How do I bake sourdough bread?");
    let found = ix.nearest("t/m", &embed("what is the capital of france", DIM), 0.5).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, id(1));
    assert!(found[0].similarity > 0.99, "{}", found[0].similarity);
    assert_eq!(&*found[0].text, "What is the capital of France?");
    assert!(ix.nearest("t/m", &embed("quantum chromodynamics", DIM), 0.5).unwrap().is_empty());
}

#[test]
fn namespaces_never_see_each_other() {
    let ix = index(100, 100);
    let text = "What is the capital of France?";
    put(&ix, "tenant-a/m", 1, text);
    let v = embed(text, DIM);
    assert_eq!(ix.nearest("tenant-a/m", &v, -1.0).unwrap().len(), 1);
    assert!(ix.nearest("tenant-b/m", &v, -1.0).unwrap().is_empty());
    assert!(ix.nearest("tenant-a/other", &v, -1.0).unwrap().is_empty());
    assert_eq!(ix.lookup("tenant-b/m", &v, text, 0.0).unwrap(), Lookup::Miss);
}

#[test]
fn bad_vectors_and_thresholds_are_typed_errors() {
    let ix = index(100, 100);
    put(&ix, "ns", 1, "hello there");
    let wrong = vec![0.5f32; DIM + 1];
    assert_eq!(
        ix.insert("ns", id(2), &wrong, "x"),
        Err(SemanticError::DimensionMismatch { expected: DIM, got: DIM + 1 })
    );
    assert_eq!(ix.nearest("ns", &wrong, 0.5), Err(SemanticError::DimensionMismatch { expected: DIM, got: DIM + 1 }));
    assert_eq!(ix.insert("ns", id(3), &[], "x"), Err(SemanticError::EmptyVector));
    assert_eq!(ix.insert("ns", id(3), &[f32::NAN; DIM], "x"), Err(SemanticError::NonFinite));
    assert_eq!(ix.insert("ns", id(3), &[0.0; DIM], "x"), Err(SemanticError::ZeroVector));
    let v = embed("hello", DIM);
    assert_eq!(ix.nearest("ns", &v, 1.5), Err(SemanticError::InvalidThreshold(1.5)));
    assert!(matches!(ix.nearest("ns", &v, f32::NAN), Err(SemanticError::InvalidThreshold(_))));
    assert_eq!(ix.len(), 1, "nothing was stored by the failed inserts");
    assert_eq!(SemanticError::EmptyVector.label(), "empty_vector");
}

#[test]
fn vectors_need_not_arrive_unit_length() {
    let ix = index(100, 100);
    let v: Vec<f32> = embed("scale me", DIM).iter().map(|x| x * 7.0).collect();
    ix.insert("ns", id(1), &v, "scale me").unwrap();
    let found = ix.nearest("ns", &embed("scale me", DIM), 0.99).unwrap();
    assert_eq!(found.len(), 1);
}

#[test]
fn removal_forgets_the_entry_and_an_empty_namespace_goes() {
    let ix = index(100, 100);
    put(&ix, "ns", 1, "first entry");
    put(&ix, "ns", 2, "second entry");
    assert!(ix.remove("ns", &id(1)));
    assert!(!ix.remove("ns", &id(1)), "already gone");
    assert!(!ix.remove("other", &id(2)));
    let found = ix.nearest("ns", &embed("first entry", DIM), -1.0).unwrap();
    assert!(found.iter().all(|c| c.id != id(1)));
    assert!(ix.remove("ns", &id(2)));
    assert_eq!(ix.stats().namespaces, 0);
    // Emptied, the namespace may start again with another dimension.
    ix.insert("ns", id(3), &embed("x", DIM * 2), "x").unwrap();
    assert_eq!(ix.namespace_len("ns"), 1);
}

#[test]
fn a_full_namespace_evicts_its_oldest_and_says_which() {
    let ix = index(3, 100);
    for n in 1..=3 {
        assert!(put(&ix, "ns", n, &format!("entry number {n}")).is_empty());
    }
    put(&ix, "other", 9, "unrelated");
    assert_eq!(ids(&put(&ix, "ns", 4, "entry number 4")), [("ns".to_owned(), id(1))]);
    assert_eq!(ids(&put(&ix, "ns", 5, "entry number 5")), [("ns".to_owned(), id(2))]);
    assert_eq!(ix.namespace_len("ns"), 3);
    assert_eq!(ix.namespace_len("other"), 1);
    assert_eq!(ix.len(), 4);
}

#[test]
fn the_total_bound_evicts_the_oldest_anywhere() {
    let ix = index(100, 4);
    put(&ix, "a", 1, "alpha one");
    put(&ix, "b", 2, "beta two");
    put(&ix, "a", 3, "alpha three");
    put(&ix, "b", 4, "beta four");
    assert_eq!(ids(&put(&ix, "c", 5, "gamma five")), [("a".to_owned(), id(1))]);
    assert_eq!(ids(&put(&ix, "c", 6, "gamma six")), [("b".to_owned(), id(2))]);
    assert_eq!(ix.len(), 4);
    assert_eq!((ix.namespace_len("a"), ix.namespace_len("b"), ix.namespace_len("c")), (1, 1, 2));
}

#[test]
fn inserting_an_id_again_replaces_it() {
    let ix = index(2, 100);
    put(&ix, "ns", 1, "old text");
    put(&ix, "ns", 2, "another");
    assert!(put(&ix, "ns", 1, "new text").is_empty(), "a replacement evicts nothing");
    assert_eq!(ix.namespace_len("ns"), 2);
    let found = ix.nearest("ns", &embed("new text", DIM), 0.9).unwrap();
    assert_eq!(&*found[0].text, "new text");
    // Replaced, id 1 is now the newest: the next insert evicts id 2.
    assert_eq!(ids(&put(&ix, "ns", 3, "third")), [("ns".to_owned(), id(2))]);
}

#[test]
fn purge_drops_the_namespaces_the_predicate_names() {
    let ix = index(100, 100);
    put(&ix, "t1/m1", 1, "one");
    put(&ix, "t1/m1", 2, "two");
    put(&ix, "t1/m2", 3, "three");
    put(&ix, "t2/m1", 4, "four");
    assert_eq!(ix.purge(|ns| ns.starts_with("t1/")), Purged { namespaces: 2, entries: 3 });
    assert_eq!(ix.len(), 1);
    assert!(ix.nearest("t1/m1", &embed("one", DIM), -1.0).unwrap().is_empty());
    assert_eq!(ix.namespace_len("t2/m1"), 1);
    assert_eq!(ix.purge(|_| false), Purged::default());
}

#[test]
fn lookup_applies_the_guard() {
    let ix = index(100, 100);
    put(&ix, "ns", 1, "turn on the lights in the kitchen");
    let hit =
        ix.lookup("ns", &embed("Turn on the lights in the kitchen!", DIM), "Turn on the lights in the kitchen!", 0.5);
    assert!(matches!(hit, Ok(Lookup::Hit(Candidate { id: found, .. })) if found == id(1)), "{hit:?}");
    let query = "turn off the lights in the kitchen";
    match ix.lookup("ns", &embed(query, DIM), query, 0.5).unwrap() {
        Lookup::Rejected { candidate, mismatch } => {
            assert_eq!(candidate.id, id(1));
            assert_eq!(mismatch, Mismatch::Opposite);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // The guard passes over a rejected neighbour to a compatible one.
    put(&ix, "ns", 2, "turn off the lights in the kitchen");
    assert!(matches!(ix.lookup("ns", &embed(query, DIM), query, 0.5), Ok(Lookup::Hit(c)) if c.id == id(2)));
}

#[test]
fn churn_reuses_slots_instead_of_growing() {
    let ix = index(50, 1_000);
    for n in 0..50 {
        put(&ix, "ns", n, &format!("request {n} about topic {}", n % 7));
    }
    let full = ix.stats().bytes;
    for n in 50..2_000 {
        put(&ix, "ns", n, &format!("request {n} about topic {}", n % 7));
    }
    let after = ix.stats();
    assert_eq!(after.entries, 50);
    assert!(after.bytes <= full + full / 4, "{} bytes after churn, {full} when first full", after.bytes);
}

#[test]
fn concurrent_writers_and_readers_keep_the_counts() {
    let ix = index(1_000, 10_000);
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let ix = &ix;
            s.spawn(move || {
                let ns = format!("tenant-{t}");
                for n in 0..200u32 {
                    let text = format!("question {n} from tenant {t}");
                    ix.insert(&ns, id(t * 1_000 + n), &embed(&text, DIM), &text).unwrap();
                    let found = ix.nearest(&ns, &embed(&text, DIM), 0.9).unwrap();
                    assert!(found.iter().all(|c| c.text.ends_with(&format!("tenant {t}"))));
                    if n % 4 == 0 {
                        assert!(ix.remove(&ns, &id(t * 1_000 + n)));
                    }
                }
            });
        }
    });
    assert_eq!(ix.len(), 4 * 150);
    assert_eq!(ix.stats().entries, 4 * 150);
}

#[test]
fn configs_that_cannot_work_are_refused() {
    let bad = IndexConfig { max_entries: 0, ..IndexConfig::default() };
    assert!(matches!(SemanticIndex::new(bad), Err(SemanticError::Config(_))));
    let bad = IndexConfig { connectivity: 1, ..IndexConfig::default() };
    assert!(matches!(SemanticIndex::new(bad), Err(SemanticError::Config(_))));
}
