//! Placeholder: the sqlite store is being written.
