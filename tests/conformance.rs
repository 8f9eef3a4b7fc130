//! One behavioural suite per storage seam, run against every backend:
//! the blob store (local files; S3 on a loopback S3-protocol server, or the
//! endpoint in `STRATA_TEST_S3_ENDPOINT`) and the metadata store with its
//! document sink (SQLite; MongoDB on a loopback MongoDB-protocol server, or
//! the server in `STRATA_TEST_MONGODB_URI`).

#[path = "conformance/fencing.rs"]
mod fencing;
#[path = "conformance/registry.rs"]
mod registry;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use strata_host::batches::shards::{self, Fairness};
use strata_host::batches::{self, Action, BatchError, Claimed, Policy, work};
use strata_host::blob::{BlobError, BlobStore, LocalBlobs, S3Blobs, S3Location, S3Options};
use strata_host::pipeline::ExtractorRef;
use strata_host::store::events::{
    AttemptOutcome, DeliveryLease, DeliveryState, Event, EventType, SigningSecret, WebhookRecord,
};
use strata_host::store::{BatchId, BucketId, CollectionId, NamespaceId, ObjectId};
use strata_host::store::{
    BatchRecord, BatchStatus, Bucket, ChunkOutcome, CollectionRecord, DocumentFilter,
    DocumentRecord, DocumentSink, InternalMetadata, MongoStore, Namespace, ObjectRecord,
    PageRequest, PinnedCollection, Pipelines, ShardRecord, ShardStatus, Source, SqliteStore, Store,
    StoreError, document_id, new_id, now,
};
use strata_host::store::{BatchStore as _, Registry, WebhookId, Webhooks, WorkerId};
use support::servers::{MongoServer, S3Server, s3_bucket, s3_client};
use tokio::io::AsyncReadExt as _;

// ---------------------------------------------------------------- blobs

/// Deterministic pseudo-random bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

async fn blob_suite(blobs: &dyn BlobStore, large: usize) {
    blobs.ping().await.expect("ping");

    // Round trip, replace, nested keys.
    blobs
        .put_bytes("a/b/one", Bytes::from_static(b"first"))
        .await
        .expect("put");
    assert_eq!(blobs.read("a/b/one").await.expect("read"), b"first");
    blobs
        .put_bytes("a/b/one", Bytes::from_static(b"second"))
        .await
        .expect("replace");
    assert_eq!(blobs.read("a/b/one").await.expect("read"), b"second");
    blobs
        .put_bytes("a/b/two", Bytes::from_static(b""))
        .await
        .expect("an empty sibling");
    assert_eq!(blobs.read("a/b/two").await.expect("empty"), b"");
    // Listed by prefix, with when they were written.
    let mut listed: Vec<String> = blobs
        .list("a")
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.key)
        .collect();
    listed.sort();
    assert_eq!(listed, ["a/b/one", "a/b/two"]);
    assert!(blobs.list("no").await.expect("nothing").is_empty());
    assert!(
        blobs.list("a/b").await.expect("list")[0]
            .modified
            .elapsed()
            .is_ok_and(|age| age < std::time::Duration::from_secs(600)),
        "written just now"
    );

    // Missing blobs, bad keys.
    assert!(matches!(
        blobs.read("no/such").await,
        Err(BlobError::NotFound(k)) if k == "no/such"
    ));
    assert!(matches!(
        blobs.open("no/such").await.err(),
        Some(BlobError::NotFound(_))
    ));
    for bad in ["", "/abs", "a/../b", "a//b"] {
        assert!(
            matches!(
                blobs.put_bytes(bad, Bytes::new()).await,
                Err(BlobError::InvalidKey(_))
            ),
            "{bad:?}"
        );
    }

    // Files, small and large (a multipart upload where the backend has
    // one), streamed back.
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, len) in [("small", 1000), ("large", large)] {
        let bytes = noise(len, len as u64);
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).expect("write");
        let key = format!("files/{name}");
        blobs.put_file(&key, &path).await.expect("put_file");
        let mut reader = blobs.open(&key).await.expect("open");
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 64 << 10];
        let mut total = 0;
        loop {
            let n = reader.read(&mut buffer).await.expect("stream");
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            total += n;
        }
        assert_eq!(total, len, "{name}");
        assert_eq!(hasher.finalize()[..], Sha256::digest(&bytes)[..], "{name}");
        // Sizes and byte ranges, as the Parquet manifest reader uses them.
        assert_eq!(blobs.size(&key).await.expect("size"), len as u64);
        let middle = blobs.read_range(&key, 100, 500).await.expect("range");
        assert_eq!(middle[..], bytes[100..600]);
        let tail = blobs
            .read_range(&key, len as u64 - 10, 100)
            .await
            .expect("a range past the end");
        assert_eq!(tail[..], bytes[len - 10..]);
    }
    assert!(matches!(
        blobs.size("no/such").await,
        Err(BlobError::NotFound(_))
    ));

    // Delete, twice.
    blobs.delete("a/b/one").await.expect("delete");
    blobs.delete("a/b/one").await.expect("delete again");
    assert!(matches!(
        blobs.read("a/b/one").await,
        Err(BlobError::NotFound(_))
    ));
    assert_eq!(blobs.read("a/b/two").await.expect("sibling"), b"");
}

#[tokio::test]
async fn local_blobs_conform() {
    let dir = tempfile::tempdir().expect("temp dir");
    let blobs = LocalBlobs::open(dir.path()).expect("open");
    blob_suite(&blobs, 3 << 20).await;
}

#[tokio::test]
async fn s3_blobs_conform() {
    let server = S3Server::start();
    let client = s3_client(&server.endpoint);
    let bucket = s3_bucket(&client).await;
    for prefix in ["", "tenant/eu"] {
        let location = S3Location::parse(&format!("s3://{bucket}/{prefix}")).expect("location");
        let mut blobs =
            S3Blobs::with_client(client.clone(), location, Some(server.endpoint.clone()));
        // S3's smallest part is 5 MiB: three parts.
        blobs.multipart_threshold = 6 << 20;
        blobs.part_size = 5 << 20;
        blob_suite(&blobs, (12 << 20) + 17).await;
    }
    // The prefix keeps tenants apart in one bucket.
    let listed = client
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("tenant/eu/files/")
        .send()
        .await
        .expect("list");
    assert_eq!(listed.key_count(), Some(2));
}

#[tokio::test]
async fn an_unreachable_s3_endpoint_is_named() {
    let location = S3Location::parse("s3://strata-nowhere/x").expect("location");
    let options = S3Options {
        endpoint: Some("http://127.0.0.1:9".into()),
        region: Some("us-east-1".into()),
        force_path_style: true,
    };
    let blobs = S3Blobs::connect(location, &options).await;
    let error = blobs.ping().await.expect_err("nothing listens on port 9");
    let text = format!("{error}");
    assert!(
        text.contains("127.0.0.1:9") && text.contains("strata-nowhere"),
        "{text}"
    );
}

