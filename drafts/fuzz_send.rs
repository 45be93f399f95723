
/// The sites every `/send` fuzz input is routed against: one user-room site with a public
/// channel, one broadcast site.
const FUZZ_SITES: &str = "goodcity:\n  authUrl: http://127.0.0.1:9/rooms\n  authScheme: Bearer\n  apiKey: k\n  userRoomPrefix: user_\n  publicChannel: browse\nnews:\n  authUrl: http://127.0.0.1:9/rooms\n  authScheme: Bearer\n  apiKey: k\n";

/// `POST /send` end to end through a [`Gateway`] with the in-memory store: the query (up to
/// the first NUL), a content type picked by one byte, then the body. Every input gets exactly
/// one answer, never a 5xx other than the store's 503.
pub fn send(data: &[u8]) {
    let (query, rest) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let (selector, body) = rest.split_first().map_or((0, &[][..]), |(s, b)| (*s, b));
    let content_type = [
        Some("application/json"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
        None,
    ][usize::from(selector) % 5];
    let sources = ConfigSources {
        config_yml: None,
        sites_yml: Some(SourceFile {
            path: "sites.yml".to_owned(),
            text: FUZZ_SITES.to_owned(),
        }),
        env: Default::default(),
    };
    let Ok(config) = config::load(&sources) else {
        panic!("the fuzz configuration loads");
    };
    let options = GatewayOptions {
        node_id: 1,
        seed: 1,
        clustered: false,
    };
    let mut gateway = Gateway::new(config, options);
    let mut store = MemoryStore::new();
    let now = Instant::now();
    gateway.handle_wall_clock(1_700_000_000_000, now);
    let mut headers = Headers::default();
    if let Some(content_type) = content_type {
        headers.push("content-type", content_type);
    }
    // Keys that authorise: a query without `apiKey=k` is refused before routing, which the
    // fuzzer finds on its own; half the inputs get the key appended to reach routing.
    let mut query = String::from_utf8_lossy(query).into_owned();
    if selector & 0x80 != 0 {
        query.push_str("&site=goodcity&apiKey=k");
    }
    let request = HttpRequest {
        method: Method::Post,
        path: "/send".to_owned(),
        query,
        headers,
        body: Bytes::copy_from_slice(body),
        body_truncated: false,
        websocket: false,
    };
    gateway.handle_http(RequestId(1), request, now);
    let mut answers = 0;
    loop {
        match gateway.poll_output() {
            Output::HttpResponse(_, response) => {
                answers += 1;
                assert!(
                    response.status < 500 || response.status == 503,
                    "/send answered {}",
                    response.status
                );
            }
            Output::Store(id, command) => {
                let result = store.execute(command);
                gateway.handle_store_result(id, result, now);
            }
            Output::Idle(_) => break,
            _ => {}
        }
    }
    assert_eq!(answers, 1, "/send must be answered exactly once");
}
