//! Probes and metrics: `/healthz` (the process is up), `/readyz` (it can reach its database),
//! `/metrics` (Prometheus text format).

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpResponse, web};
use diesel_async::RunQueryDsl;

use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body("ok")
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let check = async {
        let mut conn = state.pool.get().await.map_err(|e| e.to_string())?;
        diesel::sql_query("SELECT 1")
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), check).await {
        Ok(Ok(_)) => HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
            .body("ready"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable().body("database unavailable")
        }
        Err(_) => HttpResponse::ServiceUnavailable().body("database timeout"),
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let status = state.pool.status();
    state.metrics.pool_size.set(status.size as i64);
    state.metrics.pool_available.set(status.available as i64);
    if let Some(jobs) = &state.jobs
        && let Ok(queues) = jobs.queue_stats().await
    {
        for q in queues {
            for (s, n) in [
                ("pending", q.pending),
                ("running", q.running),
                ("retrying", q.retrying),
                ("dead", q.dead),
            ] {
                state
                    .metrics
                    .jobs
                    .with_label_values(&[q.queue.as_str(), s])
                    .set(n);
            }
        }
    }
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"))
        .body(state.metrics.render())
}
