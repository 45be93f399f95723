//! Nothing here: the crate holds courier-io's integration tests (`tests/`), which run the I/O
//! layer on both runtimes. courier-io itself depends on no runtime crate, so tests that need one
//! live in this separate crate.
