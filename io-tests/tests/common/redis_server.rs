//! The tests' redis-server is courier-tests' [`courier_tests::Redis`] (a private server on a free
//! 127.0.0.1 port, in its own directory, killed on drop), shared with the cross-runtime
//! integration tests so that starting one is written once. This adds what only these tests
//! need: a `redis` crate connection to set up and inspect keys.

/// A plain synchronous `redis` crate connection to a test's server.
pub trait PlainConnection {
    /// Connects; panics when the server does not answer.
    fn connection(&self) -> redis::Connection;
}

impl PlainConnection for courier_tests::Redis {
    fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("redis connection")
    }
}
