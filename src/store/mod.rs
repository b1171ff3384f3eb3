//! TODO(store helper): the only module that touches sled.
