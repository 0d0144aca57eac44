//! A webhook receiver on loopback (outside our walls, so a fake): answers the statuses of its script
//! in turn, then 200, and records (webhook-id, webhook-timestamp, webhook-signature, body) of every
//! request it gets.

use std::sync::{Arc, Mutex};

pub type Received = Arc<Mutex<Vec<(String, String, String, String)>>>;

/// Listens on a free loopback port; its `/hook` URL and what it received.
pub async fn receiver(script: Vec<u16>) -> (String, Received) {
    let got: Received = Arc::default();
    let statuses = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (g, statuses) = (g.clone(), statuses.clone());
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                g.lock().unwrap().push((
                    h("webhook-id"),
                    h("webhook-timestamp"),
                    h("webhook-signature"),
                    body,
                ));
                let s = statuses.lock().unwrap().pop_front().unwrap_or(200);
                axum::http::StatusCode::from_u16(s).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{addr}/hook"), got)
}

/// The port of a receiver URL from [`receiver`].
pub fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap()
}
