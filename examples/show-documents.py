#!/usr/bin/env python3
"""Prints a few documents written by `strata run` (used by `make demo`)."""

import json
import sys


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def main(text_path, image_path):
    docs = load(text_path)
    french = next(d for d in docs if d["key"] == "french.txt")
    embedding = french["features"]["hash-embed"]["embedding"]
    french["features"]["hash-embed"]["embedding"] = embedding[:4] + [f"... {len(embedding)} values"]
    print("== one text document ==")
    print(json.dumps(french, indent=2, ensure_ascii=False))
    print("\n== language, encoding and key phrases of each text ==")
    for d in docs:
        f = d["features"]
        language = f.get("lang-detect", {}).get("language")
        encoding = f.get("text-extract", {}).get("encoding")
        keywords = ", ".join(f.get("keywords", {}).get("keywords", [])[:3])
        print(f"  {d['key']:<20} {language or '-':<4} {encoding or '-':<10} {keywords}")
    print("\n== images ==")
    for d in load(image_path):
        meta = d["features"].get("image-meta")
        if meta:
            print(f"  {d['key']:<16} {meta['format']:<5} {meta['width']}x{meta['height']} "
                  f"{meta['color_type']:<6} dhash {meta['dhash']}")
        else:
            print(f"  {d['key']:<16} errors: {d['errors']}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
