//! Typed configuration. (Stub: being written.)
