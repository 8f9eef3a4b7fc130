//! `content-hash`: SHA-256 and byte size of an object's raw content.

use sha2::{Digest, Sha256};
use strata_sdk::prelude::*;

/// The extractor.
pub struct ContentHash;

/// A session; there is nothing to configure.
pub struct HashSession;

/// No parameters.
const PARAMS: &[Param] = &[];

impl Extractor for ContentHash {
    type Session = HashSession;

    fn manifest() -> Manifest {
        Manifest::new(
            "content-hash",
            "1.0.0",
            "SHA-256 and byte size of the raw content",
        )
        .input("content")
        .output(Column::new(
            "sha256",
            DataType::Utf8,
            "lower-case hex SHA-256 of the content",
        ))
        .output(Column::new(
            "size_bytes",
            DataType::UInt64,
            "content size in bytes",
        ))
        .batch_size(256)
        .memory_limit_mb(64)
    }

    fn open(params: &Params) -> Result<HashSession, OpenError> {
        params.check(PARAMS)?;
        Ok(HashSession)
    }
}

impl Session for HashSession {
    fn process(&mut self, input: &Input) -> Result<Output, Error> {
        let content = input.binary("content")?;
        let mut sha = StringBuilder::with_capacity(content.len(), content.len() * 64);
        let mut size = UInt64Builder::with_capacity(content.len());
        let mut errors = Vec::with_capacity(content.len());
        for bytes in content.iter() {
            match bytes {
                Some(bytes) => {
                    sha.append_value(hex::encode(Sha256::digest(bytes)));
                    size.append_value(bytes.len() as u64);
                    errors.push(None);
                }
                None => {
                    sha.append_null();
                    size.append_null();
                    errors.push(Some("object has no content".to_owned()));
                }
            }
        }
        Ok(Output::new(vec![Arc::new(sha.finish()), Arc::new(size.finish())]).with_errors(errors))
    }
}

strata_sdk::export_extractor!(ContentHash);

#[cfg(test)]
mod tests {
    use strata_sdk::arrow_array::cast::AsArray;
    use strata_sdk::arrow_array::types::UInt64Type;

    use super::*;

    #[test]
    fn hashes_known_vectors() {
        let batch = RecordBatch::try_from_iter([(
            "content",
            Arc::new(BinaryArray::from(vec![
                Some(&b""[..]),
                Some(&b"abc"[..]),
                None,
            ])) as ArrayRef,
        )])
        .expect("batch");
        let out = strata_sdk::run::<ContentHash>("{}", batch).expect("processed");
        let sha = out
            .column_by_name("sha256")
            .expect("sha256")
            .as_string::<i32>();
        assert_eq!(
            sha.value(0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha.value(1),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let size = out
            .column_by_name("size_bytes")
            .expect("size")
            .as_primitive::<UInt64Type>();
        assert_eq!(size.value(1), 3);
        let errors = out
            .column_by_name("_error")
            .expect("_error")
            .as_string::<i32>();
        assert_eq!(errors.value(2), "object has no content");
    }
}
