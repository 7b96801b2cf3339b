//! Plain-HTTP endpoints on the client and metrics ports: `/metrics`, `/health`, `/livez`,
//! `/readyz`, `/version`, with etcd's paths and bodies.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::future::LocalBoxFuture;

use crate::net::HttpHandler;
use crate::server::state::{SharedRef, ETCD_API_VERSION, ETCD_CLUSTER_VERSION};

/// The HTTP endpoints of one member.
pub struct HttpEndpoints {
    shared: SharedRef,
}

impl HttpEndpoints {
    /// Endpoints over `shared`.
    pub fn new(shared: SharedRef) -> HttpEndpoints {
        HttpEndpoints { shared }
    }

    /// Why the member is unhealthy, or `None` when it is healthy. `excluded_alarms` are alarm
    /// names the caller asked to ignore (etcd's `/health?exclude=NOSPACE`).
    fn unhealthy_reason(&self, excluded_alarms: &[&str]) -> Option<String> {
        if self.shared.wal_failed.load(Ordering::Acquire) {
            return Some("WAL failed".to_string());
        }
        if self.shared.stopping.load(Ordering::Acquire) {
            return Some("server stopping".to_string());
        }
        let alarms = self.shared.alarms.lock().expect("alarm lock");
        for alarm in alarms.iter() {
            let name = keel_proto::etcdserverpb::AlarmType::try_from(alarm.alarm)
                .map(|a| a.as_str_name())
                .unwrap_or("UNKNOWN");
            if !excluded_alarms.contains(&name) {
                return Some(format!("ALARM {name}"));
            }
        }
        drop(alarms);
        if !self.shared.has_leader() {
            return Some("RAFT NO LEADER".to_string());
        }
        if !self.shared.published.load(Ordering::Acquire) {
            return Some("not ready: publishing member attributes".to_string());
        }
        None
    }

    /// The response to `method path?query`.
    pub fn respond(
        &self,
        method: &http::Method,
        path: &str,
        query: &str,
    ) -> http::Response<String> {
        const PATHS: [&str; 5] = ["/metrics", "/health", "/livez", "/readyz", "/version"];
        // An unknown path is 404 whatever the method, as Go's ServeMux answers it (a POST to
        // `/v3/...` with the JSON gateway off, say).
        let known = PATHS.contains(&path);
        if known && method != http::Method::GET && method != http::Method::HEAD {
            return reply(
                http::StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "Method Not Allowed\n".to_string(),
            );
        }
        match path {
            "/metrics" => {
                let gauges = self.shared.store_gauges();
                let body = self.shared.metrics.render(
                    gauges,
                    self.shared.has_leader(),
                    self.shared.is_leader(),
                    ETCD_API_VERSION,
                );
                reply(
                    http::StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    body,
                )
            }
            "/health" => {
                let excluded: Vec<&str> = query
                    .split('&')
                    .filter_map(|pair| pair.strip_prefix("exclude="))
                    .collect();
                match self.unhealthy_reason(&excluded) {
                    None => reply(
                        http::StatusCode::OK,
                        "application/json",
                        "{\"health\":\"true\",\"reason\":\"\"}".to_string(),
                    ),
                    Some(reason) => reply(
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        "application/json",
                        format!("{{\"health\":\"false\",\"reason\":\"{reason}\"}}"),
                    ),
                }
            }
            "/livez" => reply(
                http::StatusCode::OK,
                "text/plain; charset=utf-8",
                "ok".to_string(),
            ),
            "/readyz" => match self.unhealthy_reason(&["NOSPACE"]) {
                None => reply(
                    http::StatusCode::OK,
                    "text/plain; charset=utf-8",
                    "ok".to_string(),
                ),
                Some(reason) => reply(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    format!("[-]{reason}\nreadyz check failed\n"),
                ),
            },
            "/version" => reply(
                http::StatusCode::OK,
                "application/json",
                format!(
                    "{{\"etcdserver\":\"{ETCD_API_VERSION}\",\"etcdcluster\":\"{ETCD_CLUSTER_VERSION}\"}}"
                ),
            ),
            _ => reply(
                http::StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "404 page not found\n".to_string(),
            ),
        }
    }
}

fn reply(status: http::StatusCode, content_type: &str, body: String) -> http::Response<String> {
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}

impl HttpHandler for HttpEndpoints {
    fn handle(
        &self,
        request: http::Request<Bytes>,
    ) -> LocalBoxFuture<'static, http::Response<String>> {
        let uri = request.uri();
        let response = self.respond(request.method(), uri.path(), uri.query().unwrap_or(""));
        Box::pin(async move { response })
    }
}
