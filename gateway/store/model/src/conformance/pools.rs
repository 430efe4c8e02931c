//! Pools and their endpoints.

use super::{actor, assert_audited, assert_conflict, assert_not_found, assert_recent, assert_unchanged, mark};
use crate::{Backend, EngineFlavor, NewEndpoint, NewPool, PoolApi, StoreError};

pub async fn pools(store: &dyn Backend) {
    let p = "conf-pool";
    let target = format!("pool/{p}");
    let new_pool =
        NewPool { name: p.into(), models: vec!["qwen".into(), "meta-llama/Llama-3.1-8B-Instruct".into()], apis: None };

    let m = mark(store).await;
    let created = store.create_pool(&actor(), &new_pool).await.expect("create pool");
    assert!(created.id > 0);
    assert_eq!(created.name, p);
    assert_eq!(created.models, new_pool.models, "models keep the order they were given in");
    assert_eq!(created.apis, PoolApi::DEFAULT, "a pool that names no APIs speaks the default");
    assert!(created.endpoints.is_empty());
    assert_recent(created.created_at);
    assert_audited(store, &m, "pool.create", &target).await;

    let m = mark(store).await;
    assert_conflict(store.create_pool(&actor(), &new_pool).await, "duplicate pool");
    assert_unchanged(store, &m, "duplicate pool").await;
    assert_eq!(store.get_pool(p).await.expect("get pool"), created);
    assert_not_found(store.get_pool("conf-pool-missing").await, "get missing pool");

    let second =
        NewPool { name: "conf-pool-b".into(), models: vec![], apis: Some(vec![PoolApi::Chat, PoolApi::Messages]) };
    let created_b = store.create_pool(&actor(), &second).await.expect("create pool");
    assert!(created_b.models.is_empty());
    assert_eq!(created_b.apis, [PoolApi::Chat, PoolApi::Messages]);
    assert_eq!(store.get_pool("conf-pool-b").await.expect("get pool b"), created_b, "APIs are kept");

    // A pool's APIs are replaced whole, and kept in one order whatever order they came in.
    let m = mark(store).await;
    let all = [PoolApi::Messages, PoolApi::Responses, PoolApi::Embeddings, PoolApi::Completions, PoolApi::Chat];
    let pool = store.set_pool_apis(&actor(), p, &all).await.expect("set apis");
    assert_audited(store, &m, "pool.set_apis", &target).await;
    assert_eq!(pool.apis, PoolApi::ALL);
    assert_eq!((pool.id, &pool.models), (created.id, &created.models), "only the APIs change");
    let pool = store.set_pool_apis(&actor(), p, &[PoolApi::Responses]).await.expect("set apis");
    assert_eq!(pool.apis, [PoolApi::Responses]);
    assert_eq!(store.get_pool(p).await.expect("get pool").apis, [PoolApi::Responses]);
    let m = mark(store).await;
    assert_not_found(store.set_pool_apis(&actor(), "conf-pool-missing", &all).await, "APIs of a missing pool");
    assert_unchanged(store, &m, "APIs of a missing pool").await;
    let pool = store.set_pool_apis(&actor(), p, &PoolApi::DEFAULT).await.expect("back to the default");
    assert_eq!(pool, created, "the default set again reads as the pool created without APIs");

    let w1 = NewEndpoint {
        name: "w1".into(),
        url: "http://10.0.0.1:8000".into(),
        flavor: EngineFlavor::Sglang,
        weight: 3,
        http2: true,
    };
    let m = mark(store).await;
    let pool = store.add_endpoint(&actor(), p, &w1).await.expect("add endpoint");
    assert_audited(store, &m, "endpoint.add", &format!("{target}/endpoint/w1")).await;
    assert_eq!(pool.endpoints.len(), 1);
    let e1 = &pool.endpoints[0];
    assert!(e1.id > 0);
    assert_eq!((e1.pool.as_str(), e1.name.as_str(), e1.url.as_str()), (p, "w1", "http://10.0.0.1:8000"));
    assert_eq!((e1.flavor, e1.weight, e1.http2, e1.drained), (EngineFlavor::Sglang, 3, true, false));
    assert_recent(e1.created_at);
    assert_eq!((pool.id, &pool.name, &pool.models), (created.id, &created.name, &created.models));

    // Endpoints are listed in the order they were added, whatever their names.
    for (name, flavor) in [("a0", EngineFlavor::Vllm), ("w2", EngineFlavor::LlamaCpp), ("w3", EngineFlavor::Trtllm)] {
        let endpoint = NewEndpoint {
            name: name.into(),
            url: format!("https://{name}.gpu.example/v1"),
            flavor,
            weight: 0,
            http2: false,
        };
        store.add_endpoint(&actor(), p, &endpoint).await.expect("add endpoint");
    }
    let openai = NewEndpoint {
        name: "w1".into(),
        url: "http://10.0.0.9:8000".into(),
        flavor: EngineFlavor::Openai,
        weight: u32::try_from(i32::MAX).expect("fits"),
        http2: false,
    };
    // The same endpoint name in another pool is another endpoint.
    let pool_b = store.add_endpoint(&actor(), "conf-pool-b", &openai).await.expect("same name, other pool");
    assert_eq!((pool_b.endpoints[0].flavor, pool_b.endpoints[0].weight), (EngineFlavor::Openai, openai.weight));

    let pool = store.get_pool(p).await.expect("get pool");
    let names: Vec<&str> = pool.endpoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["w1", "a0", "w2", "w3"]);

    let m = mark(store).await;
    assert_conflict(store.add_endpoint(&actor(), p, &w1).await, "duplicate endpoint");
    assert_not_found(store.add_endpoint(&actor(), "conf-pool-missing", &w1).await, "endpoint in missing pool");
    let heavy = NewEndpoint { name: "heavy".into(), weight: u32::MAX, ..w1.clone() };
    match store.add_endpoint(&actor(), p, &heavy).await {
        Err(StoreError::Invalid { field: "weight", .. }) => {}
        other => panic!("a weight above i32::MAX must be Invalid {{ field: \"weight\" }}, got {other:?}"),
    }
    assert_unchanged(store, &m, "failed endpoint additions").await;

    let m = mark(store).await;
    let pool = store.set_endpoint_drained(&actor(), p, "w2", true).await.expect("drain");
    assert_audited(store, &m, "endpoint.drain", &format!("{target}/endpoint/w2")).await;
    let drained: Vec<(&str, bool)> = pool.endpoints.iter().map(|e| (e.name.as_str(), e.drained)).collect();
    assert_eq!(drained, [("w1", false), ("a0", false), ("w2", true), ("w3", false)]);
    let m = mark(store).await;
    let pool = store.set_endpoint_drained(&actor(), p, "w2", false).await.expect("undrain");
    assert_audited(store, &m, "endpoint.undrain", &format!("{target}/endpoint/w2")).await;
    assert!(pool.endpoints.iter().all(|e| !e.drained));
    store.set_endpoint_drained(&actor(), p, "w3", true).await.expect("drain w3");

    let m = mark(store).await;
    assert_not_found(store.set_endpoint_drained(&actor(), p, "nope", true).await, "drain missing endpoint");
    assert_not_found(
        store.set_endpoint_drained(&actor(), "conf-pool-missing", "w1", true).await,
        "drain in missing pool",
    );
    assert_not_found(store.remove_endpoint(&actor(), p, "nope").await, "remove missing endpoint");
    assert_not_found(store.remove_endpoint(&actor(), "conf-pool-missing", "w1").await, "remove in missing pool");
    assert_unchanged(store, &m, "failed endpoint changes").await;

    let m = mark(store).await;
    let pool = store.remove_endpoint(&actor(), p, "w1").await.expect("remove endpoint");
    assert_audited(store, &m, "endpoint.remove", &format!("{target}/endpoint/w1")).await;
    let left: Vec<(&str, bool)> = pool.endpoints.iter().map(|e| (e.name.as_str(), e.drained)).collect();
    assert_eq!(left, [("a0", false), ("w2", false), ("w3", true)]);
    assert_eq!(store.get_pool("conf-pool-b").await.expect("pool b").endpoints.len(), 1, "other pool untouched");

    let listed = store.list_pools().await.expect("list pools");
    super::assert_sorted_by_name(listed.iter().map(|p| p.name.as_str()), "pools");
    assert!(listed.contains(&pool), "{listed:?}");
    assert!(listed.contains(&store.get_pool("conf-pool-b").await.expect("pool b")));

    let m = mark(store).await;
    store.delete_pool(&actor(), p).await.expect("delete pool");
    assert_audited(store, &m, "pool.delete", &target).await;
    assert_not_found(store.get_pool(p).await, "deleted pool");
    let m = mark(store).await;
    assert_not_found(store.delete_pool(&actor(), p).await, "delete missing pool");
    assert_unchanged(store, &m, "delete missing pool").await;
    assert!(!store.list_pools().await.expect("list").iter().any(|x| x.name == p));

    // Endpoints went with their pool: a new pool of that name starts empty.
    let again = store.create_pool(&actor(), &new_pool).await.expect("re-create pool");
    assert!(again.endpoints.is_empty());
    let pool = store.add_endpoint(&actor(), p, &w1).await.expect("endpoint name free again");
    assert_eq!(pool.endpoints.len(), 1);
}
