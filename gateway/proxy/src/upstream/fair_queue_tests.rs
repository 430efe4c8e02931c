use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::FutureExt;
use sluice_metrics::Metrics;

use super::*;

/// A queue over a capacity the test sets, and the metrics it reports to.
fn queue(slots: usize, max_queued: usize) -> (Arc<FairQueue>, Arc<AtomicUsize>, Metrics) {
    let metrics = Metrics::new().unwrap();
    let cap = Arc::new(AtomicUsize::new(slots));
    let read = Arc::clone(&cap);
    let capacity: CapacityFn = Arc::new(move || Capacity::Slots(read.load(Ordering::SeqCst)));
    (FairQueue::new(capacity, max_queued, metrics.pool_queue("p")), cap, metrics)
}

fn admitted(q: &Arc<FairQueue>, tenant: &str) -> PoolPermit {
    match q.enter(tenant, Priority::Normal) {
        Entry::Admitted(p) => p,
        Entry::Queued(_) => panic!("{tenant} was queued"),
        Entry::Rejected(r) => panic!("{tenant} was refused: {r:?}"),
    }
}

fn queued(q: &Arc<FairQueue>, tenant: &str, priority: Priority) -> Waiting {
    match q.enter(tenant, priority) {
        Entry::Queued(w) => w,
        Entry::Admitted(_) => panic!("{tenant} was admitted at once"),
        Entry::Rejected(r) => panic!("{tenant} was refused: {r:?}"),
    }
}

fn poll(w: &mut Waiting) -> Option<Result<PoolPermit, QueueRejection>> {
    w.now_or_never()
}