// ---------------------------------------------------------------- store

/// A namespace, a bucket with `n` objects and a collection over it.
async fn fixture(store: &dyn Store, n: usize) -> (Bucket, CollectionRecord, Vec<ObjectId>) {
    let ns = Namespace {
        namespace_id: NamespaceId::generate(),
        name: new_id("n"),
        created_at: now(),
    };
    store.create_namespace(&ns).await.expect("namespace");
    let bucket = Bucket {
        bucket_id: BucketId::generate(),
        namespace_id: ns.namespace_id.clone(),
        bucket_name: "b".into(),
        description: None,
        created_at: now(),
    };
    store.create_bucket(&bucket).await.expect("bucket");
    let mut ids = Vec::new();
    for i in 0..n {
        let id = ObjectId::from(format!("obj_{i:03}"));
        store
            .create_object(&ObjectRecord {
                object_id: id.clone(),
                bucket_id: bucket.bucket_id.clone(),
                namespace_id: ns.namespace_id.clone(),
                key: format!("{i}.txt"),
                mime_type: "text/plain".into(),
                size_bytes: 1,
                sha256: "00".repeat(32),
                metadata: None,
                blob_key: format!("objects/{i}"),
                created_at: now(),
            })
            .await
            .expect("object");
        ids.push(id);
    }
    let collection = CollectionRecord {
        collection_id: CollectionId::generate(),
        namespace_id: ns.namespace_id.clone(),
        collection_name: "c".into(),
        description: None,
        source: Source {
            bucket_id: bucket.bucket_id.clone(),
        },
        extractors: Vec::new(),
        tiers: Vec::new(),
        output_schema: BTreeMap::new(),
        index_signature: "sig_0".into(),
        document_count: 0,
        created_at: now(),
        updated_at: now(),
    };
    store
        .create_collection(&collection)
        .await
        .expect("collection");
    (bucket, collection, ids)
}

/// A queued batch of `ids` over `collection`, in one shard.
async fn queued(
    store: &dyn Store,
    bucket: &Bucket,
    collection: &CollectionRecord,
    ids: &[ObjectId],
) -> BatchRecord {
    queued_in_shards(store, bucket, collection, ids, Vec::new(), 1_000).await
}

/// A queued batch of `ids` over `collection`, running `extractors`.
async fn queued_running(
    store: &dyn Store,
    bucket: &Bucket,
    collection: &CollectionRecord,
    ids: &[ObjectId],
    extractors: Vec<ExtractorRef>,
) -> BatchRecord {
    queued_in_shards(store, bucket, collection, ids, extractors, 1_000).await
}

/// How workers claim in these tests: leases of `lease_ms`, shards
/// claimed at most `max_attempts` times.
fn policy(lease_ms: i64, max_attempts: u32) -> Policy {
    Policy {
        lease_ms,
        max_attempts,
        error_budget: 1.0,
        fairness: Fairness::default(),
    }
}

/// The shards of a batch, in order.
async fn shards_of(store: &dyn Store, batch: &BatchRecord) -> Vec<ShardRecord> {
    store
        .shards(std::slice::from_ref(&batch.batch_id))
        .await
        .expect("shards")
}

/// A queued batch of `ids` over `collection`, running `extractors`, in
/// shards of `per_shard` objects.
async fn queued_in_shards(
    store: &dyn Store,
    bucket: &Bucket,
    collection: &CollectionRecord,
    ids: &[ObjectId],
    extractors: Vec<ExtractorRef>,
    per_shard: u64,
) -> BatchRecord {
    let batch = BatchRecord::draft(&bucket.namespace_id, &bucket.bucket_id, None, None);
    let created = store
        .create_batch(&batch, ids)
        .await
        .expect("create")
        .expect("new");
    let pinned = PinnedCollection {
        collection_id: collection.collection_id.clone(),
        collection_name: collection.collection_name.clone(),
        extractors,
        tiers: vec![vec!["x@1.0.0".into()]],
        output_schema: BTreeMap::new(),
        index_signature: "sig_1".into(),
        manifests: BTreeMap::new(),
    };
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let shards = shards::split(&created, &sorted, per_shard);
    let pipelines = Pipelines {
        collections: vec![pinned],
        include_processing_history: false,
    };
    store
        .submit_batch(
            &created.batch_id,
            Action::Submit.from(),
            &pipelines,
            created.total,
            &shards,
        )
        .await
        .expect("submit")
        .expect("a DRAFT batch with its objects is queued")
}

/// The batch as the store has it now, its progress summed.
async fn fresh(store: &dyn Store, batch: &BatchRecord) -> BatchRecord {
    batches::read(store, &batch.bucket_id, &batch.batch_id)
        .await
        .expect("read")
        .expect("the batch exists")
}

fn document(
    collection: &CollectionRecord,
    bucket: &Bucket,
    batch: &str,
    object: &str,
) -> DocumentRecord {
    DocumentRecord {
        document_id: document_id(&collection.collection_id, object),
        collection_id: collection.collection_id.clone(),
        bucket_id: bucket.bucket_id.clone(),
        object_id: object.into(),
        batch_id: batch.into(),
        features: serde_json::Map::new(),
        errors: Vec::new(),
        metadata: None,
        internal_metadata: InternalMetadata {
            extractors: vec!["x@1.0.0".into()],
            content_hash: "00".repeat(32),
            index_signature: "sig_1".into(),
            processing_history: None,
        },
        created_at: now(),
        updated_at: now(),
    }
}

fn chunk(collection: &CollectionRecord, outcomes: &[(&str, Option<&str>)]) -> ChunkOutcome {
    ChunkOutcome {
        stage: 0,
        last: true,
        collection_id: collection.collection_id.clone(),
        outcomes: outcomes
            .iter()
            .map(|(id, e)| (ObjectId::from(*id), e.map(str::to_owned)))
            .collect(),
        error_summary: BTreeMap::new(),
    }
}

// Each rule below is a test on every backend (see `store_rules!`), so a
// failure names the rule and the backend. `open` gives another handle on
// the same backend, as a second process would have.

async fn events_reach_the_outbox_with_their_change(open: impl AsyncFn() -> Handles) {
    let (one, two) = (open().await, open().await);
    outbox(&one.store, &one.documents, &one.webhooks, &two.webhooks).await;
}

