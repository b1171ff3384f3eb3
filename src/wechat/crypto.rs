//! TODO(protocol helper)
