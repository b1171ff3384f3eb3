//! TODO(rules helper): hot reload.
