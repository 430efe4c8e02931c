//! Who owns what: rows the config file's actor creates are the file's, the admin API cannot
//! delete them (Conflict, nothing written) but can revoke their keys, adoption hands a row to
//! the file once, and a pool's model list can be replaced.

use super::{actor, assert_audited, assert_conflict, assert_not_found, assert_unchanged, mark};
use crate::keys::KeyDigest;
use crate::{Actor, Adopt, Backend, EngineFlavor, NewEndpoint, NewKey, NewPool, NewTenant};

pub async fn ownership(store: &dyn Backend) {
    let file = Actor::bootstrap();
    let (t, p) = ("conf-own-t", "conf-own-p");
    store.create_tenant(&file, &NewTenant { name: t.into(), ..new_tenant() }).await.expect("create tenant");
    let digest = KeyDigest::of("sk-conf-own-0123456789");
    let key = NewKey { name: Some("bootstrap".into()), prefix: "sk-conf-own".into(), digest };
    let key = store.create_key(&file, t, &key).await.expect("create key");
    store
        .create_pool(&file, &NewPool { name: p.into(), models: vec!["m".into()], apis: None })
        .await
        .expect("create pool");
    let endpoint = NewEndpoint {
        name: "w1".into(),
        url: "http://10.0.0.1:8000".into(),
        flavor: EngineFlavor::Vllm,
        weight: 1,
        http2: false,
    };
    store.add_endpoint(&file, p, &endpoint).await.expect("add endpoint");

    let owned = store.config_owned().await.expect("config_owned");
    assert!(owned.tenants.iter().any(|n| n == t), "{owned:?}");
    let owned_key = owned.keys.iter().find(|k| k.id == key.id).expect("the file's key is listed");
    assert_eq!((owned_key.tenant.as_str(), owned_key.digest, owned_key.revoked), (t, digest, false));
    assert!(owned.pools.iter().any(|n| n == p), "{owned:?}");
    assert!(owned.endpoints.contains(&(p.to_owned(), "w1".to_owned())), "{owned:?}");

    // The admin API cannot delete what the file owns.
    let m = mark(store).await;
    let message = assert_conflict(store.delete_tenant(&actor(), t).await, "delete a file's tenant");
    assert!(message.contains("config file"), "{message}");
    assert_conflict(store.delete_pool(&actor(), p).await, "delete a file's pool");
    assert_conflict(store.remove_endpoint(&actor(), p, "w1").await, "remove a file's endpoint");
    assert_unchanged(store, &m, "refused deletes").await;
    // It can revoke a key the file owns; the key stays listed as the file's, revoked.
    store.revoke_key(&actor(), t, key.id).await.expect("revoke a file's key");
    let owned = store.config_owned().await.expect("config_owned");
    assert!(owned.keys.iter().any(|k| k.id == key.id && k.revoked), "{owned:?}");

    // A pool's model list is replaced whole.
    let m = mark(store).await;
    let pool = store.set_pool_models(&actor(), p, &["m".into(), "n".into()]).await.expect("set models");
    assert_eq!(pool.models, ["m", "n"]);
    assert_audited(store, &m, "pool.set_models", &format!("pool/{p}")).await;
    assert_not_found(store.set_pool_models(&file, "conf-own-missing", &[]).await, "models of a missing pool");

    // What the admin API made is not the file's until adopted, and adopting twice writes once.
    let api = "conf-own-api";
    store.create_tenant(&actor(), &NewTenant { name: api.into(), ..new_tenant() }).await.expect("create tenant");
    assert!(!store.config_owned().await.expect("config_owned").tenants.iter().any(|n| n == api));
    let m = mark(store).await;
    assert!(store.adopt(&actor(), &Adopt::Tenant(api.into())).await.expect("adopt"));
    assert_audited(store, &m, "tenant.adopt", api).await;
    assert!(store.config_owned().await.expect("config_owned").tenants.iter().any(|n| n == api));
    let m = mark(store).await;
    assert!(!store.adopt(&file, &Adopt::Tenant(api.into())).await.expect("adopt again"));
    assert_unchanged(store, &m, "adopting what the file owns").await;
    assert_not_found(store.adopt(&file, &Adopt::Pool("conf-own-missing".into())).await, "adopt a missing pool");

    // The file's own actor deletes what it owns.
    store.remove_endpoint(&file, p, "w1").await.expect("the file removes its endpoint");
    store.delete_pool(&file, p).await.expect("the file deletes its pool");
    store.delete_tenant(&file, t).await.expect("the file deletes its tenant");
    store.delete_tenant(&file, api).await.expect("the file deletes the tenant it adopted");
}

fn new_tenant() -> NewTenant {
    NewTenant { name: String::new(), priority: Default::default(), status: Default::default() }
}
