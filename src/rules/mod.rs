//! TODO(rules helper): the rules engine.
