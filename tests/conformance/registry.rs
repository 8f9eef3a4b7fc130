//! The registry seam: versions immutable and ordered, deprecation,
//! tombstones, deletion refused while pinned; names with owners.

use strata_host::pipeline::ExtractorRef;
use strata_host::store::events::EventType;
use strata_host::store::registry::{
    ExtractorNameRecord, ExtractorVersionRecord, NamespaceRef, Published, PublishedBy, Publisher,
    component_key,
};
use strata_host::store::{
    CollectionId, KeyId, PageRequest, Registry, Store, StoreError, WebhookId, Webhooks, new_id, now,
};

use super::{delivered_types, fixture, queued_running, webhook};

pub fn version(name: &str, version: &str, hash: &str) -> ExtractorVersionRecord {
    ExtractorVersionRecord {
        name: name.to_owned(),
        version: version.to_owned(),
        content_hash: hash.to_owned(),
        size_bytes: 1234,
        blob_key: component_key(hash),
        manifest: serde_json::json!({ "name": name, "version": version }),
        published_at: now(),
        deprecated_at: None,
        deleted_at: None,
        seq: 0,
        published_by: None,
    }
}

/// Publication by the host itself, which reserves new names.
trait PublishAsHost {
    async fn publish_as_host(
        &self,
        record: &ExtractorVersionRecord,
    ) -> strata_host::store::Result<Published>;
}

impl PublishAsHost for &dyn Registry {
    async fn publish_as_host(
        &self,
        record: &ExtractorVersionRecord,
    ) -> strata_host::store::Result<Published> {
        self.publish(record, &Publisher::host()).await
    }
}

