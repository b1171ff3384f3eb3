//! TODO(rules helper): templates.
