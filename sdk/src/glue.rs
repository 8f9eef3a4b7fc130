//! What `export_extractor!` wires to the generated bindings. Not public API.

use std::cell::RefCell;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, StringArray};
use arrow_schema::{DataType, Field, Schema};

use crate::bindings::exports::strata::extractor::extractor as wit;
use crate::bindings::strata::extractor::types as wit_types;
use crate::{Column, ERROR_COLUMN, Error, Extractor, Input, Manifest, OpenError, Params, Session};

/// Runs a session on a batch and checks the output against `columns`.
pub fn process_batch<S: Session + ?Sized>(
    session: &mut S,
    columns: &[Column],
    batch: RecordBatch,
) -> Result<RecordBatch, Error> {
    let rows = batch.num_rows();
    let output = session.process(&Input::new(batch))?;
    if output.columns.len() != columns.len() {
        return Err(Error::Output(format!(
            "{} columns declared, {} returned",
            columns.len(),
            output.columns.len()
        )));
    }
    let mut fields = Vec::with_capacity(columns.len() + 1);
    let mut arrays = output.columns;
    for (column, array) in columns.iter().zip(&arrays) {
        if array.len() != rows {
            return Err(Error::Output(format!(
                "column `{}` has {} rows, input has {rows}",
                column.name,
                array.len()
            )));
        }
        if !array.data_type().equals_datatype(&column.data_type) {
            return Err(Error::Output(format!(
                "column `{}` is {}, declared {}",
                column.name,
                array.data_type(),
                column.data_type
            )));
        }
        fields.push(Field::new(
            &column.name,
            array.data_type().clone(),
            column.nullable || array.null_count() > 0,
        ));
    }
    if output.errors.iter().any(Option::is_some) {
        if output.errors.len() != rows {
            return Err(Error::Output(format!(
                "{} row errors for {rows} rows",
                output.errors.len()
            )));
        }
        fields.push(Field::new(ERROR_COLUMN, DataType::Utf8, true));
        arrays.push(Arc::new(StringArray::from(output.errors)) as ArrayRef);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &options,
    )?)
}

/// The manifest in WIT form.
pub fn manifest<E: Extractor>() -> wit_types::Manifest {
    let Manifest {
        name,
        version,
        description,
        depends_on,
        inputs,
        outputs,
        params_schema,
        mime_types,
        batch_size,
        memory_limit_mb,
    } = E::manifest();
    wit_types::Manifest {
        name,
        version,
        description,
        depends_on,
        inputs,
        outputs: outputs.iter().map(column).collect(),
        params_schema: params_schema.to_string(),
        mime_types,
        batch_size,
        memory_limit_mb,
    }
}

fn column(c: &Column) -> wit_types::Column {
    wit_types::Column {
        name: c.name.clone(),
        data_type: c.data_type.to_string(),
        nullable: c.nullable,
        description: c.description.clone(),
    }
}

/// Opens a session for the host.
pub fn open<E: Extractor>(params: &str) -> Result<wit::Session, wit_types::OpenError> {
    let opened = Params::parse(params).and_then(|p| E::open(&p));
    match opened {
        Ok(session) => {
            let columns = session.columns().unwrap_or_else(|| E::manifest().outputs);
            Ok(wit::Session::new(GuestSession {
                columns,
                session: RefCell::new(Box::new(session)),
            }))
        }
        Err(OpenError::InvalidParam { param, message }) => {
            Err(wit_types::OpenError::InvalidParam(wit_types::ParamError {
                param,
                message,
            }))
        }
        Err(OpenError::Other(message)) => Err(wit_types::OpenError::Other(message)),
    }
}

/// A session as the bindings see it.
pub struct GuestSession {
    columns: Vec<Column>,
    session: RefCell<Box<dyn Session>>,
}

impl wit::GuestSession for GuestSession {
    fn columns(&self) -> Vec<wit_types::Column> {
        self.columns.iter().map(column).collect()
    }

    fn process(&self, batch: Vec<u8>) -> Result<Vec<u8>, String> {
        let run = || -> Result<Vec<u8>, Error> {
            let input = crate::ipc::decode_trusted_batch(batch)?;
            let mut session = self.session.borrow_mut();
            let output = process_batch(&mut **session, &self.columns, input)?;
            Ok(crate::encode_batch(&output)?)
        };
        run().map_err(|e| e.to_string())
    }
}

/// Exports an [`Extractor`] as the component's `strata:extractor/extractor`
/// interface. Call it once, at the root of the plugin crate.
#[macro_export]
macro_rules! export_extractor {
    ($extractor:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct StrataComponent;

            impl $crate::bindings::exports::strata::extractor::extractor::Guest for StrataComponent {
                type Session = $crate::glue::GuestSession;

                fn describe() -> $crate::bindings::strata::extractor::types::Manifest {
                    $crate::glue::manifest::<$extractor>()
                }

                fn open(
                    params: ::std::string::String,
                ) -> ::std::result::Result<
                    $crate::bindings::exports::strata::extractor::extractor::Session,
                    $crate::bindings::strata::extractor::types::OpenError,
                > {
                    $crate::glue::open::<$extractor>(&params)
                }
            }

            $crate::bindings::export!(StrataComponent with_types_in $crate::bindings);
        };
    };
}