/// Versions are immutable, ordered by publication, deprecated and deleted
/// only when nothing pins them.
pub async fn versions(store: &dyn Store, registry: &dyn Registry, webhooks: &dyn Webhooks) {
    let name = new_id("x");
    // Every namespace with a webhook for it hears of a publication.
    let (listener_bucket, _, _) = fixture(store, 0).await;
    let listener = webhook(
        &listener_bucket.namespace_id,
        &[EventType::ExtractorPublished],
        true,
    );
    webhooks.create_webhook(&listener).await.expect("webhook");
    let v1 = match registry
        .publish_as_host(&version(&name, "1.0.0", &"a".repeat(64)))
        .await
        .expect("publish")
    {
        Published::New(v) => v,
        other => panic!("not new: {other:?}"),
    };
    assert!(v1.seq > 0);
    let listener_id = listener.webhook_id.as_str();
    let heard = |expected: usize| async move {
        let deliveries = webhooks
            .list_deliveries(
                &WebhookId::from(listener_id),
                &PageRequest {
                    limit: 100,
                    after: None,
                },
            )
            .await
            .expect("deliveries")
            .items;
        assert_eq!(deliveries.len(), expected, "{deliveries:?}");
        deliveries
    };
    let first = heard(1).await;
    let event: serde_json::Value = serde_json::from_str(&first[0].payload).expect("JSON");
    assert_eq!(event["event_type"], "extractor.published");
    assert_eq!(event["namespace_id"], listener_bucket.namespace_id.as_str());
    assert_eq!(event["data"]["name"], name.as_str());
    assert_eq!(event["data"]["version"], "1.0.0");
    assert_eq!(event["subject"]["id"], format!("{name}@1.0.0"));
    assert_eq!(
        registry
            .publish_as_host(&version(&name, "1.0.0", &"a".repeat(64)))
            .await
            .expect("again"),
        Published::Existing(v1.clone()),
        "the same bytes again are the same version"
    );
    let refused = registry
        .publish_as_host(&version(&name, "1.0.0", &"b".repeat(64)))
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Conflict(m)) if m.contains("immutable")),
        "{refused:?}"
    );
    heard(1).await;
    let Published::New(v2) = registry
        .publish_as_host(&version(&name, "2.0.0", &"b".repeat(64)))
        .await
        .expect("publish v2")
    else {
        panic!("v2 is new");
    };
    assert!(v2.seq > v1.seq);
    let listed = registry.extractor_versions(&name).await.expect("versions");
    assert_eq!(listed, [v1.clone(), v2.clone()]);
    assert_eq!(
        registry.changes(v1.seq).await.expect("changes"),
        std::slice::from_ref(&v2)
    );
    let deprecated = registry.deprecate(&name, "1.0.0").await.expect("deprecate");
    assert!(deprecated.deprecated_at.is_some() && deprecated.seq > v2.seq);
    assert_eq!(
        registry.deprecate(&name, "1.0.0").await.expect("again"),
        deprecated,
        "idempotent"
    );
    assert_eq!(
        registry.changes(v2.seq).await.expect("changes"),
        std::slice::from_ref(&deprecated)
    );
    assert!(
        registry
            .extractor_version(&name, "3.0.0")
            .await
            .expect("read")
            .is_none()
    );

    // A collection naming 1.0.0 and a queued batch running 2.0.0 keep them.
    let (bucket, mut collection, ids) = fixture(store, 1).await;
    collection.collection_id = CollectionId::generate();
    collection.collection_name = "pins-v1".into();
    collection.extractors = vec![ExtractorRef {
        name: name.clone(),
        version: Some("1.0.0".into()),
        params: None,
    }];
    store
        .create_collection(&collection)
        .await
        .expect("collection");
    let batch = queued_running(
        store,
        &bucket,
        &collection,
        &ids,
        vec![ExtractorRef {
            name: name.clone(),
            version: Some("2.0.0".into()),
            params: None,
        }],
    )
    .await;
    let refused = registry.delete_version(&name, "1.0.0").await;
    assert!(
        matches!(&refused, Err(StoreError::Conflict(m)) if m.contains("pins-v1")),
        "{refused:?}"
    );
    let refused = registry.delete_version(&name, "2.0.0").await;
    assert!(
        matches!(&refused, Err(StoreError::Conflict(m)) if m.contains(batch.batch_id.as_str())),
        "{refused:?}"
    );
    strata_host::batches::cancel(store, &batch)
        .await
        .expect("cancel");
    let deleted = registry
        .delete_version(&name, "2.0.0")
        .await
        .expect("delete");
    assert_eq!(deleted.content_hash, "b".repeat(64));
    assert!(deleted.deleted_at.is_some() && deleted.seq > deprecated.seq);
    assert!(matches!(
        registry.delete_version(&name, "2.0.0").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        registry.deprecate(&name, "2.0.0").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        registry.extractor_versions(&name).await.expect("versions"),
        std::slice::from_ref(&deprecated)
    );
    // The deletion is a change, so hosts that follow the registry
    // uninstall the version; its name and version are never reused.
    assert_eq!(
        registry.changes(deprecated.seq).await.expect("changes"),
        std::slice::from_ref(&deleted)
    );
    assert_eq!(
        registry
            .extractor_version(&name, "2.0.0")
            .await
            .expect("read"),
        Some(deleted.clone())
    );
    for hash in ["b", "e"] {
        let refused = registry
            .publish_as_host(&version(&name, "2.0.0", &hash.repeat(64)))
            .await;
        assert!(
            matches!(&refused, Err(StoreError::Conflict(m)) if m.contains("deleted")),
            "{refused:?}"
        );
    }
    // Sequence numbers are never given twice, even after the newest
    // version is deleted: followers would skip a reused one.
    let Published::New(v3) = registry
        .publish_as_host(&version(&name, "3.0.0", &"c".repeat(64)))
        .await
        .expect("v3")
    else {
        panic!("v3 is new");
    };
    registry
        .delete_version(&name, "3.0.0")
        .await
        .expect("delete v3");
    let Published::New(v4) = registry
        .publish_as_host(&version(&name, "4.0.0", &"d".repeat(64)))
        .await
        .expect("v4")
    else {
        panic!("v4 is new");
    };
    assert!(v4.seq > v3.seq && v3.seq > deprecated.seq, "{v3:?} {v4:?}");
}

/// A publisher acting in `namespace`, with an admin key or not.
fn publisher(namespace: &str, admin: bool) -> Publisher {
    Publisher {
        by: Some(PublishedBy {
            namespace: NamespaceRef {
                namespace_id: namespace.into(),
                name: format!("name-of-{namespace}"),
            },
            key_id: KeyId::generate(),
        }),
        admin,
    }
}

