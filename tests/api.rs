//! The REST API against a real `strata serve` process: tenancy, buckets,
//! objects, pagination and bad input.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Options, Server, send};

async fn bucket(server: &Server, name: &str) -> String {
    let (status, body) = server
        .post("/v1/buckets", json!({ "bucket_name": name }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["bucket_id"].as_str().expect("bucket_id").to_owned()
}

#[tokio::test]
async fn health_and_readiness_name_the_backends() {
    let server = Server::start();
    let (status, body) = server.get("/healthz").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, body) = server.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    let backends: Vec<&str> = body["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| b["backend"].as_str().expect("backend"))
        .collect();
    assert!(
        backends[0].starts_with("sqlite://") && backends[0].ends_with("strata.db"),
        "{backends:?}"
    );
    assert!(backends[1].starts_with("file://"), "{backends:?}");
}

#[tokio::test]
async fn first_start_prints_and_saves_an_admin_key_once() {
    let options = Options {
        generated_admin_key: true,
        ..Options::default()
    };
    let mut server = Server::start_with(options.clone());
    let line = server
        .banner
        .iter()
        .find(|l| l.starts_with("admin key"))
        .expect("the admin key is printed")
        .clone();
    let secret = line.rsplit(' ').next().expect("secret").to_owned();
    let path = server.data_dir.join("admin.key");
    let saved = std::fs::read_to_string(&path).expect("admin.key");
    assert_eq!(saved.trim(), secret);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (status, _) = send(server.request_as(&secret, "default", Method::GET, "/v1/buckets")).await;
    assert_eq!(status, StatusCode::OK);
    // A restart keeps the key and prints nothing new.
    server.kill();
    let data_dir = server.data_dir.clone();
    let again = Server::start_in(&data_dir, &options);
    assert!(
        again.banner.iter().all(|l| !l.starts_with("admin key")),
        "{:?}",
        again.banner
    );
    let (status, _) = send(again.request_as(&secret, "default", Method::GET, "/v1/buckets")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn keys_and_namespaces_isolate_tenants() {
    let server = Server::start();
    let url = |p: &str| format!("{}{p}", server.url);
    // No key, a malformed header, an unknown key: 401.
    let (status, _) = send(server.client.get(url("/v1/buckets"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(
        server
            .client
            .get(url("/v1/buckets"))
            .header("Authorization", "Basic abc"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(server.client.get(url("/v1/buckets")).bearer_auth("sk_nope")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, ns) = server
        .post("/v1/namespaces", json!({ "namespace_name": "staging" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ns}");
    assert!(ns["namespace_id"].as_str().expect("id").starts_with("ns_"));
    assert_eq!(ns["namespace_name"], "staging");
    // `name`, as the field was first called, still reads, and still shows.
    assert_eq!(ns["name"], "staging");
    let (status, _) = server
        .post("/v1/namespaces", json!({ "name": "staging" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // A name must read as a name, and never as a path segment a URL
    // resolves away.
    for bad in ["bad name", ".", ".."] {
        let (status, problem) = server
            .post("/v1/namespaces", json!({ "namespace_name": bad }))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(problem["invalid_params"][0]["name"], "namespace_name");
    }
    // A body must be a JSON object: serde alone would read a struct from
    // an array of its fields.
    let (status, problem) = server.post("/v1/api-keys", json!([null, null])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["invalid_params"][0]["name"], "body");
    let (status, body) = server
        .post(
            "/v1/api-keys",
            json!({ "namespace": "staging", "name": "ci" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let staging_key = body["secret"].as_str().expect("secret").to_owned();
    assert_eq!(body["admin"], false);

    // The staging key works in staging, by name or id, and nowhere else.
    let (status, created) = send(
        server
            .request_as(&staging_key, "staging", Method::POST, "/v1/buckets")
            .json(&json!({ "bucket_name": "photos" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let ns_id = ns["namespace_id"].as_str().expect("id");
    let (status, list) =
        send(server.request_as(&staging_key, ns_id, Method::GET, "/v1/buckets")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["results"][0]["bucket_name"], "photos");
    for other in ["default", "no-such-namespace"] {
        let (status, _) =
            send(server.request_as(&staging_key, other, Method::GET, "/v1/buckets")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{other}");
    }
    // Only admin keys manage namespaces and keys.
    let (status, _) = send(
        server
            .request_as(&staging_key, "staging", Method::POST, "/v1/namespaces")
            .json(&json!({ "name": "mine" })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A resource of another namespace is not visible, even to an admin acting elsewhere.
    let bucket_id = created["bucket_id"].as_str().expect("bucket_id");
    let (status, _) = server.get(&format!("/v1/buckets/{bucket_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(server.request_as(
        support::ADMIN_KEY,
        "staging",
        Method::GET,
        &format!("/v1/buckets/{bucket_id}"),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    // An admin naming a namespace that does not exist: 404.
    let (status, _) =
        send(server.request_as(support::ADMIN_KEY, "nowhere", Method::GET, "/v1/buckets")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn buckets_are_created_listed_by_pages_and_deleted() {
    let server = Server::start();
    let mut ids = Vec::new();
    for name in ["a-bucket", "b-bucket", "c-bucket"] {
        ids.push(bucket(&server, name).await);
    }
    let (status, dup) = server
        .post("/v1/buckets", json!({ "bucket_name": "a-bucket" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{dup}");
    assert!(dup["detail"].as_str().expect("detail").contains("a-bucket"));

    let (_, by_name) = server.get("/v1/buckets/b-bucket").await;
    assert_eq!(by_name["bucket_id"], ids[1].as_str());

    let (status, first) = server.get("/v1/buckets?limit=2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["results"].as_array().expect("results").len(), 2);
    let token = first["next_page_token"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, second) = server
        .get(&format!("/v1/buckets?limit=2&page_token={token}"))
        .await;
    let names: Vec<&str> = first["results"]
        .as_array()
        .into_iter()
        .chain(second["results"].as_array())
        .flatten()
        .map(|b| b["bucket_name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["a-bucket", "b-bucket", "c-bucket"]);
    assert!(second["next_page_token"].is_null(), "{second}");

    let (status, bad) = server.get("/v1/buckets?page_token=garbage").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    let (status, _) = server.get("/v1/buckets?limit=zero").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for limit in [0, 1001] {
        let (status, bad) = server.get(&format!("/v1/buckets?limit={limit}")).await;
        assert_eq!(
            (status, bad["invalid_params"][0]["name"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("limit")),
            "{bad}"
        );
    }

    assert_eq!(
        server.delete("/v1/buckets/a-bucket").await,
        StatusCode::NO_CONTENT
    );
    let (status, _) = server.get(&format!("/v1/buckets/{}", ids[0])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        server.delete("/v1/buckets/a-bucket").await,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_bodies_are_problems_naming_the_field() {
    let server = Server::start();
    let cases: &[(&str, StatusCode, Option<&str>)] = &[
        ("{", StatusCode::BAD_REQUEST, None),
        ("{}", StatusCode::UNPROCESSABLE_ENTITY, Some("bucket_name")),
        (
            r#"{"bucket_name": 7}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("bucket_name"),
        ),
        (
            r#"{"bucket_name": "ok", "colour": "red"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("colour"),
        ),
        (
            r#"{"bucket_name": "has space"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("bucket_name"),
        ),
        (
            r#"{"bucket_name": "bkt_looks_like_an_id"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("bucket_name"),
        ),
    ];
    for (body, expected, field) in cases {
        let (status, problem) = send(
            server
                .request(Method::POST, "/v1/buckets")
                .header("content-type", "application/json")
                .body(*body),
        )
        .await;
        assert_eq!(status, *expected, "{body}: {problem}");
        if let Some(field) = field {
            assert!(
                problem["invalid_params"][0]["name"] == *field
                    || problem["detail"].as_str().expect("detail").contains(field),
                "{body}: {problem}"
            );
        }
    }
    let (status, _) = send(server.request(Method::POST, "/v1/buckets").body("{}")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = server.get("/v1/no-such-route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.get("/v1/buckets").await;
    assert_eq!(status, StatusCode::OK, "nothing was half-written");
    let (_, list) = server.get("/v1/buckets").await;
    assert_eq!(list["results"], json!([]));
}

#[tokio::test]
async fn objects_upload_as_json_or_multipart_and_read_back() {
    let server = Server::start();
    let bucket_id = bucket(&server, "docs").await;
    let objects = format!("/v1/buckets/{bucket_id}/objects");

    let (status, text) = server
        .post(&objects, json!({ "object_id": "obj_abc", "key": "notes/hello.txt", "text": "Bonjour à tous", "metadata": { "lang": "fr" } }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    assert_eq!(text["object_id"], "obj_abc");
    assert_eq!(text["mime_type"], "text/plain");
    assert_eq!(text["size_bytes"], "Bonjour à tous".len());
    assert_eq!(text["sha256"], hex_sha256(b"Bonjour \xc3\xa0 tous"));
    assert_eq!(text["metadata"]["lang"], "fr");
    assert!(
        text.get("blob_key").is_none(),
        "internal locations stay internal"
    );

    let (status, dup) = server
        .post(&objects, json!({ "object_id": "obj_abc", "text": "other" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{dup}");
    let content = server
        .request(Method::GET, &format!("{objects}/obj_abc/content"))
        .send()
        .await
        .expect("content");
    assert_eq!(content.headers()["content-type"], "text/plain");
    assert_eq!(content.headers()["x-content-type-options"], "nosniff");
    assert!(
        content.headers().get("content-disposition").is_none(),
        "plain text shows in place"
    );
    assert_eq!(
        content.bytes().await.expect("bytes").as_ref(),
        "Bonjour à tous".as_bytes(),
        "a conflict leaves the content alone"
    );

    // A page a tenant uploads is downloaded, never rendered on our origin.
    let (status, page) = server
        .post(
            &objects,
            json!({ "object_id": "page", "key": "page.html", "text": "<script>alert(1)</script>" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{page}");
    assert_eq!(page["mime_type"], "text/html");
    let content = server
        .request(Method::GET, &format!("{objects}/page/content"))
        .send()
        .await
        .expect("content");
    assert_eq!(content.headers()["content-disposition"], "attachment");
    assert_eq!(content.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        content.headers()["content-security-policy"],
        "default-src 'none'; sandbox"
    );
    assert_eq!(
        server.delete(&format!("{objects}/page")).await,
        StatusCode::NO_CONTENT
    );

    // Base64 content; a PNG signature is sniffed without a MIME type or extension.
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    let b64 = base64_encode(png);
    let (status, image) = server
        .post(&objects, json!({ "content_base64": b64 }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{image}");
    assert!(image["object_id"].as_str().expect("id").starts_with("obj_"));
    assert_eq!(image["mime_type"], "image/png");
    assert_eq!(image["size_bytes"], png.len());

    // Multipart: a file with a name, and metadata.
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"# Title\n\nSome *markdown*.".to_vec())
                .file_name("readme.md"),
        )
        .text("metadata", r#"{"source": "upload"}"#);
    let (status, md) = send(server.request(Method::POST, &objects).multipart(form)).await;
    assert_eq!(status, StatusCode::CREATED, "{md}");
    assert_eq!(md["key"], "readme.md");
    assert_eq!(md["mime_type"], "text/markdown");
    assert_eq!(md["metadata"]["source"], "upload");
    let md_id = md["object_id"].as_str().expect("id").to_owned();
    let (_, got) = server.get(&format!("{objects}/{md_id}")).await;
    assert_eq!(got, md);

    let (_, page) = server.get(&format!("{objects}?limit=2")).await;
    let (_, rest) = server
        .get(&format!(
            "{objects}?limit=2&page_token={}",
            page["next_page_token"].as_str().expect("token")
        ))
        .await;
    assert_eq!(
        page["results"].as_array().expect("page").len()
            + rest["results"].as_array().expect("rest").len(),
        3
    );

    assert_eq!(
        server.delete(&format!("{objects}/{md_id}")).await,
        StatusCode::NO_CONTENT
    );
    let (status, _) = server.get(&format!("{objects}/{md_id}/content")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.get("/v1/buckets/no-such-bucket/objects").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_uploads_name_the_field_and_store_nothing() {
    let server = Server::start_with(Options {
        args: vec!["--max-object-mb".into(), "1".into()],
        ..Options::default()
    });
    let bucket_id = bucket(&server, "strict").await;
    let objects = format!("/v1/buckets/{bucket_id}/objects");
    let cases: &[(Value, &str)] = &[
        (json!({}), "text"),
        (json!({ "text": "a", "content_base64": "YQ==" }), "text"),
        (json!({ "content_base64": "not base64!" }), "content_base64"),
        (json!({ "text": "a", "metadata": [1, 2] }), "metadata"),
        (json!({ "text": "a", "object_id": "../etc" }), "object_id"),
        (
            json!({ "text": "a", "mime_type": "not a type" }),
            "mime_type",
        ),
        (json!({ "text": "a", "size": 1 }), "size"),
    ];
    for (body, field) in cases {
        let (status, problem) = server.post(&objects, body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {problem}"
        );
        assert_eq!(
            problem["invalid_params"][0]["name"], *field,
            "{body}: {problem}"
        );
    }
    let big = "x".repeat((1 << 20) + 1);
    let (status, _) = server.post(&objects, json!({ "text": big })).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(vec![b'x'; (1 << 20) + 1]).file_name("big.txt"),
    );
    let (status, _) = send(server.request(Method::POST, &objects).multipart(form)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let form = reqwest::multipart::Form::new().text("metadata", "{}");
    let (status, problem) = send(server.request(Method::POST, &objects).multipart(form)).await;
    assert_eq!(
        (status, problem["invalid_params"][0]["name"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("file"))
    );

    let (_, list) = server.get(&objects).await;
    assert_eq!(list["results"], json!([]), "nothing was stored");
    let blobs = server.data_dir.join("blobs/objects");
    let files = walk(&blobs);
    assert!(files.is_empty(), "no content left behind: {files:?}");
    let spooled = walk(&server.data_dir.join("spool"));
    assert!(
        spooled.is_empty(),
        "no spooled upload left behind: {spooled:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
    }
    files
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

const TEXT_PIPELINE: &str = r#"[
    {"name": "text-extract"},
    {"name": "lang-detect"},
    {"name": "keywords", "params": {"k": 5}},
    {"name": "hash-embed", "version": "1.0.0", "params": {"dim": 64}},
    {"name": "entities"}
]"#;

#[tokio::test]
async fn extractors_are_listed_with_their_manifests() {
    let server = Server::start();
    let (status, list) = server.get("/v1/extractors?limit=3").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let names: Vec<&str> = list["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["content-hash", "entities", "hash-embed"]);
    let token = list["next_page_token"].as_str().expect("more");
    let (_, rest) = server
        .get(&format!("/v1/extractors?page_token={token}"))
        .await;
    let rest: Vec<&str> = rest["results"]
        .as_array()
        .expect("rest")
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    // The built-ins written in Rust and the one written in Python.
    assert_eq!(
        rest,
        [
            "image-meta",
            "keywords",
            "lang-detect",
            "readability",
            "text-extract"
        ]
    );
    let (status, one) = server.get("/v1/extractors/lang-detect").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["latest_version"], "1.0.0");
    let version = &one["versions"][0];
    assert_eq!(version["manifest"]["depends_on"], json!(["text-extract"]));
    assert_eq!(version["content_hash"].as_str().expect("hash").len(), 64);
    let (status, _) = server.get("/v1/extractors/no-such-extractor").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn collections_are_planned_at_creation() {
    let server = Server::start();
    bucket(&server, "library").await;
    let extractors: Value = serde_json::from_str(TEXT_PIPELINE).expect("pipeline");
    let (status, col) = server
        .post(
            "/v1/collections",
            json!({ "collection_name": "texts", "source": { "bucket_id": "library" }, "extractors": extractors }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{col}");
    assert!(
        col["collection_id"]
            .as_str()
            .expect("id")
            .starts_with("col_")
    );
    assert_eq!(col["tiers"][0], json!(["text-extract@1.0.0"]));
    assert_eq!(col["tiers"][1].as_array().expect("tier 1").len(), 4);
    assert_eq!(
        col["output_schema"]["hash-embed.embedding"], "FixedSizeList(64 x Float32)",
        "{col}"
    );
    assert_eq!(col["output_schema"]["lang-detect.language"], "Utf8");
    assert_eq!(col["document_count"], 0);
    let signature = col["index_signature"]
        .as_str()
        .expect("signature")
        .to_owned();
    assert!(signature.starts_with("sig_"));

    // Same pipeline with keys in another order: same signature; other params: another.
    let mut again: Value = serde_json::from_str(TEXT_PIPELINE).expect("pipeline");
    again[2]["params"] = json!({ "k": 5 });
    let (_, same) = server
        .post("/v1/collections", json!({ "collection_name": "texts-2", "source": { "bucket_id": "library" }, "extractors": again }))
        .await;
    assert_eq!(same["index_signature"], signature.as_str());
    again[2]["params"] = json!({ "k": 6 });
    let (_, other) = server
        .post("/v1/collections", json!({ "collection_name": "texts-3", "source": { "bucket_id": "library" }, "extractors": again }))
        .await;
    assert_ne!(other["index_signature"], signature.as_str());

    let (_, by_name) = server.get("/v1/collections/texts").await;
    assert_eq!(by_name, col);
    let (_, list) = server.get("/v1/collections?limit=2").await;
    assert_eq!(list["results"].as_array().expect("results").len(), 2);
    let (status, _) = server
        .post("/v1/collections", json!({ "collection_name": "texts", "source": { "bucket_id": "library" }, "extractors": [{"name": "content-hash"}] }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // The bucket cannot go while collections read from it.
    let (status, problem) = send(server.request(Method::DELETE, "/v1/buckets/library")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("texts")
    );
    assert_eq!(
        server.delete("/v1/collections/texts").await,
        StatusCode::NO_CONTENT
    );
    let (status, _) = server.get("/v1/collections/texts").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_bad_pipeline_is_refused_naming_the_field() {
    let server = Server::start();
    bucket(&server, "b").await;
    let cases: &[(Value, &str, &str)] = &[
        (json!([]), "extractors", "at least one"),
        (json!([{"name": "ocr"}]), "extractors[0].name", "ocr"),
        (
            json!([{"name": "content-hash", "version": "9.9.9"}]),
            "extractors[0].version",
            "9.9.9",
        ),
        (
            json!([{"name": "text-extract"}, {"name": "keywords", "params": {"k": 0}}]),
            "extractors[1].params.k",
            "",
        ),
        (
            json!([{"name": "text-extract"}, {"name": "keywords", "params": {"colour": 1}}]),
            "extractors[1].params.colour",
            "",
        ),
        (
            json!([{"name": "content-hash", "params": [1]}]),
            "extractors[0].params",
            "object",
        ),
        (
            json!([{"name": "lang-detect"}]),
            "extractors",
            "text-extract",
        ),
        (
            json!([{"name": "content-hash"}, {"name": "content-hash"}]),
            "extractors",
            "more than once",
        ),
        (
            json!([{"name": "content-hash", "typo": true}]),
            "extractors[0]",
            "typo",
        ),
    ];
    for (extractors, field, mention) in cases {
        let (status, problem) = server
            .post("/v1/collections", json!({ "collection_name": "c", "source": { "bucket_id": "b" }, "extractors": extractors }))
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{extractors}: {problem}"
        );
        let name = problem["invalid_params"][0]["name"].as_str().expect("name");
        assert!(name.starts_with(field), "{extractors}: {problem}");
        assert!(
            problem["detail"]
                .as_str()
                .expect("detail")
                .contains(mention),
            "{extractors}: {problem}"
        );
    }
    let (status, problem) = server
        .post("/v1/collections", json!({ "collection_name": "c", "source": { "bucket_id": "nope" }, "extractors": [{"name": "content-hash"}] }))
        .await;
    assert_eq!(
        (status, problem["invalid_params"][0]["name"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("source.bucket_id"))
    );
    let (_, list) = server.get("/v1/collections").await;
    assert_eq!(list["results"], json!([]), "nothing was created");
}