async fn registry_versions_are_immutable_and_numbered(open: impl AsyncFn() -> Handles) {
    let (one, two) = (open().await, open().await);
    registry::versions(
        one.store.as_ref(),
        two.registry.as_ref(),
        one.webhooks.as_ref(),
    )
    .await;
}

async fn extractor_names_have_owners(open: impl AsyncFn() -> Handles) {
    let one = open().await;
    registry::names(
        one.store.as_ref(),
        one.registry.as_ref(),
        one.webhooks.as_ref(),
    )
    .await;
}

async fn a_collection_update_keeps_name_source_and_count(open: impl AsyncFn() -> Handles) {
    collection_updates(open().await.store.as_ref()).await;
}

async fn keys_carry_their_rights_and_the_last_admin_stays(open: impl AsyncFn() -> Handles) {
    api_keys(open().await.store.as_ref()).await;
}

async fn uniqueness_and_batch_rules_hold_on_the_backend(open: impl AsyncFn() -> Handles) {
    let store = open().await.store;
    let (bucket, _, ids) = fixture(store.as_ref(), 4).await;
    conditional_writes(store.as_ref(), &bucket, &ids).await;
}

async fn lists_page_by_key(open: impl AsyncFn() -> Handles) {
    let store = open().await.store;
    let (bucket, _, _) = fixture(store.as_ref(), 4).await;
    let first = store
        .list_objects(
            &bucket.bucket_id,
            &PageRequest {
                limit: 3,
                after: None,
            },
        )
        .await
        .expect("page 1");
    assert_eq!(first.items.len(), 3);
    let second = store
        .list_objects(
            &bucket.bucket_id,
            &PageRequest {
                limit: 3,
                after: first.next.clone(),
            },
        )
        .await
        .expect("page 2");
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.next, None);
}

async fn the_rescuer_requeues_fails_and_leaves_alone(open: impl AsyncFn() -> Handles) {
    let store = open().await.store;
    let (bucket, collection, ids) = fixture(store.as_ref(), 4).await;
    rescuer(store.as_ref(), &bucket, &collection, &ids).await;
}