/// A name belongs to the namespace that first published it: only it (or
/// an admin) publishes more; it is private until made public; reserved
/// names are the admins'.
pub async fn names(store: &dyn Store, registry: &dyn Registry, webhooks: &dyn Webhooks) {
    let (a, _, _) = fixture(store, 0).await;
    let (b, _, _) = fixture(store, 0).await;
    let (a, b) = (a.namespace_id, b.namespace_id);
    let b_hears = webhook(&b, &[EventType::ExtractorPublished], true);
    webhooks.create_webhook(&b_hears).await.expect("webhook");
    let name = new_id("x");

    // A claims the name with its first version, privately.
    let by_a = publisher(&a, false);
    let Published::New(v1) = registry
        .publish(&version(&name, "1.0.0", &"a".repeat(64)), &by_a)
        .await
        .expect("publish")
    else {
        panic!("new");
    };
    assert_eq!(v1.published_by, None, "the record as given");
    let record = registry
        .extractor_name(&name)
        .await
        .expect("read")
        .expect("claimed");
    assert_eq!(
        record.owner.as_ref().map(|o| o.namespace_id.as_str()),
        Some(a.as_str())
    );
    assert!(!record.public);
    assert_eq!(
        delivered_types(webhooks, &b_hears).await.len(),
        0,
        "B does not hear of A's private name"
    );

    // B may not publish under it, nor take it over with new bytes.
    let refused = registry
        .publish(
            &version(&name, "2.0.0", &"b".repeat(64)),
            &publisher(&b, false),
        )
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Forbidden(m)) if m.contains(&format!("belongs to namespace `name-of-{a}`"))),
        "{refused:?}"
    );
    assert!(
        registry
            .extractor_version(&name, "2.0.0")
            .await
            .expect("read")
            .is_none(),
        "nothing written"
    );

    // Its owner and an admin acting anywhere publish; the owner stays.
    let mut v2 = version(&name, "2.0.0", &"b".repeat(64));
    v2.published_by = by_a.by.clone();
    registry.publish(&v2, &by_a).await.expect("owner publishes");
    assert_eq!(
        registry
            .extractor_version(&name, "2.0.0")
            .await
            .expect("read")
            .and_then(|v| v.published_by),
        by_a.by,
        "who published is recorded"
    );
    registry
        .publish(
            &version(&name, "3.0.0", &"c".repeat(64)),
            &publisher(&b, true),
        )
        .await
        .expect("admin publishes");
    let after = registry.extractor_name(&name).await.expect("read");
    assert_eq!(after, Some(record.clone()), "the owner stays");

    // Made public, B hears of the next version.
    let public = ExtractorNameRecord {
        public: true,
        ..record
    };
    registry.set_extractor_name(&public).await.expect("public");
    registry
        .publish(&version(&name, "4.0.0", &"d".repeat(64)), &by_a)
        .await
        .expect("publish");
    assert_eq!(delivered_types(webhooks, &b_hears).await.len(), 1);

    // A reserved name is the admins': reserving again keeps the record.
    let reserved_name = new_id("r");
    let reserved = registry
        .reserve_name(&ExtractorNameRecord::reserved(&reserved_name))
        .await
        .expect("reserve");
    assert_eq!(reserved.owner, None);
    let mut taken = ExtractorNameRecord::reserved(&reserved_name);
    taken.owner = Some(NamespaceRef {
        namespace_id: b.clone(),
        name: "b".into(),
    });
    assert_eq!(
        registry.reserve_name(&taken).await.expect("again"),
        reserved,
        "an existing record is kept"
    );
    let refused = registry
        .publish(
            &version(&reserved_name, "1.0.0", &"e".repeat(64)),
            &publisher(&a, false),
        )
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Forbidden(m)) if m.contains("reserved for admins")),
        "{refused:?}"
    );
    registry
        .publish(
            &version(&reserved_name, "1.0.0", &"e".repeat(64)),
            &publisher(&a, true),
        )
        .await
        .expect("an admin publishes");
    let names = registry.extractor_names().await.expect("names");
    assert!(names.iter().any(|n| n.name == name && n.public));
    assert!(
        names
            .iter()
            .any(|n| n.name == reserved_name && n.owner.is_none())
    );
}
