//! # strata-sdk
//!
//! Write a Strata feature extractor in plain Rust and build it as a
//! WebAssembly component:
//!
//! ```
//! use strata_sdk::prelude::*;
//!
//! struct Shout;
//! struct ShoutSession;
//!
//! impl Extractor for Shout {
//!     type Session = ShoutSession;
//!     fn manifest() -> Manifest {
//!         Manifest::new("shout", "0.1.0", "Upper-cases text")
//!             .depends_on(["text-extract"])
//!             .input("text-extract.text")
//!             .output(Column::new("loud", DataType::Utf8, "the text, upper-cased"))
//!     }
//!     fn open(_params: &Params) -> Result<ShoutSession, OpenError> {
//!         Ok(ShoutSession)
//!     }
//! }
//!
//! impl Session for ShoutSession {
//!     fn process(&mut self, input: &Input) -> Result<Output, Error> {
//!         let text = input.utf8("text-extract.text")?;
//!         let loud: StringArray = text.iter().map(|t| t.map(str::to_uppercase)).collect();
//!         Ok(Output::new(vec![Arc::new(loud)]))
//!     }
//! }
//!
//! strata_sdk::export_extractor!(Shout);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! file in `target/wasm32-wasip2/release/` is the component.
//!
//! The same types run natively, which is how extractors are unit-tested:
//! [`run`] opens a session and processes a [`RecordBatch`] exactly as the
//! component does, without the IPC encoding.

mod error;
mod input;
mod ipc;
mod log;
mod manifest;
mod output;
mod params;
pub mod text;

#[doc(hidden)]
pub mod glue;

/// Bindings generated from `wit/extractor.wit`.
#[doc(hidden)]
#[allow(missing_docs, clippy::all, unsafe_op_in_unsafe_fn)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "strata_sdk::bindings",
    });
}

pub use arrow_array;
pub use arrow_buffer;
pub use arrow_schema;
pub use arrow_select;
pub use error::Error;
pub use input::Input;
pub use ipc::{decode_batch, encode_batch, encode_batch_parts};
pub use log::{Level, log};
pub use manifest::{Column, Manifest, WIT_PACKAGE_VERSION};
pub use output::{ERROR_COLUMN, Output};
pub use params::{OpenError, Param, Params};

use arrow_array::RecordBatch;

/// An extractor: a manifest and a way to open configured sessions.
pub trait Extractor {
    /// The configured extractor.
    type Session: Session + 'static;

    /// What the extractor is, needs and produces.
    fn manifest() -> Manifest;

    /// Opens a session from validated parameters.
    fn open(params: &Params) -> Result<Self::Session, OpenError>;
}

/// A configured extractor that processes record batches.
pub trait Session {
    /// The concrete output columns of this configuration. Defaults to `None`,
    /// meaning the manifest's outputs.
    fn columns(&self) -> Option<Vec<Column>> {
        None
    }

    /// Processes one batch: one output row per input row, in order.
    fn process(&mut self, input: &Input) -> Result<Output, Error>;
}

/// Opens `E` with `params` (a JSON object) and processes `batch` as the
/// component would, returning the batch the host would receive.
pub fn run<E: Extractor>(params: &str, batch: RecordBatch) -> Result<RecordBatch, Error> {
    let params = Params::parse(params).map_err(|e| Error::Other(e.to_string()))?;
    let mut session = E::open(&params).map_err(|e| Error::Other(e.to_string()))?;
    let columns = session.columns().unwrap_or_else(|| E::manifest().outputs);
    glue::process_batch(&mut session, &columns, batch)
}

/// The names a plugin usually needs.
pub mod prelude {
    pub use crate::arrow_array::builder::*;
    pub use crate::arrow_array::{
        Array, ArrayRef, BinaryArray, Float32Array, RecordBatch, StringArray, UInt32Array,
        UInt64Array,
    };
    pub use crate::arrow_schema::{DataType, Field};
    pub use crate::{
        Column, Error, Extractor, Input, Level, Manifest, OpenError, Output, Param, Params,
        Session, log,
    };
    pub use std::sync::Arc;
}
