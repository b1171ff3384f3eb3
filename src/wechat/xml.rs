//! TODO(protocol helper): strict XML reader.

/// Why a body is not acceptable XML.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum XmlError {
    #[error("not well-formed XML: {0}")]
    Malformed(String),
}