/// One worker wins a claim; documents and outcomes count once; a worker
/// whose lease expired is fenced off (documents included) while the new
/// holder finishes; retry queues what did not complete; cancel fences.
async fn one_claim_wins_and_a_lost_lease_writes_nothing(open: impl AsyncFn() -> Handles) {
    let Handles {
        store, documents, ..
    } = open().await;
    let worker_b = open().await.store;
    let (bucket, collection, ids) = fixture(store.as_ref(), 4).await;

    // Two workers claim at once: one wins.
    let batch = queued(store.as_ref(), &bucket, &collection, &ids).await;
    assert_eq!(batch.status, BatchStatus::Queued);
    let long = policy(60_000, 3);
    let (worker_a_id, worker_b_id) = (WorkerId::from("worker-a"), WorkerId::from("worker-b"));
    let (a, b) = tokio::join!(
        work::claim(store.as_ref(), &worker_a_id, &long),
        work::claim(worker_b.as_ref(), &worker_b_id, &long)
    );
    let claims: Vec<Claimed> = [a.expect("claim a"), b.expect("claim b")]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(claims.len(), 1, "exactly one worker gets the shard");
    let claimed = claims.into_iter().next().expect("claim");
    let lease_1 = claimed.lease.clone();
    assert_eq!(
        (claimed.batch.status, claimed.shard.attempts),
        (BatchStatus::Processing, 1)
    );

    // Documents are upserted idempotently, and counted once.
    let docs: Vec<DocumentRecord> = ids[..2]
        .iter()
        .map(|id| document(&collection, &bucket, &batch.batch_id, id))
        .collect();
    let ns = &bucket.namespace_id;
    assert_eq!(
        documents
            .upsert_documents(ns, &collection.collection_id, &docs, None)
            .await
            .expect("upsert"),
        2
    );
    let created_at = documents
        .document(&collection.collection_id, &docs[0].document_id)
        .await
        .expect("read")
        .expect("there")
        .created_at;
    let mut again = docs.clone();
    again[0].created_at = "2099-01-01T00:00:00.000Z".parse().expect("time");
    again[0]
        .features
        .insert("x".into(), serde_json::json!({"v": 2}));
    assert_eq!(
        documents
            .upsert_documents(ns, &collection.collection_id, &again, None)
            .await
            .expect("upsert"),
        0
    );
    let stored = documents
        .document(&collection.collection_id, &docs[0].document_id)
        .await
        .expect("read")
        .expect("there");
    assert_eq!(
        stored.created_at, created_at,
        "created_at survives a rewrite"
    );
    assert_eq!(stored.features["x"], serde_json::json!({"v": 2}));
    let count = |c: CollectionRecord| c.document_count;
    let now_col = store
        .collection(ns, &collection.collection_id)
        .await
        .expect("collection")
        .expect("there");
    assert_eq!(count(now_col), 2);
    let by_object = documents
        .list_documents(
            &collection.collection_id,
            &DocumentFilter {
                batch_id: None,
                object_id: Some(ids[1].clone()),
            },
            &PageRequest {
                limit: 10,
                after: None,
            },
        )
        .await
        .expect("filter");
    assert_eq!(by_object.items.len(), 1);

    // Outcomes count once, whoever repeats them.
    let outcome = chunk(&collection, &[(&ids[0], None), (&ids[1], Some("x: broke"))]);
    assert_eq!(
        store
            .record_chunk(&lease_1, &outcome)
            .await
            .expect("record"),
        (2, 1)
    );
    assert_eq!(
        store.record_chunk(&lease_1, &outcome).await.expect("again"),
        (2, 1)
    );

    // The lease expires; another worker takes over; the first is fenced off.
    assert!(
        store
            .renew_shard(&lease_1, now_ms() + 1, &live())
            .await
            .expect("renew")
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let retaken = work::claim(
        worker_b.as_ref(),
        &WorkerId::from("worker-b"),
        &policy(60_000, 3),
    )
    .await
    .expect("reclaim")
    .expect("an expired lease is rescued and claimed again");
    let lease_2 = retaken.lease.clone();
    assert_eq!((retaken.shard.attempts, retaken.batch.processed), (2, 2));
    assert_ne!(lease_1.token, lease_2.token);
    let late = chunk(&collection, &[(&ids[2], None)]);
    assert!(matches!(
        store.record_chunk(&lease_1, &late).await,
        Err(StoreError::LeaseLost(_))
    ));
    // Documents written under the old lease are refused in their own
    // transaction: nothing of the first worker lands after the takeover.
    let stale = [document(&collection, &bucket, &batch.batch_id, &ids[2])];
    assert!(matches!(
        documents
            .upsert_documents(
                &bucket.namespace_id,
                &collection.collection_id,
                &stale,
                Some(&lease_1)
            )
            .await,
        Err(StoreError::LeaseLost(_))
    ));
    assert!(
        documents
            .document(&collection.collection_id, &stale[0].document_id)
            .await
            .expect("read")
            .is_none(),
        "the refused document was not written"
    );
    assert_eq!(
        documents
            .upsert_documents(
                &bucket.namespace_id,
                &collection.collection_id,
                &stale,
                Some(&lease_2)
            )
            .await
            .expect("the new holder writes"),
        1
    );
    assert!(
        !store
            .renew_shard(&lease_1, now_ms() + 60_000, &live())
            .await
            .expect("renew")
    );
    assert!(matches!(
        work::finish_shard(store.as_ref(), &lease_1, 1.0).await,
        Err(StoreError::LeaseLost(_))
    ));
    let pending = worker_b
        .pending_objects(&retaken.shard, 0)
        .await
        .expect("pending");
    assert_eq!(pending, ids[2..].to_vec());
    let rest = chunk(&collection, &[(&ids[2], None), (&ids[3], None)]);
    assert_eq!(
        worker_b
            .record_chunk(&lease_2, &rest)
            .await
            .expect("record"),
        (4, 1)
    );
    let ended = work::finish_shard(worker_b.as_ref(), &lease_2, 1.0)
        .await
        .expect("finish")
        .expect("the last shard ends the batch");
    assert_eq!(ended.status, BatchStatus::Completed);
    let done = fresh(store.as_ref(), &batch).await;
    assert_eq!(
        (done.status, done.processed, done.failed),
        (BatchStatus::Completed, 4, 1)
    );

    // Retry re-queues the failed object only.
    let retried = batches::retry(store.as_ref(), &fresh(store.as_ref(), &batch).await)
        .await
        .expect("retry");
    let retried = fresh(store.as_ref(), &retried).await;
    assert_eq!(
        (retried.status, retried.processed, retried.failed),
        (BatchStatus::Queued, 3, 0)
    );
    let shard = shards_of(store.as_ref(), &batch).await.remove(0);
    assert_eq!(shard.status, ShardStatus::Queued);
    assert_eq!(
        store.pending_objects(&shard, 0).await.expect("pending"),
        vec![ids[1].clone()]
    );

    // Cancel fences the worker off too.
    let lease_3 = work::claim(
        store.as_ref(),
        &WorkerId::from("worker-a"),
        &policy(60_000, 3),
    )
    .await
    .expect("claim")
    .expect("the retried batch is claimed")
    .lease;
    batches::cancel(store.as_ref(), &fresh(store.as_ref(), &batch).await)
        .await
        .expect("cancel");
    assert!(matches!(
        store
            .record_chunk(&lease_3, &chunk(&collection, &[(&ids[1], None)]))
            .await,
        Err(StoreError::LeaseLost(_))
    ));
    assert!(
        shards_of(store.as_ref(), &batch)
            .await
            .iter()
            .all(|s| s.status == ShardStatus::Canceled),
        "a canceled batch's shards are canceled with it"
    );
}

/// The rescuer's rules, on the store: an expired lease is re-queued, a
/// live one untouched, a shard out of attempts fails (and its batch with
/// it, the other shards canceled), a terminal shard stays as it is.
async fn rescuer(
    store: &dyn Store,
    bucket: &Bucket,
    collection: &CollectionRecord,
    ids: &[ObjectId],
) {
    let batch = queued_in_shards(store, bucket, collection, ids, Vec::new(), 1).await;
    assert_eq!(
        shards_of(store, &batch).await.len(),
        4,
        "a shard per object"
    );
    let claim = async |lease_ms: i64| {
        work::claim(store, &WorkerId::from("worker-r"), &policy(lease_ms, 2))
            .await
            .expect("claim")
            .expect("a shard is waiting")
    };
    // (Each claim rescues first: the short lease is taken last.)
    let held = claim(60_000).await;
    let finished = claim(60_000).await;
    let expiring = claim(1).await;
    assert_eq!(
        (
            held.shard.shard_index,
            finished.shard.shard_index,
            expiring.shard.shard_index
        ),
        (0, 1, 2),
        "one batch's shards in order"
    );
    store
        .record_chunk(&finished.lease, &chunk(collection, &[(&ids[1], None)]))
        .await
        .expect("record");
    assert!(
        work::finish_shard(store, &finished.lease, 1.0)
            .await
            .expect("finish")
            .is_none(),
        "the batch goes on while shards have work"
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    let rescued = work::rescue(store, &policy(60_000, 2), now_ms())
        .await
        .expect("rescue");
    assert_eq!((rescued.requeued, rescued.failed), (1, 0), "{rescued:?}");
    let status = |shards: &[ShardRecord]| shards.iter().map(|s| s.status).collect::<Vec<_>>();
    let after = shards_of(store, &batch).await;
    use ShardStatus::{Canceled, Completed, Failed, Processing, Queued};
    assert_eq!(status(&after), [Processing, Completed, Queued, Queued]);
    assert_eq!(
        after[0].lease.as_ref().map(|l| l.owner.as_str()),
        Some("worker-r")
    );
    assert!(after[2].lease.is_none(), "the expired lease is dropped");

    // The re-queued shard is claimed again, and its lease lost again: its
    // attempts are spent, so it fails with the reason, and its batch fails.
    let again = claim(1).await;
    assert_eq!((again.shard.shard_index, again.shard.attempts), (2, 2));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let rescued = work::rescue(store, &policy(60_000, 2), now_ms())
        .await
        .expect("rescue");
    assert_eq!(rescued.failed, 1, "{rescued:?}");
    let after = shards_of(store, &batch).await;
    assert_eq!(status(&after), [Canceled, Completed, Failed, Canceled]);
    assert!(
        after[2]
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("lost 2 times")),
        "{:?}",
        after[2].error_message
    );
    let failed = fresh(store, &batch).await;
    assert_eq!(failed.status, BatchStatus::Failed);
    assert!(
        failed.error_message.as_deref().is_some_and(
            |m| m.starts_with("shard 2 failed: the worker running it was lost 2 times")
        ),
        "{:?}",
        failed.error_message
    );
    // Terminal shards stay as they are; the held one's worker is fenced.
    let quiet = work::rescue(store, &policy(60_000, 2), now_ms() + 120_000)
        .await
        .expect("rescue");
    assert_eq!(quiet, work::Rescued::default());
    assert_eq!(
        status(&shards_of(store, &batch).await),
        [Canceled, Completed, Failed, Canceled]
    );
    assert!(matches!(
        store
            .record_chunk(&held.lease, &chunk(collection, &[(&ids[0], None)]))
            .await,
        Err(StoreError::LeaseLost(_))
    ));
    assert!(
        work::claim(store, &WorkerId::from("worker-r"), &policy(60_000, 2))
            .await
            .expect("claim")
            .is_none(),
        "nothing is left to claim"
    );
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One backend's seams, as one process holds them.
struct Handles {
    store: Arc<dyn Store>,
    documents: Arc<dyn DocumentSink>,
    webhooks: Arc<dyn Webhooks>,
    registry: Arc<dyn Registry>,
}

impl Handles {
    fn of<T: Store + DocumentSink + Webhooks + Registry + 'static>(backend: Arc<T>) -> Self {
        Handles {
            store: backend.clone(),
            documents: backend.clone(),
            webhooks: backend.clone(),
            registry: backend,
        }
    }
}

/// Keys read back by the hash of their secret, with their rights.
async fn api_keys(store: &dyn Store) {
    let (bucket, _, _) = fixture(store, 0).await;
    let mut publisher =
        strata_host::store::ApiKey::new(Some("ci".into()), false, Some(bucket.namespace_id));
    publisher.publish = true;
    let plain = strata_host::store::ApiKey::new(None, false, publisher.namespace_id.clone());
    let secret_hash = || format!("{:x}", Sha256::digest(new_id("sk").as_bytes()));
    let hashes = [secret_hash(), secret_hash()];
    for (key, hash) in [&publisher, &plain].into_iter().zip(&hashes) {
        store.create_key(key, hash).await.expect("create");
        assert_eq!(
            store.key_by_hash(hash).await.expect("read").as_ref(),
            Some(key)
        );
    }
    assert!(
        store
            .key_by_hash(&secret_hash())
            .await
            .expect("read")
            .is_none()
    );
    assert!(matches!(
        store.create_key(&plain, &hashes[0]).await,
        Err(StoreError::Taken { kind: "key", .. })
    ));

    // Listed in id order, with their last use; revoked for good.
    let mut listed = Vec::new();
    let mut page = PageRequest {
        limit: 1,
        after: None,
    };
    loop {
        let got = store.list_keys(&page).await.expect("list");
        listed.extend(got.items);
        match got.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    assert!(listed.windows(2).all(|w| w[0].key_id < w[1].key_id));
    assert!(listed.contains(&publisher) && listed.contains(&plain));
    let used = now();
    store.touch_key(&plain.key_id, &used).await.expect("touch");
    let read = store.key_by_hash(&hashes[1]).await.expect("read");
    assert_eq!(read.and_then(|k| k.last_used_at), Some(used));
    store.delete_key(&plain.key_id).await.expect("revoke");
    assert!(store.key_by_hash(&hashes[1]).await.expect("read").is_none());
    assert!(matches!(
        store.delete_key(&plain.key_id).await,
        Err(StoreError::NotFound { .. })
    ));
    // The last admin key stays: revoking every admin key stops at one.
    let admin = strata_host::store::ApiKey::new(None, true, None);
    store
        .create_key(&admin, &secret_hash())
        .await
        .expect("admin");
    let admins: Vec<_> = listed
        .iter()
        .filter(|k| k.admin)
        .chain(std::iter::once(&admin))
        .collect();
    let mut refused = 0;
    for key in &admins {
        match store.delete_key(&key.key_id).await {
            Ok(()) => {}
            Err(StoreError::Conflict(m)) if m.contains("last admin key") => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(refused, 1, "exactly the last admin key is kept");
    assert!(store.has_admin_key().await.expect("admins"));
}

/// An update changes the pipeline and description, nothing else.
async fn collection_updates(store: &dyn Store) {
    let (_, collection, _) = fixture(store, 0).await;
    let mut changed = collection.clone();
    changed.description = Some("rolled back".into());
    changed.extractors = vec![ExtractorRef {
        name: "stamp".into(),
        version: Some("1.0.0".into()),
        params: Some(serde_json::json!({ "spin": 3 })),
    }];
    changed.tiers = vec![vec!["stamp@1.0.0".into()]];
    changed.output_schema = BTreeMap::from([("stamp.version".into(), "Utf8".into())]);
    changed.index_signature = "sig_1".into();
    changed.updated_at = "2099-01-01T00:00:00.000Z".parse().expect("time");
    // Not the update's to change:
    let mut sent = changed.clone();
    sent.collection_name = "renamed".into();
    sent.document_count = 99;
    store.update_collection(&sent).await.expect("update");
    let stored = store
        .collection(&collection.namespace_id, &collection.collection_id)
        .await
        .expect("read")
        .expect("there");
    assert_eq!(stored, changed);
    changed.description = None;
    store.update_collection(&changed).await.expect("clear");
    let stored = store
        .collection(&collection.namespace_id, "c")
        .await
        .expect("read")
        .expect("there");
    assert_eq!(stored.description, None);
    for (ns, id) in [
        (collection.namespace_id.clone(), CollectionId::generate()),
        (NamespaceId::generate(), collection.collection_id.clone()),
    ] {
        let mut elsewhere = changed.clone();
        (elsewhere.namespace_id, elsewhere.collection_id) = (ns, id);
        assert!(
            matches!(
                store.update_collection(&elsewhere).await,
                Err(StoreError::NotFound { .. })
            ),
            "{elsewhere:?}"
        );
    }
}

fn webhook(ns: &str, types: &[EventType], active: bool) -> WebhookRecord {
    WebhookRecord {
        webhook_id: WebhookId::generate(),
        namespace_id: ns.into(),
        url: "http://127.0.0.1:9/hook".into(),
        event_types: types.to_vec(),
        description: None,
        active,
        disabled_reason: None,
        secrets: vec![SigningSecret {
            secret: "whsec_c2VjcmV0".into(),
            expires_at: None,
        }],
        created_at: now(),
        updated_at: now(),
        revision: 0,
    }
}

/// The event types of a webhook's deliveries, oldest first.
async fn delivered_types(webhooks: &dyn Webhooks, webhook: &WebhookRecord) -> Vec<EventType> {
    let page = webhooks
        .list_deliveries(
            &webhook.webhook_id,
            &PageRequest {
                limit: 100,
                after: None,
            },
        )
        .await
        .expect("deliveries");
    page.items.iter().map(|d| d.event_type).collect()
}

/// Events land in the outbox with the change that causes them, and only
/// then; deliveries are leased, fenced and rescheduled.
async fn outbox(
    store: &Arc<dyn Store>,
    documents: &Arc<dyn DocumentSink>,
    webhooks: &Arc<dyn Webhooks>,
    other_process: &Arc<dyn Webhooks>,
) {
    use EventType::*;
    let (bucket, collection, ids) = fixture(store.as_ref(), 3).await;
    let ns = bucket.namespace_id.as_str();
    let all = webhook(ns, &EventType::ALL, true);
    let completed_only = webhook(ns, &[BatchCompleted], true);
    let off = webhook(ns, &EventType::ALL, false);
    let other = Namespace {
        namespace_id: NamespaceId::generate(),
        name: new_id("n"),
        created_at: now(),
    };
    store.create_namespace(&other).await.expect("namespace");
    let elsewhere = webhook(&other.namespace_id, &EventType::ALL, true);
    for w in [&all, &completed_only, &off, &elsewhere] {
        webhooks.create_webhook(w).await.expect("webhook");
    }
    let listed = webhooks
        .list_webhooks(
            &NamespaceId::from(ns),
            &PageRequest {
                limit: 2,
                after: None,
            },
        )
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 2);
    assert!(listed.next.is_some());

    let batch = queued(store.as_ref(), &bucket, &collection, &ids).await;
    assert_eq!(
        delivered_types(webhooks.as_ref(), &all).await,
        [BatchQueued]
    );
    // A refused change writes no event.
    conflict(
        batches::retry(store.as_ref(), &batch).await,
        "retrying a queued batch",
    );
    let lease = work::claim(store.as_ref(), &WorkerId::from("w"), &policy(60_000, 3))
        .await
        .expect("claim")
        .expect("nothing claimed")
        .lease;
    let docs: Vec<DocumentRecord> = ids
        .iter()
        .map(|id| document(&collection, &bucket, &batch.batch_id, id))
        .collect();
    documents
        .upsert_documents(
            &NamespaceId::from(ns),
            &collection.collection_id,
            &docs,
            None,
        )
        .await
        .expect("upsert");
    // A write that fails (its collection is gone) writes no event.
    let mut stray = collection.clone();
    stray.collection_id = CollectionId::generate();
    let stray_docs = vec![document(&stray, &bucket, &batch.batch_id, &ids[0])];
    assert!(matches!(
        documents
            .upsert_documents(
                &NamespaceId::from(ns),
                &stray.collection_id,
                &stray_docs,
                None
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    store
        .record_chunk(
            &lease,
            &chunk(
                &collection,
                &ids.iter().map(|id| (id.as_str(), None)).collect::<Vec<_>>(),
            ),
        )
        .await
        .expect("chunk");
    work::finish_shard(store.as_ref(), &lease, 1.0)
        .await
        .expect("finish")
        .expect("the batch ends with its only shard");
    assert_eq!(
        delivered_types(webhooks.as_ref(), &all).await,
        [
            BatchQueued,
            BatchProcessing,
            DocumentsWritten,
            BatchCompleted
        ]
    );
    assert_eq!(
        delivered_types(webhooks.as_ref(), &completed_only).await,
        [BatchCompleted]
    );
    assert!(delivered_types(webhooks.as_ref(), &off).await.is_empty());
    assert!(
        delivered_types(webhooks.as_ref(), &elsewhere)
            .await
            .is_empty()
    );
    let written = webhooks
        .list_deliveries(
            &all.webhook_id,
            &PageRequest {
                limit: 100,
                after: None,
            },
        )
        .await
        .expect("deliveries")
        .items
        .into_iter()
        .find(|d| d.event_type == DocumentsWritten)
        .expect("documents written");
    let event: serde_json::Value = serde_json::from_str(&written.payload).expect("JSON");
    assert_eq!(event["event_id"], written.event_id.as_str());
    assert_eq!(event["event_type"], "collection.documents.written");
    assert_eq!(event["namespace_id"], ns);
    assert_eq!(event["subject"]["id"], collection.collection_id.as_str());
    assert_eq!(event["data"]["document_count"], 3);
    assert_eq!(event["data"]["batch_id"], batch.batch_id.as_str());
    assert_eq!(event["data"]["index_signature"], "sig_1");
    assert_eq!(
        event["data"]["document_ids"].as_array().expect("ids").len(),
        3
    );

    // Leases: one sender per delivery; outcomes only under the lease.
    let skip_others = [completed_only.webhook_id.clone()];
    let first = webhooks
        .claim_delivery(&skip_others, 60_000)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(first.delivery.webhook_id, all.webhook_id);
    assert_eq!(first.delivery.event_type, BatchQueued, "oldest due first");
    let second = other_process
        .claim_delivery(&skip_others, 60_000)
        .await
        .expect("claim")
        .expect("due");
    assert_ne!(first.delivery.delivery_id, second.delivery.delivery_id);
    let skip_all = [all.webhook_id.clone(), completed_only.webhook_id.clone()];
    assert!(
        webhooks
            .claim_delivery(&skip_all, 60_000)
            .await
            .expect("claim")
            .is_none()
    );
    let stolen = DeliveryLease {
        token: "not-the-token".into(),
        ..first.clone()
    };
    let delivered = AttemptOutcome::Delivered { status: 204 };
    assert!(
        !webhooks
            .record_attempt(&stolen, &delivered)
            .await
            .expect("record")
    );
    assert!(
        webhooks
            .record_attempt(&first, &delivered)
            .await
            .expect("record")
    );
    let later = chrono::Utc::now().timestamp_millis() + 3_600_000;
    let retry = AttemptOutcome::Retry {
        status: Some(503),
        error: "the endpoint answered 503".into(),
        next_attempt_ms: later,
    };
    assert!(
        webhooks
            .record_attempt(&second, &retry)
            .await
            .expect("record")
    );
    let retried = webhooks
        .delivery(&all.webhook_id, &second.delivery.delivery_id)
        .await
        .expect("delivery")
        .expect("exists");
    assert_eq!(
        (
            retried.state,
            retried.attempts,
            retried.last_status,
            retried.next_attempt_ms
        ),
        (DeliveryState::Pending, 1, Some(503), later)
    );
    let done = webhooks
        .delivery(&all.webhook_id, &first.delivery.delivery_id)
        .await
        .expect("delivery")
        .expect("exists");
    assert_eq!(done.state, DeliveryState::Delivered);
    assert!(done.delivered_at.is_some());
    conflict(
        webhooks
            .redeliver(&all.webhook_id, &second.delivery.delivery_id)
            .await,
        "redelivering a pending delivery",
    );
    let again = webhooks
        .redeliver(&all.webhook_id, &first.delivery.delivery_id)
        .await
        .expect("redeliver");
    assert_eq!((again.state, again.attempts), (DeliveryState::Pending, 0));
    assert_eq!(again.event_id, first.delivery.event_id, "same event id");

    // 410 Gone: the delivery fails and the webhook turns off.
    let gone = webhooks
        .claim_delivery(std::slice::from_ref(&all.webhook_id), 60_000)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(gone.delivery.webhook_id, completed_only.webhook_id);
    let failed = AttemptOutcome::Failed {
        status: Some(410),
        error: "gone".into(),
        disable: Some("the endpoint answered 410 Gone".into()),
    };
    let before_gone = webhooks
        .webhook(&NamespaceId::from(ns), &completed_only.webhook_id)
        .await
        .expect("webhook")
        .expect("exists");
    assert!(
        webhooks
            .record_attempt(&gone, &failed)
            .await
            .expect("record")
    );
    // The switch-off counts as a write: an edit read before it loses.
    let mut stale = before_gone;
    stale.description = Some("edited".into());
    stale.revision += 1;
    conflict(
        webhooks.update_webhook(&stale).await,
        "an edit over a switch-off",
    );
    let disabled = webhooks
        .webhook(&NamespaceId::from(ns), &completed_only.webhook_id)
        .await
        .expect("webhook")
        .expect("exists");
    assert!(!disabled.active);
    assert_eq!(
        disabled.disabled_reason.as_deref(),
        Some("the endpoint answered 410 Gone")
    );
    assert!(disabled.event_types == [BatchCompleted], "kept as it was");
    assert_eq!(
        webhooks.next_due().await.expect("next due").map(|_| ()),
        Some(()),
        "the redelivered one is due"
    );

    // Finished deliveries past retention go; pending ones stay.
    let future = chrono::Utc::now().timestamp_millis() + 86_400_000;
    let page = PageRequest {
        limit: 100,
        after: None,
    };
    let before = webhooks
        .list_deliveries(&all.webhook_id, &page)
        .await
        .expect("deliveries")
        .items;
    assert!(before.iter().all(|d| d.state == DeliveryState::Pending));
    assert_eq!(webhooks.purge_deliveries(future).await.expect("purge"), 1);
    assert!(
        delivered_types(webhooks.as_ref(), &completed_only)
            .await
            .is_empty()
    );
    let after = webhooks
        .list_deliveries(&all.webhook_id, &page)
        .await
        .expect("deliveries")
        .items;
    assert_eq!(after, before);

    // A test event goes to one webhook, whatever it subscribes to.
    let test = webhooks
        .enqueue(&completed_only, &Event::test(&completed_only))
        .await
        .expect("enqueue");
    assert_eq!(test.event_type, WebhookTest);
    webhooks
        .delete_webhook(&NamespaceId::from(ns), &completed_only.webhook_id)
        .await
        .expect("delete");
    assert!(
        webhooks
            .delivery(&completed_only.webhook_id, &test.delivery_id)
            .await
            .expect("delivery")
            .is_none(),
        "deliveries go with their webhook"
    );
    assert!(matches!(
        webhooks
            .delete_webhook(&NamespaceId::from(ns), &completed_only.webhook_id)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let mut renamed = all.clone();
    renamed.url = "https://example.com/hook".into();
    renamed.active = false;
    renamed.revision += 1;
    webhooks.update_webhook(&renamed).await.expect("update");
    // A write based on an older read loses, whatever it changes.
    let mut stale = all.clone();
    stale.description = Some("stale".into());
    stale.revision += 1;
    conflict(webhooks.update_webhook(&stale).await, "a stale update");
    let read = webhooks
        .webhook(&NamespaceId::from(ns), &all.webhook_id)
        .await
        .expect("webhook")
        .expect("exists");
    assert_eq!(read, renamed);
    assert!(
        webhooks
            .webhook(&NamespaceId::generate(), &all.webhook_id)
            .await
            .expect("webhook")
            .is_none(),
        "namespaces see their own webhooks only"
    );
}

fn conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(
            result,
            Err(StoreError::Conflict(_) | StoreError::Batch(_) | StoreError::Taken { .. })
        ),
        "{what}: expected a conflict, got {result:?}"
    );
}

/// Uniqueness and state rules hold on the backend, not in the caller.
async fn conditional_writes(store: &dyn Store, bucket: &Bucket, ids: &[ObjectId]) {
    let ns = store
        .namespace(&bucket.namespace_id)
        .await
        .expect("namespace")
        .expect("exists");
    let taken = Namespace {
        namespace_id: NamespaceId::generate(),
        ..ns
    };
    conflict(store.create_namespace(&taken).await, "namespace name");
    let same_name = Bucket {
        bucket_id: BucketId::generate(),
        ..bucket.clone()
    };
    conflict(store.create_bucket(&same_name).await, "bucket name");
    let object = store
        .object(&bucket.bucket_id, &ids[0])
        .await
        .expect("object")
        .expect("exists");
    conflict(store.create_object(&object).await, "object id");

    // An Idempotency-Key creates one batch, whoever repeats it.
    let idempotency = Some(("key-1".to_owned(), "hash-1".to_owned()));
    let draft = BatchRecord::draft(
        &bucket.namespace_id,
        &bucket.bucket_id,
        Some("first".into()),
        idempotency.clone(),
    );
    let created = store
        .create_batch(&draft, &ids[..1])
        .await
        .expect("create")
        .expect("new batch");
    let again = BatchRecord::draft(&bucket.namespace_id, &bucket.bucket_id, None, idempotency);
    let existing = store
        .create_batch(&again, &ids[1..])
        .await
        .expect("create again")
        .expect_err("the key is taken");
    assert_eq!(existing.batch_id, created.batch_id);
    assert_eq!(existing.total, 1);
    let found = store
        .batch_by_idempotency_key(&bucket.bucket_id, "key-1")
        .await
        .expect("by key")
        .expect("found");
    assert_eq!(found.batch_id, created.batch_id);

    // DRAFT takes objects (once each); submit checks the count it planned.
    let grown = batches::add_objects(store, &created, &ids[..2])
        .await
        .expect("add");
    assert_eq!(grown.total, 2);
    let draft = Action::Submit.from();
    let with_history = Pipelines {
        collections: Vec::new(),
        include_processing_history: true,
    };
    let stale = store
        .submit_batch(&created.batch_id, draft, &with_history, 1, &[])
        .await
        .expect("submit with a stale count");
    assert!(stale.is_none(), "a stale count writes nothing");
    let submitted = store
        .submit_batch(&created.batch_id, draft, &with_history, 2, &[])
        .await
        .expect("submit")
        .expect("queued");
    assert_eq!(submitted.status, BatchStatus::Queued);
    assert!(submitted.include_processing_history);
    let without = Pipelines {
        include_processing_history: false,
        ..with_history.clone()
    };
    let resubmitted = store
        .submit_batch(&created.batch_id, draft, &without, 2, &[])
        .await
        .expect("submit again");
    assert!(
        resubmitted.is_none(),
        "a queued batch is not submitted again"
    );
    assert!(
        fresh(store, &created).await.include_processing_history,
        "unchanged"
    );
    conflict(
        batches::add_objects(store, &submitted, &ids[2..]).await,
        "adding to a queued batch",
    );
    assert!(
        store
            .add_batch_objects(&created.batch_id, Action::AddObjects.from(), &ids[2..])
            .await
            .expect("add")
            .is_none(),
        "the store adds nothing to a queued batch, whatever the caller decided"
    );
    let queued = store
        .list_batches(
            &bucket.bucket_id,
            Some(BatchStatus::Queued),
            &PageRequest {
                limit: 10,
                after: None,
            },
        )
        .await
        .expect("list");
    assert_eq!(
        queued
            .items
            .iter()
            .map(|b| b.batch_id.as_str())
            .collect::<Vec<_>>(),
        [created.batch_id.as_str()]
    );
    let busy = batches::delete_bucket(store, &bucket.namespace_id, &bucket.bucket_id).await;
    assert!(
        matches!(&busy, Err(StoreError::Batch(BatchError::InUse { batches, .. })) if batches.as_slice() == std::slice::from_ref(&created.batch_id)),
        "deleting a bucket with a queued batch: {busy:?}"
    );
    conflict(
        batches::delete(store, &submitted).await,
        "deleting a queued batch",
    );
    let canceled = batches::cancel(store, &submitted).await.expect("cancel");
    assert_eq!(canceled.status, BatchStatus::Canceled);
    let again = batches::cancel(store, &submitted)
        .await
        .expect("cancel again");
    assert_eq!(
        again.status,
        BatchStatus::Canceled,
        "a repeated cancel is settled"
    );
    batches::delete(store, &canceled)
        .await
        .expect("delete a canceled batch");
    assert!(
        store
            .batch(&bucket.bucket_id, &created.batch_id)
            .await
            .expect("batch")
            .is_none()
    );
}

fn live() -> strata_host::store::LiveProgress {
    strata_host::store::LiveProgress {
        items_per_second: 1.0,
        current_stage: None,
        reported_at: now(),
        last_progress_at: now(),
    }
}

/// Makes each rule a test on SQLite (a fresh database file) and on MongoDB
/// (a loopback server of its own, or `STRATA_TEST_MONGODB_URI`, with a
/// fresh database): `sqlite::<rule>`, `mongodb::<rule>`.
macro_rules! store_rules {
    ($($rule:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $rule() {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let path = dir.path().join("strata.db");
                    super::$rule(async || {
                        super::Handles::of(std::sync::Arc::new(
                            super::SqliteStore::open(&path).expect("open"),
                        ))
                    })
                    .await;
                }
            )*
        }
        mod mongodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $rule() {
                    let server = super::MongoServer::start();
                    let uri = server.database_uri();
                    super::$rule(async || {
                        super::Handles::of(std::sync::Arc::new(
                            super::MongoStore::connect(&uri).await.expect("connect"),
                        ))
                    })
                    .await;
                }
            )*
        }
    };
}

store_rules!(
    events_reach_the_outbox_with_their_change,
    registry_versions_are_immutable_and_numbered,
    extractor_names_have_owners,
    a_collection_update_keeps_name_source_and_count,
    keys_carry_their_rights_and_the_last_admin_stays,
    uniqueness_and_batch_rules_hold_on_the_backend,
    lists_page_by_key,
    one_claim_wins_and_a_lost_lease_writes_nothing,
    the_rescuer_requeues_fails_and_leaves_alone,
);

/// A batch written by a version without shards (its counters on the batch
/// itself) gets one shard at connect, with those counters; a running one
/// is queued again, since its worker's lease is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_batches_get_a_shard_on_mongodb() {
    let server = MongoServer::start();
    let uri = server.database_uri();
    let client = ::mongodb::Client::with_uri_str(&uri).await.expect("client");
    let db = client.default_database().expect("database");
    let batches = db.collection::<::mongodb::bson::Document>("batches");
    let objects = db.collection::<::mongodb::bson::Document>("batch_objects");
    // The stand-in kept a `$set` boolean as 0/1: what earlier versions
    // left there reads back as the boolean it was.
    let hello = db
        .run_command(::mongodb::bson::doc! { "hello": 1 })
        .await
        .expect("hello");
    let standin = !hello.contains_key("setName") && hello.get_str("msg") != Ok("isdbgrid");
    for (id, status) in [
        ("btch_old_run", "PROCESSING"),
        ("btch_old_done", "COMPLETED"),
    ] {
        let mut batch = ::mongodb::bson::to_document(&BatchRecord::draft(
            &"ns_1".into(),
            &"bkt_1".into(),
            None,
            None,
        ))
        .expect("document");
        batch.insert("_id", id);
        batch.insert("batch_id", id);
        batch.insert("status", status);
        batch.insert("total", 2_i64);
        batch.insert("processed", 1_i64);
        batch.insert("failed", 1_i64);
        batch.insert("attempts", 2_i64);
        if standin {
            batch.insert("include_processing_history", 1_i32);
        }
        batches.insert_one(batch).await.expect("insert batch");
        for object in ["obj_a", "obj_b"] {
            objects
                .insert_one(::mongodb::bson::doc! {
                    "_id": format!("{id}/{object}"), "batch_id": id, "object_id": object,
                    "status": "pending", "done": 0_i64,
                })
                .await
                .expect("insert object");
        }
    }
    let store = MongoStore::connect(&uri).await.expect("connect");
    // Connecting again changes nothing.
    MongoStore::connect(&uri).await.expect("connect again");
    let shards = store
        .shards(&[
            BatchId::from("btch_old_done"),
            BatchId::from("btch_old_run"),
        ])
        .await
        .expect("shards");
    let summary: Vec<(&str, ShardStatus, u64, u64, u32, &str, &str)> = shards
        .iter()
        .map(|s| {
            (
                s.batch_id.as_str(),
                s.status,
                s.processed,
                s.failed,
                s.attempts,
                s.first_object_id.as_str(),
                s.last_object_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "btch_old_done",
                ShardStatus::Completed,
                1,
                1,
                2,
                "obj_a",
                "obj_b"
            ),
            (
                "btch_old_run",
                ShardStatus::Queued,
                1,
                1,
                2,
                "obj_a",
                "obj_b"
            ),
        ]
    );
    let requeued = store
        .batch_by_id(&BatchId::from("btch_old_run"))
        .await
        .expect("read")
        .expect("there");
    assert_eq!(requeued.status, BatchStatus::Queued);
    assert_eq!(requeued.include_processing_history, standin);
}
