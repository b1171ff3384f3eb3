//! TODO(store helper): signed article links.
