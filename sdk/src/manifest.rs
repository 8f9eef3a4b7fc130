use arrow_schema::DataType;

/// The version of the `strata:extractor` WIT package this SDK builds against.
pub const WIT_PACKAGE_VERSION: &str = "0.1.1";

/// One output column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Name without the `extractor.` prefix.
    pub name: String,
    /// Arrow type.
    pub data_type: DataType,
    /// Whether nulls may appear.
    pub nullable: bool,
    /// What the column holds.
    pub description: String,
}

impl Column {
    /// A nullable column.
    pub fn new(name: &str, data_type: DataType, description: &str) -> Self {
        Column {
            name: name.to_owned(),
            data_type,
            nullable: true,
            description: description.to_owned(),
        }
    }
}

/// What an extractor is, needs and produces; built with chained setters.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Extractor name.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// One line for people.
    pub description: String,
    /// Extractors whose outputs this one reads.
    pub depends_on: Vec<String>,
    /// Input columns read.
    pub inputs: Vec<String>,
    /// Output columns with default parameters.
    pub outputs: Vec<Column>,
    /// JSON Schema of the parameters.
    pub params_schema: serde_json::Value,
    /// MIME types this extractor applies to; empty for all.
    pub mime_types: Vec<String>,
    /// Preferred rows per call.
    pub batch_size: u32,
    /// Memory needed, in MiB.
    pub memory_limit_mb: u32,
}

impl Manifest {
    /// A manifest with no inputs, outputs or parameters, 256 rows per call
    /// and 64 MiB of memory.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Manifest {
            name: name.to_owned(),
            version: version.to_owned(),
            description: description.to_owned(),
            depends_on: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            params_schema: crate::params::params_schema(&[]),
            mime_types: Vec::new(),
            batch_size: 256,
            memory_limit_mb: 64,
        }
    }

    /// Adds dependencies.
    pub fn depends_on<const N: usize>(mut self, names: [&str; N]) -> Self {
        self.depends_on
            .extend(names.iter().map(|n| (*n).to_owned()));
        self
    }

    /// Adds an input column.
    pub fn input(mut self, name: &str) -> Self {
        self.inputs.push(name.to_owned());
        self
    }

    /// Adds an output column.
    pub fn output(mut self, column: Column) -> Self {
        self.outputs.push(column);
        self
    }

    /// Declares the parameters; the manifest's JSON Schema is made from
    /// them. Check them in `open` with [`crate::Params::check`].
    pub fn params(mut self, params: &[crate::Param]) -> Self {
        self.params_schema = crate::params::params_schema(params);
        self
    }

    /// Restricts the MIME types the extractor applies to (`type/*` allowed).
    pub fn mime_types<const N: usize>(mut self, types: [&str; N]) -> Self {
        self.mime_types = types.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    /// Sets the preferred rows per call.
    pub fn batch_size(mut self, rows: u32) -> Self {
        self.batch_size = rows;
        self
    }

    /// Sets the memory needed, in MiB.
    pub fn memory_limit_mb(mut self, mib: u32) -> Self {
        self.memory_limit_mb = mib;
        self
    }
}