fn depth(metrics: &Metrics, tenant: &str) -> f64 {
    let text = String::from_utf8(metrics.render()).unwrap();
    let needle = format!("sluice_pool_queue_depth{{pool=\"p\",tenant=\"{tenant}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&needle)).map_or(0.0, |v| v.parse().unwrap())
}

/// Releases `held` and, each time, finds the one waiter the slot went to: the order in which
/// a pool at capacity 1 serves `waiters`.
fn serve_order<T: Copy>(held: PoolPermit, mut waiters: Vec<(T, Waiting)>) -> Vec<T> {
    let mut order = Vec::new();
    let mut held = Some(held);
    while !waiters.is_empty() {
        drop(held.take());
        let mut ready = None;
        for (i, (_, w)) in waiters.iter_mut().enumerate() {
            if let Some(outcome) = poll(w) {
                assert!(ready.is_none(), "one freed slot admits one waiter");
                ready = Some((i, outcome));
            }
        }
        let (i, outcome) = ready.expect("a freed slot goes to a waiter");
        held = Some(outcome.unwrap());
        order.push(waiters.remove(i).0);
    }
    order
}

#[test]
fn admits_at_once_up_to_capacity_then_queues() {
    let (q, _, metrics) = queue(2, 10);
    let a = admitted(&q, "a");
    let _b = admitted(&q, "b");
    let mut c = queued(&q, "c", Priority::Normal);
    assert!(poll(&mut c).is_none());
    assert_eq!(depth(&metrics, "c"), 1.0);
    drop(a);
    let c = poll(&mut c).expect("the freed slot went to c").unwrap();
    assert_eq!(q.admitted(), 2);
    assert_eq!(depth(&metrics, "c"), 0.0);
    drop(c);
    assert_eq!(q.admitted(), 1);
}

#[test]
fn fifo_within_a_tenant() {
    let (q, _, _) = queue(1, 100);
    let held = admitted(&q, "a");
    let waiters = (0..6).map(|i| (i, queued(&q, "a", Priority::Normal))).collect();
    assert_eq!(serve_order(held, waiters), vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn a_burst_does_not_starve_a_tenant_of_equal_weight() {
    let (q, _, _) = queue(1, 1000);
    let held = admitted(&q, "a");
    let mut waiters: Vec<(&str, Waiting)> = (0..50).map(|_| ("a", queued(&q, "a", Priority::Normal))).collect();
    waiters.extend((0..3).map(|_| ("b", queued(&q, "b", Priority::Normal))));
    let order = serve_order(held, waiters);
    // B's three requests arrived behind fifty of A's and are served among A's first few:
    // each after at most one more of A's.
    let b_positions: Vec<usize> = order.iter().enumerate().filter(|(_, t)| **t == "b").map(|(i, _)| i).collect();
    assert_eq!(b_positions, vec![1, 3, 5], "{order:?}");
}

#[test]
fn weights_follow_priority() {
    let (q, _, _) = queue(1, 1000);
    let held = admitted(&q, "x");
    let mut waiters: Vec<(Priority, Waiting)> =
        (0..20).map(|_| (Priority::High, queued(&q, "high", Priority::High))).collect();
    waiters.extend((0..20).map(|_| (Priority::Low, queued(&q, "low", Priority::Low))));
    let order = serve_order(held, waiters);
    let high = order[..10].iter().filter(|p| **p == Priority::High).count();
    // Weights 4:1 → 8 of the first 10 slots (start tags high 0,1,2,…; low 0,4,8,…).
    assert_eq!(high, 8, "{order:?}");
    let high = order[..25].iter().filter(|p| **p == Priority::High).count();
    assert_eq!(high, 20, "{order:?}");

    let (q, _, _) = queue(1, 1000);
    let held = admitted(&q, "x");
    let mut waiters: Vec<(Priority, Waiting)> =
        (0..20).map(|_| (Priority::Normal, queued(&q, "normal", Priority::Normal))).collect();
    waiters.extend((0..20).map(|_| (Priority::Low, queued(&q, "low", Priority::Low))));
    let order = serve_order(held, waiters);
    let normal = order[..12].iter().filter(|p| **p == Priority::Normal).count();
    assert_eq!(normal, 8, "2:1 → 8 of the first 12: {order:?}");
}

#[test]
fn a_tenant_is_not_charged_for_an_earlier_busy_period() {
    let (q, _, _) = queue(1, 1000);
    let held = admitted(&q, "x");
    let waiters = (0..10).map(|i| (i, queued(&q, "a", Priority::Normal))).collect();
    let order = serve_order(held, waiters);
    assert_eq!(order.len(), 10);
    // The queue is empty again (one of A's still holds the slot): a new busy period, where B
    // arriving after A does not go first just because A was served a lot before.
    let held = admitted_after(&q);
    let waiters = vec![("a", queued(&q, "a", Priority::Normal)), ("b", queued(&q, "b", Priority::Normal))];
    assert_eq!(serve_order(held, waiters), vec!["a", "b"]);
}

/// With the queue empty and the pool full, frees the slot a test held by leaking nothing: the
/// permit is taken by a fresh tenant once the last waiter's permit is returned.
fn admitted_after(q: &Arc<FairQueue>) -> PoolPermit {
    assert_eq!(q.admitted(), 0, "serve_order dropped the last permit");
    admitted(q, "x")
}

#[tokio::test(start_paused = true)]
async fn a_wait_is_bounded_and_a_timed_out_request_leaves_no_trace() {
    let (q, _, metrics) = queue(1, 10);
    let held = admitted(&q, "a");
    let outcome = q.admit("b", Priority::Normal, Duration::from_millis(100)).await;
    assert_eq!(outcome.err(), Some(QueueRejection::Timeout));
    assert!(q.depths().is_empty());
    assert_eq!(depth(&metrics, "b"), 0.0);
    let text = String::from_utf8(metrics.render()).unwrap();
    assert!(text.contains(r#"sluice_pool_queue_rejections_total{pool="p",reason="timeout",tenant="b"} 1"#), "{text}");
    drop(held);
    assert_eq!(q.admitted(), 0);
    // The next one is admitted at once: nothing was left queued in front of it.
    let _p = q.admit("b", Priority::Normal, Duration::from_millis(100)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_request_admitted_within_its_bound_records_its_wait() {
    let (q, _, metrics) = queue(1, 10);
    let held = admitted(&q, "a");
    let q2 = Arc::clone(&q);
    let waiter = tokio::spawn(async move { q2.admit("b", Priority::Normal, Duration::from_secs(5)).await.map(drop) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(q.depths().len(), 1);
    drop(held);
    assert_eq!(waiter.await.unwrap(), Ok(()));
    assert_eq!(q.admitted(), 0);
    let text = String::from_utf8(metrics.render()).unwrap();
    assert!(text.contains(r#"sluice_pool_queue_wait_seconds_count{pool="p"} 1"#), "{text}");
}

#[test]
fn a_client_that_goes_away_leaves_the_queue_and_returns_a_granted_slot() {
    let (q, _, metrics) = queue(1, 10);
    let held = admitted(&q, "a");
    let gone = queued(&q, "b", Priority::Normal);
    let mut stays = queued(&q, "c", Priority::Normal);
    drop(gone);
    assert_eq!(depth(&metrics, "b"), 0.0);
    drop(held);
    let c = poll(&mut stays).expect("c is next once b left").unwrap();

    // Granted, then dropped before it could collect the permit: the slot goes on.
    let granted_then_gone = queued(&q, "b", Priority::Normal);
    let mut next = queued(&q, "d", Priority::Normal);
    drop(c);
    assert_eq!(q.admitted(), 1, "the slot went to b");
    drop(granted_then_gone);
    let d = poll(&mut next).expect("b's unused slot went to d").unwrap();
    assert_eq!(q.admitted(), 1);
    drop(d);
    assert_eq!(q.admitted(), 0);
    assert!(q.depths().is_empty());
}

#[test]
fn a_full_queue_drops_from_the_longest_tenant_queue() {
    let (q, _, _) = queue(1, 4);
    let _held = admitted(&q, "x");
    let mut a: Vec<Waiting> = (0..4).map(|_| queued(&q, "a", Priority::Normal)).collect();
    // B is not refused: A's newest request makes room.
    let mut b = queued(&q, "b", Priority::Normal);
    assert_eq!(poll(&mut a[3]).map(|r| r.err()), Some(Some(QueueRejection::QueueFull)));
    assert!(poll(&mut a[2]).is_none());
    assert!(poll(&mut b).is_none());
    // A's queue (3) is not longer than A's own would be: A is refused.
    assert!(matches!(q.enter("a", Priority::Normal), Entry::Rejected(QueueRejection::QueueFull)));
    let mut depths = q.depths();
    depths.sort();
    assert_eq!(depths, vec![(Arc::from("a"), 3), (Arc::from("b"), 1)]);
}

#[test]
fn no_usable_endpoint_or_an_unlimited_one_admits_everyone() {
    let (q, cap, _) = queue(1, 10);
    let _held = admitted(&q, "a");
    let mut w = queued(&q, "b", Priority::Normal);
    // Every endpoint went away: waiting would only delay the 503.
    cap.store(0, Ordering::SeqCst);
    q.poke();
    assert!(poll(&mut w).is_some_and(|r| r.is_ok()));
    let _c = admitted(&q, "c");

    let metrics = Metrics::new().unwrap();
    let q = FairQueue::new(Arc::new(|| Capacity::Unlimited), 1, metrics.pool_queue("p"));
    let permits: Vec<PoolPermit> = (0..100).map(|_| admitted(&q, "a")).collect();
    assert_eq!(q.admitted(), 100);
    drop(permits);
    assert_eq!(q.admitted(), 0);
}

#[test]
fn capacity_gained_is_handed_out_to_waiters() {
    let (q, cap, _) = queue(1, 10);
    let _held = admitted(&q, "a");
    let mut w = queued(&q, "b", Priority::Normal);
    cap.store(2, Ordering::SeqCst);
    // An endpoint came back: the next arrival (or a poke) hands its slot to the waiter first.
    let mut late = queued(&q, "c", Priority::Normal);
    let _w = poll(&mut w).expect("the new slot went to the first in line").unwrap();
    assert!(poll(&mut late).is_none());
    assert_eq!(q.admitted(), 2);
}
