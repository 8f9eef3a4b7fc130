"""The MongoDB baseline of bench section 6: the same document upserts as
Strata's MongoDB sink, from a plain client (pymongo), on the same server.

Usage: plain_client.py URI DATABASE STRATA_DATABASE DOCUMENTS.jsonl CHUNK

Each line of DOCUMENTS.jsonl is one document as Strata stores it. The
`documents` collection of DATABASE gets the indexes Strata's has (read from
STRATA_DATABASE), so both writes maintain the same indexes. Every document is
upserted by `_id` (`$set` of its fields, `$setOnInsert` of its `created_at`),
in unordered bulk writes of CHUNK documents, twice: first inserting, then
replacing. Prints `{"new": docs/s, "again": docs/s}`.
"""

import json
import sys
import time

from pymongo import MongoClient, UpdateOne


def main():
    uri, database, strata, path = sys.argv[1:5]
    chunk = int(sys.argv[5])
    with open(path, encoding="utf-8") as f:
        documents = [json.loads(line) for line in f]
    client = MongoClient(uri)
    collection = client[database]["documents"]
    collection.drop()
    for index in client[strata]["documents"].list_indexes():
        if index["name"] != "_id_":
            collection.create_index(
                list(index["key"].items()),
                name=index["name"],
                unique=index.get("unique", False),
            )
    rates = {}
    for name in ("new", "again"):
        started = time.perf_counter()
        for i in range(0, len(documents), chunk):
            writes = []
            for d in documents[i : i + chunk]:
                fields = dict(d)
                created_at = fields.pop("created_at")
                key = fields.pop("_id")
                writes.append(
                    UpdateOne(
                        {"_id": key},
                        {"$set": fields, "$setOnInsert": {"created_at": created_at}},
                        upsert=True,
                    )
                )
            collection.bulk_write(writes, ordered=False)
        rates[name] = len(documents) / (time.perf_counter() - started)
    print(json.dumps(rates))


if __name__ == "__main__":
    main()
