//! The HTTP side of the status page: axum on a current-thread tokio runtime,
//! on a thread of its own. The socket is bound before the thread starts, so
//! a port already taken is reported to the caller at once.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;

use super::{Board, health, metrics, page};
use crate::time;

fn router(board: Board) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/status", get(api_status))
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus))
        .with_state(board)
}

async fn index(State(b): State<Board>) -> Html<String> {
    Html(page(&b.snapshot(), time::now()))
}

async fn api_status(State(b): State<Board>) -> Json<serde_json::Value> {
    let s = b.snapshot();
    let problems = health(&s, time::now()).err().unwrap_or_default();
    let mut v = serde_json::to_value(&s).expect("snapshots serialise");
    v["healthy"] = problems.is_empty().into();
    v["problems"] = problems.into();
    Json(v)
}

async fn healthz(State(b): State<Board>) -> impl IntoResponse {
    match health(&b.snapshot(), time::now()) {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(p) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", p.join("\n")),
        ),
    }
}

async fn prometheus(State(b): State<Board>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics(&b.snapshot(), time::now()),
    )
}

/// Start the page and log where it is. The default address is shared by
/// every worker on a host: the second one to start finds it taken and
/// serves on a free port instead, saying which in the log (an operator who
/// wants fixed addresses sets `status_listen` per node). An address set
/// explicitly that cannot be had costs the page, not the worker's work: a
/// warning, and the worker runs on.
pub fn start(addr: SocketAddr, is_default: bool, board: Board) -> Option<SocketAddr> {
    let in_use = match spawn(addr, board.clone()) {
        Ok(bound) => {
            tracing::info!(%bound, "status page listening");
            return Some(bound);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => e,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "status page off: cannot listen there");
            return None;
        }
    };
    if !is_default {
        tracing::warn!(
            %addr,
            "status page off: the address is in use (another worker on this host?); \
             set status_listen to a free port, or to port 0 for any"
        );
        return None;
    }
    let any = SocketAddr::new(addr.ip(), 0);
    match spawn(any, board) {
        Ok(bound) => {
            tracing::info!(
                %bound,
                default = %addr,
                "status page listening on a free port: the default one is in use \
                 (another worker on this host?); set status_listen to choose"
            );
            Some(bound)
        }
        Err(e) => {
            tracing::warn!(%addr, error = %in_use, also = %e, "status page off: no port to listen on");
            None
        }
    }
}

/// Serve `board` on `addr`; returns the address actually bound (port 0
/// picks a free one).
pub fn spawn(addr: SocketAddr, board: Board) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("status-http".into())
        .spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|rt| {
                    rt.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        axum::serve(listener, router(board)).await
                    })
                });
            if let Err(e) = served {
                tracing::error!(error = %e, "the status page stopped");
            }
        })?;
    Ok(local)
}
