#!/usr/bin/env bash
# The batch flow against a running `strata serve`: create a bucket, upload
# the files of a directory, create a collection, create, fill and submit a
# batch, follow its progress until it is done, and show the documents.
#
#   MP_API_URL=http://127.0.0.1:8080 MP_API_KEY=sk_… examples/quickstart.sh [DIR]
#
# MP_NAMESPACE defaults to `default`; DIR to examples/data/docs. Needs curl
# and python3.
set -euo pipefail

: "${MP_API_URL:?set MP_API_URL, e.g. http://127.0.0.1:8080}"
: "${MP_API_KEY:?set MP_API_KEY to an API key (strata serve prints one on first start)}"
export MP_NAMESPACE="${MP_NAMESPACE:-default}"
DATA="${1:-$(dirname "$0")/data/docs}"
RUN="$(date -u +%Y%m%d-%H%M%S)-$$"

# Every call: fail with the problem document printed when the API refuses.
api() {
  curl -sS --fail-with-body -H "Authorization: Bearer $MP_API_KEY" -H "X-Namespace: $MP_NAMESPACE" "$@"
}
field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

echo "== bucket"
bucket_id=$(api -X POST "$MP_API_URL/v1/buckets" -H "Content-Type: application/json" \
  -d "{\"bucket_name\": \"quickstart-$RUN\"}" | field bucket_id)
echo "bucket $bucket_id"

echo "== objects from $DATA"
object_ids=()
for file in "$DATA"/*; do
  [ -f "$file" ] || continue
  id=$(api -X POST "$MP_API_URL/v1/buckets/$bucket_id/objects" \
    -F "file=@$file" -F "key=$(basename "$file")" | field object_id)
  echo "  $id  $(basename "$file")"
  object_ids+=("$id")
done
[ "${#object_ids[@]}" -ge 2 ] || { echo "quickstart: $DATA needs at least two files" >&2; exit 1; }

echo "== collection"
collection_id=$(api -X POST "$MP_API_URL/v1/collections" -H "Content-Type: application/json" -d "{
    \"collection_name\": \"quickstart-$RUN\",
    \"source\": {\"bucket_id\": \"$bucket_id\"},
    \"extractors\": [
      {\"name\": \"text-extract\"},
      {\"name\": \"lang-detect\"},
      {\"name\": \"keywords\", \"params\": {\"k\": 5}},
      {\"name\": \"hash-embed\", \"params\": {\"dim\": 64}},
      {\"name\": \"entities\"}
    ]
  }" | field collection_id)
echo "collection $collection_id"

echo "== batch: create with two objects, add the rest, submit"
batch_id=$(api -X POST "$MP_API_URL/v1/buckets/$bucket_id/batches" \
  -H "Content-Type: application/json" \
  -d "{
    \"batch_name\": \"quickstart-$RUN\",
    \"object_ids\": [\"${object_ids[0]}\", \"${object_ids[1]}\"]
  }" | field batch_id)
rest=$(printf '"%s",' "${object_ids[@]:2}")
if [ -n "$rest" ]; then
  api -X POST "$MP_API_URL/v1/buckets/$bucket_id/batches/$batch_id/objects" \
    -H "Content-Type: application/json" \
    -d "{ \"object_ids\": [${rest%,}] }" >/dev/null
fi
task_id=$(api -X POST "$MP_API_URL/v1/buckets/$bucket_id/batches/$batch_id/submit" \
  -H "Content-Type: application/json" \
  -d '{ "include_processing_history": true }' | field task_id)
echo "batch $batch_id, task $task_id"

echo "== progress"
while true; do
  batch=$(api "$MP_API_URL/v1/buckets/$bucket_id/batches/$batch_id")
  status=$(field status <<<"$batch")
  echo "  $(field status_message <<<"$batch")  [health: $(field health <<<"$batch")]"
  case "$status" in COMPLETED|FAILED|CANCELED) break ;; esac
  sleep 1
done
echo "task: $(api "$MP_API_URL/v1/tasks/$task_id" | field status)"

echo "== documents"
api "$MP_API_URL/v1/collections/$collection_id/documents?limit=100" | python3 -c '
import json, sys
for d in json.load(sys.stdin)["results"]:
    f = d["features"]
    lang = f.get("lang-detect", {}).get("language") or "-"
    words = ", ".join((f.get("keywords", {}).get("keywords") or [])[:3])
    errors = "; ".join(e["extractor"] + ": " + e["message"] for e in d["errors"])
    doc_id, obj = d["document_id"], d["object_id"]
    print(f"  {doc_id}  {obj}  {lang:<3} {words}" + (f"  errors: {errors}" if errors else ""))
'
[ "$status" = COMPLETED ]
